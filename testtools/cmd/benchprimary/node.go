package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"syncagent/agent/primary"
	"syncagent/queue"
	"syncagent/queue/pg"
)

// serveFlags are what a -serve child is given.
type serveFlags struct {
	kind    string // bunt, pg or raw
	addr    string
	dir     string // bunt: state directory; raw: where its log goes
	dsn     string // pg
	rows    string // JSON file of the site rows
	name    string // pg: application_name of the node's sessions
	authKey string // hex; empty: none
}

// serveOne runs one primary node (or the raw baseline) until SIGTERM. It
// prints "ready ADDR" once it serves: the parent times the node's start by
// it.
func serveOne(f serveFlags) error {
	l, err := net.Listen("tcp", f.addr)
	if err != nil {
		return err
	}
	var h http.Handler
	var store queue.PrimaryStore
	switch f.kind {
	case "bunt", "pg":
		var rows []primary.SiteRow
		b, err := os.ReadFile(f.rows)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &rows); err != nil {
			return fmt.Errorf("site rows %s: %w", f.rows, err)
		}
		if f.kind == "bunt" {
			store, err = queue.OpenCentral(filepath.Join(f.dir, "central.db"), queue.CentralOptions{})
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			store, err = pg.Open(ctx, f.dsn, pg.Options{ApplicationName: f.name})
			cancel()
		}
		if err != nil {
			return err
		}
		defer store.Close()
		cfg := primary.Config{Sites: rows}
		if f.authKey != "" {
			if cfg.AuthKey, err = hex.DecodeString(f.authKey); err != nil {
				return err
			}
		}
		p, err := primary.New(store, cfg, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			return err
		}
		h = p.Handler()
	case "raw":
		if h, err = rawBaseline(filepath.Join(f.dir, "raw.log")); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown -serve %q", f.kind)
	}
	srv := primary.NewHTTPServer(f.addr, h, slog.New(slog.DiscardHandler))
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	fmt.Printf("ready %s\n", l.Addr())
	if err := srv.Serve(l); err != http.ErrServerClosed {
		return err
	}
	if f, ok := store.(interface{ FlushContacts() error }); ok {
		f.FlushContacts()
	}
	return nil
}

// rawBaseline is what the simplest durable server would do with a push:
// decode the JSON, append it, fsync, answer. It answers every other
// endpoint with an empty page.
func rawBaseline(path string) (http.Handler, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	var mu = make(chan struct{}, 1)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "queued_records") {
			var push struct {
				QueueLength int               `json:"queueLength"`
				Data        []json.RawMessage `json:"data"`
			}
			b, _ := io.ReadAll(io.LimitReader(r.Body, 32<<20))
			if json.Unmarshal(b, &push) != nil {
				http.Error(w, "bad json", 400)
				return
			}
			mu <- struct{}{}
			f.Write(append(b, '\n'))
			f.Sync()
			<-mu
			io.WriteString(w, `{"integrationStarted":true}`)
			return
		}
		switch {
		case strings.HasSuffix(r.URL.Path, "/site"):
			io.WriteString(w, `{"id":"x","siteId":2,"initialisationStatus":"completed"}`)
		case strings.HasSuffix(r.URL.Path, "site_status"):
			io.WriteString(w, `{"code":"idle","message":"","data":null}`)
		case strings.HasSuffix(r.URL.Path, "central_records"):
			io.WriteString(w, `{"maxCursor":0,"data":[]}`)
		case strings.HasSuffix(r.URL.Path, "queued_records"):
			io.WriteString(w, `{"queueLength":0,"data":[]}`)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}), nil
}

// node is a -serve child process.
type node struct {
	args    []string
	cmd     *exec.Cmd
	url     string
	addr    string        // kept across restarts, so sites find it again
	started time.Duration // from exec to serving
	real    string        // the syncagent program ("": a -serve child of this one)
	log     string        // real: its log file
	exited  chan struct{} // real: closed when the process is gone
}

// startNode runs a -serve child with args and waits for it to serve.
func startNode(args ...string) (*node, error) {
	n := &node{args: args, addr: "127.0.0.1:0"}
	return n, n.start()
}

func (n *node) start() error {
	if n.real != "" {
		return n.startReal()
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	t0 := time.Now()
	n.cmd = exec.Command(self, append([]string{"-addr", n.addr}, n.args...)...)
	out, err := n.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	n.cmd.Stderr = os.Stderr
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // a bench that dies takes its nodes along
	if err := n.cmd.Start(); err != nil {
		return err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		n.cmd.Process.Kill()
		n.cmd.Wait()
		return fmt.Errorf("node %v did not start: %q %v", n.args, line, err)
	}
	n.started = time.Since(t0)
	n.addr = strings.TrimSpace(strings.TrimPrefix(line, "ready "))
	n.url = "http://" + n.addr
	return nil
}

// stop ends the node cleanly (SIGTERM).
func (n *node) stop() {
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	n.wait()
}

func (n *node) wait() {
	if n.exited != nil {
		<-n.exited
	} else {
		n.cmd.Wait()
	}
	n.cmd = nil
}

// kill ends it at once (SIGKILL), as a crash would.
func (n *node) kill() {
	n.cmd.Process.Kill()
	n.wait()
}

// memory is the node's resident set now and at its peak, in MiB.
func (n *node) memory() (now, peak int) {
	if n.cmd == nil {
		return 0, 0
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid))
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "VmHWM:" || f[0] == "VmRSS:") {
			kb, _ := strconv.Atoi(f[1])
			if f[0] == "VmHWM:" {
				peak = kb >> 10
			} else {
				now = kb >> 10
			}
		}
	}
	return now, peak
}

// cpu is the node's user+system CPU so far.
func (n *node) cpu() time.Duration {
	if n.cmd == nil {
		return 0
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.cmd.Process.Pid))
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * (time.Second / 100)
}
