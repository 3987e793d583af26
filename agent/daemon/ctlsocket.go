package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/prefs"
	"syncagent/agent/version"
)

// ctlSocket is the local API, up from before the datafile opens to the end:
// opening a datafile of 300,000 records takes seconds, and a technician's
// `syncagent status` right after a reboot should say what the agent is
// doing, not that nothing answers. Until the agent serves, status says it
// is opening the datafile and every other call is answered 503 with when to
// retry.
type ctlSocket struct {
	l       net.Listener
	srv     *http.Server
	handler atomic.Pointer[http.Handler]
	done    chan error // Serve's end
}

// openCtlSocket listens on the control socket and answers as starting.
func openCtlSocket(path string, starting http.Handler) (*ctlSocket, error) {
	l, err := control.Listen(path)
	if err != nil {
		return nil, err
	}
	c := &ctlSocket{l: l, done: make(chan error, 1)}
	c.handler.Store(&starting)
	c.srv = control.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*c.handler.Load()).ServeHTTP(w, r)
	}))
	go func() { c.done <- c.srv.Serve(l) }()
	return c, nil
}

// serve switches to the agent's own local API.
func (c *ctlSocket) serve(h http.Handler) { c.handler.Store(&h) }

// run serves until ctx ends, then shuts the server down.
func (c *ctlSocket) run(ctx context.Context) error { return shutdownAtEnd(ctx, c.srv, c.done) }

// close ends a socket that never served (the start failed).
func (c *ctlSocket) close() {
	c.srv.Close()
	<-c.done
}

// startingAPI is the local API while the datafile opens.
func startingAPI(p *prefs.Prefs, hwid string, since time.Time) http.Handler {
	path := datafilePath(p)
	opening := func() string {
		what := "the datafile " + path
		if path == "" {
			what = "its database " + p.Central.Database
		} else if fi, err := os.Stat(path); err == nil {
			what += fmt.Sprintf(" (%.0f MB)", float64(fi.Size())/1e6)
		}
		return fmt.Sprintf("opening %s, for %s", what, time.Since(since).Round(100*time.Millisecond))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		control.WriteJSON(w, http.StatusOK, control.Status{Running: true, Role: p.Role().String(), SyncID: p.Site.SyncID,
			HardwareID: hwid, Version: version.Version, StartedAt: since, Opening: opening()})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "1")
		control.WriteJSON(w, http.StatusServiceUnavailable, control.ErrorBody{
			Error: "the agent is starting: " + opening() + "; nothing was changed, retry in a moment (`syncagent status` shows when it is ready)"})
	})
	return mux
}

// datafilePath is where p's role keeps its datafile ("" for a primary on
// PostgreSQL).
func datafilePath(p *prefs.Prefs) string {
	switch {
	case p.Role() != prefs.RolePrimary:
		return filepath.Join(p.Paths.StateDir, "satellite.db")
	case p.Central.Database == "":
		return filepath.Join(p.Paths.StateDir, "central.db")
	}
	return ""
}
