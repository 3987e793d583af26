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
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/daemon"
	"syncagent/agent/passwd"
)

// node is one agent of the demo.
type node struct {
	name    string
	syncID  int
	stores  []string
	prefs   string
	socket  string
	client  *control.Client
	stopped chan error
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

	addr, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "demo state in %s; primary on http://%s\n\n", dir, addr)
	nodes := []*node{
		{name: "primary", syncID: 1},
		{name: "clinic-a", syncID: 12, stores: []string{"store-a", "district"}},
		{name: "clinic-b", syncID: 13, stores: []string{"store-b", "district"}},
	}
	creds, err := makeCredentials(nodes[1:])
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if err := n.writePrefs(dir, addr, nodes, creds); err != nil {
			return err
		}
	}
	for _, n := range nodes {
		if err := n.start(ctx, log); err != nil {
			return err
		}
	}
	defer func() {
		cancel()
		for _, n := range nodes {
			<-n.stopped
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
		byName[n.name] = n
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

type credential struct{ sha, hash string }

func makeCredentials(sats []*node) (map[string]credential, error) {
	out := map[string]credential{}
	for _, n := range sats {
		sha := passwd.SHA256Hex("demo-password-" + n.name)
		h, err := passwd.Hash(sha)
		if err != nil {
			return nil, err
		}
		out[n.name] = credential{sha, h}
	}
	return out, nil
}

func (n *node) writePrefs(dir, addr string, all []*node, creds map[string]credential) error {
	state := filepath.Join(dir, n.name)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	n.socket = filepath.Join(state, "control.sock")
	var b strings.Builder
	fmt.Fprintf(&b, "version = 1\n\n[site]\nsync_id = %d\ninterval_minutes = 60\n", n.syncID)
	if len(n.stores) > 0 {
		fmt.Fprintf(&b, "stores = %s\n", tomlList(n.stores))
	}
	fmt.Fprintf(&b, "\n[paths]\nstate_dir = %q\ncontrol_socket = %q\n", state, n.socket)
	if n.syncID == 1 {
		fmt.Fprintf(&b, "\n[listen]\naddress = %q\n", addr)
		for _, s := range all[1:] {
			fmt.Fprintf(&b, "\n[[sync_with]]\nsync_id = %d\nuser = %q\npassword_hash = %q\nstores = %s\n", s.syncID, s.name, creds[s.name].hash, tomlList(s.stores))
		}
	} else {
		fmt.Fprintf(&b, "\n[[sync_with]]\nsync_id = 1\nuser = %q\npassword_sha256 = %q\nurl = %q\n", n.name, creds[n.name].sha, "http://"+addr)
	}
	n.prefs = filepath.Join(state, "prefs.toml")
	return os.WriteFile(n.prefs, []byte(b.String()), 0o600)
}

func tomlList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func (n *node) start(ctx context.Context, log *slog.Logger) error {
	ready := make(chan struct{})
	n.stopped = make(chan error, 1)
	hwid := fmt.Sprintf("demo-box-%s", n.name)
	go func() {
		n.stopped <- daemon.Run(ctx, daemon.Options{PrefsPath: n.prefs, Log: log.With("node", n.name),
			HardwareID: func() (string, error) { return hwid, nil }, Ready: func() { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-n.stopped:
		n.stopped <- err
		return fmt.Errorf("%s did not start: %w", n.name, err)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s did not start within 30s", n.name)
	}
	n.client = control.NewClient(n.socket)
	return nil
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("no free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
