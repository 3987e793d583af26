package soak

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/passwd"
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
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	c := &cluster{bin: bin, addr: addr, nodes: []*node{
		{name: SitePrimary, syncID: 1},
		{name: SiteA, syncID: 12, stores: []string{StoreA, StoreShared}},
		{name: SiteB, syncID: 13, stores: []string{StoreB, StoreShared}},
	}}
	creds := map[string][2]string{}
	for _, n := range c.nodes[1:] {
		sha := passwd.SHA256Hex("soak-password-" + n.name)
		h, err := passwd.Hash(sha)
		if err != nil {
			return nil, err
		}
		creds[n.name] = [2]string{sha, h}
	}
	for _, n := range c.nodes {
		if err := c.writePrefs(n, dir, creds); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *cluster) writePrefs(n *node, dir string, creds map[string][2]string) error {
	n.dir = filepath.Join(dir, n.name)
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return err
	}
	n.socket = filepath.Join(n.dir, "control.sock")
	n.log = filepath.Join(dir, n.name+".log")
	n.client = control.NewClient(n.socket)
	var b strings.Builder
	fmt.Fprintf(&b, "version = 1\n\n[site]\nsync_id = %d\ninterval_minutes = 1\n", n.syncID)
	if len(n.stores) > 0 {
		fmt.Fprintf(&b, "stores = %s\n", tomlList(n.stores))
	}
	fmt.Fprintf(&b, "\n[paths]\nstate_dir = %q\ncontrol_socket = %q\n", n.dir, n.socket)
	if n.syncID == 1 {
		fmt.Fprintf(&b, "\n[listen]\naddress = %q\n", c.addr)
		for _, s := range c.nodes[1:] {
			fmt.Fprintf(&b, "\n[[sync_with]]\nsync_id = %d\nuser = %q\npassword_hash = %q\nstores = %s\n",
				s.syncID, s.name, creds[s.name][1], tomlList(s.stores))
		}
	} else {
		fmt.Fprintf(&b, "\n[[sync_with]]\nsync_id = 1\nuser = %q\npassword_sha256 = %q\nurl = %q\n",
			n.name, creds[n.name][0], "http://"+c.addr)
	}
	n.prefs = filepath.Join(n.dir, "prefs.toml")
	return os.WriteFile(n.prefs, []byte(b.String()), 0o600)
}

func tomlList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("no free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
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
