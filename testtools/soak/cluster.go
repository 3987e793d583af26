package soak

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/loopback"
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
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
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
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bin, "--prefs", n.prefs, "run")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=", "STATE_DIRECTORY=")
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("cannot start %s: %w", n.name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()

	deadline := time.Now().Add(30 * time.Second)
	for {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := n.client.Status(qctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited at start (%s); log:\n%s", n.name, cmd.ProcessState, tail(n.log, 20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer on %s within 30s: %v", n.name, n.socket, err)
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *cluster) kill(n *node) error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("cannot kill %s: %w", n.name, err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s did not die within 10s of SIGKILL", n.name)
	}
	n.mu.Lock()
	n.cmd = nil
	n.mu.Unlock()
	return nil
}

// exited reports whether the node's process ended without being killed by
// the soak (a crash).
func (n *node) exited() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// stopAll ends every process (SIGKILL: the soak owns them and their state).
func (c *cluster) stopAll() {
	for _, n := range c.nodes {
		c.kill(n)
	}
}

// tail returns the last lines of a file, for error messages.
func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	ls := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return string(bytes.Join(ls, []byte("\n")))
}
