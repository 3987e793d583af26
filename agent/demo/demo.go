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

	// Real mSupply tables: central data, each clinic's stock, a shipment
	// from store-a to store-b sent with its line (the line first, as
	// open-mSupply sends them), and one record of the shared district store
	// changed by both clinics before either syncs.
	writes := []struct {
		on, table, id, data string
	}{
		{"primary", "item", "amoxicillin-250", `{"name":"Amoxicillin 250mg caps","unit":"pack of 100"}`},
		{"clinic-a", "item_line", "a-1", `{"store_ID":"store-a","item_ID":"amoxicillin-250","quantity":40}`},
		{"clinic-b", "item_line", "b-1", `{"store_ID":"store-b","item_ID":"amoxicillin-250","quantity":15}`},
		{"clinic-a", "trans_line", "ship-1-l1", `{"transaction_ID":"ship-1","item_ID":"amoxicillin-250","quantity":10}`},
		{"clinic-a", "transact", "ship-1", `{"store_ID":"store-a","name_ID":"store-b","type":"ci","status":"cn"}`},
		{"clinic-a", "requisition", "district-1", `{"store_ID":"district","item_ID":"amoxicillin-250","requested":200}`},
		{"clinic-b", "requisition", "district-1", `{"store_ID":"district","item_ID":"amoxicillin-250","requested":120}`},
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

	fmt.Fprintln(out, "\nwhat arrived where (x = present; for the district order, its \"requested\"):")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "record\towner\tprimary\tclinic-a\tclinic-b")
	seen := map[string]bool{}
	for _, w := range writes {
		key := w.table + "/" + w.id
		if seen[key] {
			continue
		}
		seen[key] = true
		row := []string{key, owner(w.table, w.data)}
		for _, n := range nodes {
			r, err := n.client.GetRecord(ctx, w.table, w.id)
			cell := map[bool]string{true: "x", false: "-"}[err == nil]
			if err == nil && w.table == "requisition" {
				var d struct{ Requested int }
				json.Unmarshal(r.Data, &d)
				cell = fmt.Sprint(d.Requested)
			}
			row = append(row, cell)
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
	fmt.Fprintln(out, `
Central data reached every site; each store's stock stayed with the sites
where that store is active; the shipment went, with its line, to the site of
the store it names; both clinics changed the district order, and the change
that reached the primary last (clinic-b's) is the value everywhere.
(docs/routing.md, docs/replication.md)`)
	return nil
}

// owner says whose a demo record is, by the routing rules.
func owner(table, data string) string {
	switch table {
	case "item":
		return "(central)"
	case "trans_line":
		return "its shipment's"
	}
	var d struct {
		Store string `json:"store_ID"`
	}
	json.Unmarshal([]byte(data), &d)
	return d.Store
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
