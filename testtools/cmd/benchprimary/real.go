package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"syncagent/agent/loopback"
	"syncagent/agent/prefs"
	"syncagent/agent/primary"
)

// realNode is a node that is the syncagent program itself (`-bin`): a
// primary (sync_id 1) whose prefs carry the site rows and, for PostgreSQL,
// [central] database and the nodes' shared auth key.
func (b *bench) realNode(st *setup, i int, dsn string) (*node, error) {
	dir := filepath.Join(st.dir, fmt.Sprintf("node-%d", i+1))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var rows []primary.SiteRow
	js, err := os.ReadFile(b.rows)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(js, &rows); err != nil {
		return nil, err
	}
	peers := make([]prefs.Peer, len(rows))
	for k, r := range rows {
		peers[k] = prefs.Peer{SyncID: r.SyncID, User: r.User, PasswordHash: r.PasswordHash, Stores: r.Stores}
	}
	key := filepath.Join(b.tmp, "auth.key")
	if err := os.WriteFile(key, []byte(b.authKey), 0o600); err != nil {
		return nil, err
	}
	addr, err := loopback.FreeAddr()
	if err != nil {
		return nil, err
	}
	p := &prefs.Prefs{
		Site:     prefs.Site{SyncID: 1, IntervalMinutes: 60},
		Paths:    prefs.Paths{StateDir: dir, ControlSocket: filepath.Join(dir, "ctl.sock")},
		Listen:   prefs.Listen{Address: addr},
		Central:  prefs.Central{Database: dsn, AuthKeyFile: key},
		SyncWith: peers,
	}
	file := filepath.Join(dir, "prefs.toml")
	if err := os.WriteFile(file, prefs.Encode(p), 0o600); err != nil {
		return nil, err
	}
	n := &node{addr: addr, real: b.o.bin, args: []string{"--prefs", file, "run"}, log: filepath.Join(dir, "syncagent.log")}
	return n, n.start()
}

// startReal runs the syncagent program and waits until its sync listener
// answers (any HTTP status: an unauthenticated GET site is refused).
func (n *node) startReal() error {
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	t0 := time.Now()
	n.cmd = exec.Command(n.real, n.args...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	n.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=", "STATE_DIRECTORY=", "RUNTIME_DIRECTORY=")
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() { n.cmd.Process.Wait(); close(exited) }()
	n.url = "http://" + n.addr
	client := &http.Client{Timeout: time.Second}
	for deadline := t0.Add(2 * time.Minute); ; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.url+"/sync/v5/site", nil)
		resp, err := client.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			n.started = time.Since(t0)
			n.exited = exited
			return nil
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(n.log)
			return fmt.Errorf("syncagent exited at start: %s", tail(b, 2000))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.cmd.Process.Kill()
			return fmt.Errorf("syncagent did not answer on %s within 2 minutes (log: %s)", n.addr, n.log)
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
