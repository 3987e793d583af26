package soak

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/loopback"
	"syncagent/testtools/agentproc"
)

// node is one `syncagent run` process with its own state directory, prefs
// and control socket.
type node struct {
	name   string
	syncID int
	stores []string
	dir    string
	prefs  string
	socket string
	log    string
	client *control.Client

	mu   sync.Mutex
	proc *agentproc.Proc // nil when not running
}

// cluster is a primary and its satellites on loopback.
type cluster struct {
	bin   string
	addr  string
	nodes []*node
}

// newCluster writes the prefs of a primary ("primary", sync ID 1) and of
// two satellites: sat-a with stores a and shared, sat-b with b and shared.
func newCluster(bin, dir string) (*cluster, error) {
	layout, err := loopback.Write(dir, 1,
		&loopback.Site{Name: SitePrimary, SyncID: 1},
		&loopback.Site{Name: SiteA, SyncID: 12, Stores: []string{StoreA, StoreShared}},
		&loopback.Site{Name: SiteB, SyncID: 13, Stores: []string{StoreB, StoreShared}})
	if err != nil {
		return nil, err
	}
	c := &cluster{bin: bin, addr: layout.Addr}
	for _, s := range layout.Sites {
		c.nodes = append(c.nodes, &node{name: s.Name, syncID: s.SyncID, stores: s.Stores, dir: s.Dir, prefs: s.Prefs,
			socket: s.Socket, log: filepath.Join(dir, s.Name+".log"), client: control.NewClient(s.Socket)})
	}
	return c, nil
}

func (c *cluster) node(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	panic("soak: no node " + name)
}

// start runs the node's process and waits until its local API answers.
func (c *cluster) start(ctx context.Context, n *node) error {
	p, err := agentproc.Start(c.bin, []string{"--prefs", n.prefs, "run"}, n.log)
	if err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()
	if err := p.WaitAnswer(ctx, 30*time.Second, 20*time.Millisecond, n.client.Ready); err != nil {
		return fmt.Errorf("%s on %s: %w", n.name, n.socket, err)
	}
	return nil
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *cluster) kill(n *node) error {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.Kill(); err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	n.mu.Lock()
	n.proc = nil
	n.mu.Unlock()
	return nil
}

// exited reports whether the node's process ended without being killed by
// the soak (a crash).
func (n *node) exited() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc != nil && n.proc.Exited()
}

// stopAll ends every process (SIGKILL: the soak owns them and their state).
func (c *cluster) stopAll() {
	for _, n := range c.nodes {
		c.kill(n)
	}
}
