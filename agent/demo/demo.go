// Package demo runs `syncagent demo`: a primary and two satellites on
// loopback with temporary state, real HTTP and real control sockets, records
// written on each, synced, and what arrived where printed.
//
// Imported only by agent/cli.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/daemon"
	"syncagent/agent/loopback"
)

// node is one agent of the demo.
type node struct {
	*loopback.Site
	client *control.Client
	wait   func() error // until the agent has stopped
}

// Run starts the three agents, syncs them and prints the outcome to out.
func Run(ctx context.Context, out io.Writer, logTo io.Writer) error {
	dir, err := os.MkdirTemp("", "syncagent-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelWarn}))

	layout, err := loopback.Write(dir, 60,
		&loopback.Site{Name: "primary", SyncID: 1},
		&loopback.Site{Name: "clinic-a", SyncID: 12, Stores: []string{"store-a", "district"}},
		&loopback.Site{Name: "clinic-b", SyncID: 13, Stores: []string{"store-b", "district"}})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "demo state in %s; primary on http://%s\n\n", dir, layout.Addr)
	var nodes []*node
	for _, s := range layout.Sites {
		nodes = append(nodes, &node{Site: s})
	}
	for _, n := range nodes {
		if err := n.start(ctx, log); err != nil {
			return err
		}
	}
	defer func() {
		cancel()
		for _, n := range nodes {
			if n.wait != nil {
				n.wait()
			}
		}
	}()

	writes := []struct {
		on, table, id, data string
	}{
		{"primary", "item", "amoxicillin-250", `{"name":"Amoxicillin 250mg caps","unit":"pack of 100"}`},
		{"clinic-a", "stock_line", "a-1", `{"store_ID":"store-a","item":"amoxicillin-250","quantity":40}`},
		{"clinic-a", "requisition", "a-req-1", `{"store_ID":"district","item":"amoxicillin-250","requested":200}`},
		{"clinic-b", "stock_line", "b-1", `{"store_ID":"store-b","item":"amoxicillin-250","quantity":15}`},
		{"clinic-b", "requisition", "b-req-1", `{"store_ID":"district","item":"amoxicillin-250","requested":120}`},
	}
	byName := map[string]*node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	fmt.Fprintln(out, "writes:")
	for _, w := range writes {
		if _, err := byName[w.on].client.PutRecord(ctx, w.table, w.id, json.RawMessage(w.data)); err != nil {
			return fmt.Errorf("write on %s: %w", w.on, err)
		}
		fmt.Fprintf(out, "  %-9s %s/%s %s\n", w.on, w.table, w.id, w.data)
	}

	fmt.Fprintln(out, "\nsync cycles:")
	for _, name := range []string{"clinic-a", "clinic-b", "clinic-a"} {
		c, err := byName[name].client.Sync(ctx, false)
		if err != nil {
			return fmt.Errorf("sync on %s: %w", name, err)
		}
		if c.Error != "" {
			return fmt.Errorf("sync on %s failed: %s", name, c.Error)
		}
		fmt.Fprintf(out, "  %-9s pushed %d, pulled %d, applied %d (%s)\n", name, c.Pushed, c.Pulled, c.Applied, c.Finished.Sub(c.Started).Round(time.Millisecond))
	}

	fmt.Fprintln(out, "\nwhat arrived where (x = present):")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "record\tstore\tprimary\tclinic-a\tclinic-b")
	for _, w := range writes {
		var store struct {
			Store string `json:"store_ID"`
		}
		json.Unmarshal([]byte(w.data), &store)
		row := []string{w.table + "/" + w.id, orCentral(store.Store)}
		for _, n := range nodes {
			_, err := n.client.GetRecord(ctx, w.table, w.id)
			row = append(row, map[bool]string{true: "x", false: "-"}[err == nil])
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()

	sites, err := byName["primary"].client.Sites(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "\nthe primary's sites:")
	for _, s := range sites {
		fmt.Fprintf(out, "  %d %-9s pinned %s, queue %d\n", s.SyncID, s.User, s.HardwareID, s.QueueLength)
	}
	fmt.Fprintln(out, "\nStore data reached the sites where its store is active; central data reached every site.")
	return nil
}

func orCentral(s string) string {
	if s == "" {
		return "(central)"
	}
	return s
}

func (n *node) start(ctx context.Context, log *slog.Logger) error {
	hwid := fmt.Sprintf("demo-box-%s", n.Name)
	wait, err := daemon.Start(ctx, daemon.Options{PrefsPath: n.Prefs, Log: log.With("node", n.Name),
		HardwareID: func() (string, error) { return hwid, nil }}, 30*time.Second)
	n.wait = wait
	if err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	n.client = control.NewClient(n.Socket)
	return nil
}
