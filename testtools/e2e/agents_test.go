package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/daemon"
	"syncagent/agent/loopback"
	"syncagent/agent/prefs"
)

// Whole agents in-process: the daemon's own wiring (prefs, datafile,
// control socket, HTTP server, loop), as `syncagent run` starts it, for the
// tests that need what only the wiring does (HTTP 507 for a full outbox,
// the [limits] prefs, a datafile on a full disk).

// agent is one daemon.Run with its prefs, state directory and socket.
type agent struct {
	t         *testing.T
	name      string
	syncID    int
	stores    []string
	outboxMax int                  // limits.outbox_max_records; 0: the default
	url       string               // a satellite's primary URL ("": the primary's address)
	tweak     func(p *prefs.Prefs) // more settings, made before the file is written
	dir       string               // state_dir
	prefs     string
	socket    string
	client    *control.Client

	logMu  sync.Mutex
	log    bytes.Buffer
	cancel context.CancelFunc
	done   chan error
}

// storeRows is how many central store rows the primary of newAgents
// publishes (stores a, b and shared): every satellite holds them too.
const storeRows = 3

// agentSet is a primary and its satellites on loopback.
type agentSet struct {
	t      *testing.T
	addr   string
	agents []*agent
}

// newAgents prepares a primary and satellites 12 (stores a, shared) and 13
// (b, shared); stateDirs may place an agent's state elsewhere (by name).
func newAgents(t *testing.T, stateDirs map[string]string, outboxMax map[string]int) *agentSet {
	t.Helper()
	return newAgentsWith(t, stateDirs, outboxMax, nil)
}

// newAgentsWith is newAgents with edit, when set, changing each agent
// (its url, extra prefs) before its prefs are written and it starts.
func newAgentsWith(t *testing.T, stateDirs map[string]string, outboxMax map[string]int, edit func(s *agentSet, a *agent)) *agentSet {
	t.Helper()
	l, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	s := &agentSet{t: t, addr: l.Addr().String()}
	l.Close()
	s.agents = []*agent{
		{name: "primary", syncID: 1},
		{name: "sat-a", syncID: 12, stores: []string{"a", "shared"}},
		{name: "sat-b", syncID: 13, stores: []string{"b", "shared"}},
	}
	base := t.TempDir()
	var sites []*loopback.Site
	for _, a := range s.agents {
		a.t = t
		a.outboxMax = outboxMax[a.name]
		if edit != nil {
			edit(s, a)
		}
		// The socket beside the state (not in it) keeps its path short
		// when the state is on a test disk elsewhere.
		site := &loopback.Site{Name: a.name, SyncID: a.syncID, Stores: a.stores, Dir: stateDirs[a.name],
			Socket: filepath.Join(base, a.name+".sock"), Edit: a.edit}
		sites = append(sites, site)
	}
	if _, err := loopback.WriteAt(base, s.addr, 60, sites...); err != nil {
		t.Fatal(err)
	}
	for i, a := range s.agents {
		a.dir, a.socket, a.prefs = sites[i].Dir, sites[i].Socket, sites[i].Prefs
		a.client = control.NewClient(a.socket)
	}
	for _, a := range s.agents {
		a.start()
	}
	t.Cleanup(func() {
		for _, a := range s.agents {
			a.stop()
		}
		if t.Failed() {
			for _, a := range s.agents {
				a.logMu.Lock()
				t.Logf("log of %s:\n%s", a.name, a.log.String())
				a.logMu.Unlock()
			}
		}
	})
	return s
}

func (s *agentSet) get(name string) *agent {
	for _, a := range s.agents {
		if a.name == name {
			return a
		}
	}
	s.t.Fatalf("no agent %s", name)
	return nil
}

// edit applies the agent's own settings to what the layout wrote.
func (a *agent) edit(p *prefs.Prefs) {
	if a.outboxMax > 0 {
		p.Limits.OutboxMaxRecords = a.outboxMax
	}
	if a.url != "" {
		p.SyncWith[0].URL = a.url
	}
	if a.tweak != nil {
		a.tweak(p)
	}
}

// password is the SHA-256 hex the satellite presents.
func (a *agent) password() string { return loopback.Password(a.name) }

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// start runs the agent until stop, and waits until it serves.
func (a *agent) start() {
	a.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	a.cancel, a.done = cancel, make(chan error, 1)
	log := slog.New(slog.NewTextHandler(lockedWriter{&a.logMu, &a.log}, nil)).With("agent", a.name)
	hwid := "hw-" + a.name
	go func() {
		a.done <- daemon.Run(ctx, daemon.Options{PrefsPath: a.prefs, Log: log,
			HardwareID: func() (string, error) { return hwid, nil }, Ready: func() { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-a.done:
		a.done <- err
		a.t.Fatalf("%s did not start: %v", a.name, err)
	case <-time.After(30 * time.Second):
		a.t.Fatalf("%s did not start within 30s", a.name)
	}
}

// stop ends the agent and waits for it.
func (a *agent) stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	<-a.done
	a.cancel = nil
}

func (a *agent) put(t *testing.T, table, id, data string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := a.client.PutRecord(ctx, table, id, []byte(data))
	return err
}

func (a *agent) mustPut(t *testing.T, table, id, data string) {
	t.Helper()
	if err := a.put(t, table, id, data); err != nil {
		t.Fatalf("%s: put %s/%s: %v", a.name, table, id, err)
	}
}

// sync runs a cycle and returns it; err is the cycle's own error.
func (a *agent) sync(t *testing.T) (control.Cycle, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := a.client.Sync(ctx, false)
	if err != nil {
		t.Fatalf("%s: sync request: %v", a.name, err)
	}
	if c.Error != "" {
		return c, fmt.Errorf("%s", c.Error)
	}
	return c, nil
}

func (a *agent) mustSync(t *testing.T) control.Cycle {
	t.Helper()
	c, err := a.sync(t)
	if err != nil {
		t.Fatalf("%s: sync: %v", a.name, err)
	}
	return c
}

func (a *agent) status(t *testing.T) control.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := a.client.Status(ctx)
	if err != nil {
		t.Fatalf("%s: status: %v", a.name, err)
	}
	return st
}

// records lists table on the agent: id → data.
func (a *agent) records(t *testing.T, table string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := a.client.ListRecords(ctx, table, "", 10000)
	if err != nil {
		t.Fatalf("%s: list %s: %v", a.name, table, err)
	}
	out := map[string]string{}
	for _, r := range recs {
		if _, dup := out[r.ID]; dup {
			t.Errorf("%s lists %s/%s twice", a.name, table, r.ID)
		}
		out[r.ID] = string(r.Data)
	}
	return out
}

// queueOf is the primary's queue length for a satellite.
func (s *agentSet) queueOf(t *testing.T, name string) int {
	t.Helper()
	for _, q := range s.get("primary").status(t).Queues {
		if q.User == name {
			return q.QueueLength
		}
	}
	t.Fatalf("the primary has no queue for %s", name)
	return 0
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
