package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"syncagent/agent/admin"
	"syncagent/agent/prefs"
	"syncagent/agent/primary"
)

// adminListener is the primary's admin listener ([admin]): the site list as
// a web page, its JSON and /metrics, behind the admin's own credentials,
// on an address of its own (loopback unless the prefs say otherwise),
// HTTPS when tls_cert and tls_key are set. Its address and certificate
// apply at a restart; its credentials at once, and removing them closes it.
type adminListener struct {
	log  *slog.Logger
	addr string
	cert string
	key  string
	site *admin.Server

	ln  net.Listener // bound by bind
	srv *http.Server

	mu     sync.Mutex
	closed bool // the credentials were removed: the listener is closed
}

func newAdminListener(r *primaryRole, p *prefs.Prefs, write func(w io.Writer, figuresOnly bool), log *slog.Logger) *adminListener {
	log = log.With("component", "admin")
	a := &adminListener{log: log, addr: p.Admin.Address, cert: p.Admin.TLSCert, key: p.Admin.TLSKey}
	a.site = admin.New(r.prim, admin.Config{User: p.Admin.User, PasswordHash: p.Admin.PasswordHash,
		Metrics: func(w io.Writer) { write(w, false) }}, log)
	return a
}

var _ admin.Fleet = (*primary.Server)(nil)

func (a *adminListener) bind() error {
	l, err := net.Listen("tcp", a.addr)
	if err != nil {
		return fmt.Errorf("cannot listen on admin.address %s: %w", a.addr, err)
	}
	if a.cert != "" {
		if l, err = tlsListener(l, a.cert, a.key); err != nil {
			return fmt.Errorf("admin listener: %w", err)
		}
	}
	a.ln = l
	a.srv = &http.Server{Handler: a.site, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second,
		IdleTimeout: 90 * time.Second, MaxHeaderBytes: 32 << 10, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
	a.log.Info("admin listening", "address", l.Addr().String(), "tls", a.cert != "")
	return nil
}

// Addr is where the admin listener listens ("" when not bound).
func (a *adminListener) Addr() string {
	if a == nil || a.ln == nil {
		return ""
	}
	return a.ln.Addr().String()
}

func (a *adminListener) serve(ctx context.Context) error {
	if a.srv == nil {
		return nil
	}
	return serveUntil(ctx, a.srv, a.ln)
}

// configure applies new prefs: new credentials at once; none closes the
// listener (a restart opens it again).
func (a *adminListener) configure(p *prefs.Prefs) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	if !p.Admin.Enabled() {
		a.closed = true
		a.site.SetCredentials("", "")
		if a.srv != nil {
			a.srv.Close()
		}
		a.log.Info("admin credentials removed: the admin listener is closed")
		return
	}
	a.site.SetCredentials(p.Admin.User, p.Admin.PasswordHash)
}
