package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/prefs"
	"syncagent/agent/primary"
	"syncagent/queue"
)

// primaryRole is the primary: it serves the sync API v5 to its sites. Its
// site table is the primary.Server's, swapped atomically on a commit; its
// goroutine serves HTTP.
type primaryRole struct {
	noCycles
	*centralRecords
	log     *slog.Logger
	central *queue.Central
	prim    *primary.Server
	path    string
	cfg     atomic.Pointer[prefs.Prefs]
	beat    atomic.Int64

	ln  net.Listener // bound by bind, before the start is committed
	srv *http.Server
}

func newPrimaryRole(p *prefs.Prefs, log *slog.Logger, gone func(error)) (*primaryRole, error) {
	path := filepath.Join(p.Paths.StateDir, "central.db")
	c, err := queue.OpenCentral(path, queue.CentralOptions{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("cannot open the central datafile: %w", err)
	}
	if why := c.Recovered(); why != "" {
		log.Error("the central datafile was damaged; a copy was kept and every readable record recovered", "detail", why)
	}
	cfg := primaryConfig(p)
	if cfg.AuthKey, err = authKey(filepath.Join(p.Paths.StateDir, "auth.key")); err != nil {
		log.Warn("no auth key: after a restart each site's password costs one slow hash again", "err", err)
	}
	prim, err := primary.New(c, cfg, log, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	r := &primaryRole{noCycles: noCycles{"this box is the primary: satellites sync with it, it has no cycle of its own (run this on a satellite)"},
		log: log, central: c, prim: prim, path: path}
	r.centralRecords = &centralRecords{central: c, prim: prim, guard: newDatafileGuard(path, gone)}
	r.cfg.Store(p)
	r.alive()
	return r, nil
}

func primaryConfig(p *prefs.Prefs) primary.Config {
	cfg := primary.Config{DisabledReason: primarySyncOff(p), CentralServerURL: p.Listen.OmSupplyCentralServerURL}
	for _, row := range p.SyncWith {
		cfg.Sites = append(cfg.Sites, primary.SiteRow{SyncID: row.SyncID, User: row.User, PasswordHash: row.PasswordHash, Stores: row.Stores, HardwareID: row.HardwareID, URL: row.URL})
	}
	return cfg
}

// authKey reads the primary's auth key (primary.Config.AuthKey), creating
// it on first use. A key of the wrong length — a torn first write — is made
// again: the tokens it signed are then no use, which costs each site one
// slow hash, nothing more.
func authKey(path string) ([]byte, error) {
	const size = 32
	if b, err := os.ReadFile(path); err == nil && len(b) == size {
		return b, nil
	}
	key := make([]byte, size)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err = f.Write(key); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("cannot write the auth key %s: %w", path, err)
	}
	return key, nil
}

// primarySyncOff is why the primary refuses sync: a site row with a URL.
// interval_minutes paces a satellite's cycles; on the primary it pauses
// nothing.
func primarySyncOff(p *prefs.Prefs) string {
	serving := *p
	serving.Site.IntervalMinutes = max(serving.Site.IntervalMinutes, 1)
	return serving.SyncDisabledReason()
}

func (r *primaryRole) kind() prefs.Role          { return prefs.RolePrimary }
func (r *primaryRole) datafile() string          { return r.path }
func (r *primaryRole) provisioned() error        { return nil }
func (r *primaryRole) alive()                    { r.beat.Store(time.Now().UnixNano()) }
func (r *primaryRole) sinceAlive() time.Duration { return time.Since(time.Unix(0, r.beat.Load())) }

// evidence: a central datafile that knows sites has served as a primary.
func (r *primaryRole) evidence() string {
	if n := len(r.central.Sites()); n > 0 {
		return fmt.Sprintf("its central datafile %s knows %d sites", r.path, n)
	}
	return ""
}

func (r *primaryRole) bind() error {
	p := r.cfg.Load()
	l, err := net.Listen("tcp", p.Listen.Address)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", p.Listen.Address, err)
	}
	if p.Listen.TLSCert != "" {
		if l, err = tlsListener(l, p.Listen.TLSCert, p.Listen.TLSKey); err != nil {
			return err
		}
	}
	r.ln, r.srv = l, primary.NewHTTPServer(p.Listen.Address, r.prim.Handler(), r.log)
	r.log.Info("primary listening", "address", l.Addr().String(), "tls", p.Listen.TLSCert != "")
	return nil
}

// Addr is where the primary listens (tests bind port 0).
func (r *primaryRole) Addr() string {
	if r.ln == nil {
		return ""
	}
	return r.ln.Addr().String()
}

// Run serves the sync API until ctx ends, then shuts the server down with a
// fresh, bounded context.
func (r *primaryRole) Run(ctx context.Context) error {
	if r.srv == nil {
		return errors.New("the primary was not bound")
	}
	done := make(chan error, 1)
	go func() { done <- r.srv.Serve(r.ln) }()
	go r.prim.WatchRegistry(ctx, primary.RegistryRefresh) // other nodes' and operators' site changes
	tick := time.NewTicker(loopBeat)
	defer tick.Stop()
serving:
	for {
		r.alive()
		select {
		case err := <-done:
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("the sync API server stopped: %w", err)
		case <-tick.C:
		case <-ctx.Done():
			break serving
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.srv.Shutdown(sctx)
	<-done
	return nil
}

// Close flushes the sites' last contact times (kept in memory between
// writes) and closes the central datafile.
func (r *primaryRole) Close() error {
	if err := r.central.FlushContacts(); err != nil {
		r.log.Warn("cannot keep the sites' last contact times", "err", err)
	}
	return r.central.Close()
}

func (r *primaryRole) status(st *control.Status) {
	sum := r.prim.QueueSummary(statusSites, statusLongest)
	st.SitesTotal, st.QueuedTotal, st.LatestSiteContact = sum.Sites, sum.Queued, sum.LastContact
	for _, v := range sum.Views {
		st.Queues = append(st.Queues, siteLine(v))
	}
}

// A primary's status lists every site up to statusSites of them, and past
// that the statusLongest longest queues (a national registry would make
// every status 40,000 lines).
const statusSites, statusLongest = 1000, 100

// sites lists every configured site with what the datafile knows of it,
// and the URL its row carries (which disables sync on a primary).
func (r *primaryRole) sites() ([]control.Site, error) {
	views := r.prim.Sites()
	out := make([]control.Site, 0, len(views))
	for _, v := range views {
		out = append(out, siteLine(v)) // with the fleet view's verdict and health (fleetapi.go)
	}
	return out, nil
}

func (r *primaryRole) generate(ctx context.Context, _ bool) (int, error) { return r.prim.Generate(ctx) }

func (r *primaryRole) clearPin(id int, authorise func() error) error {
	if !r.prim.HasSite(id) {
		return control.Errorf(http.StatusNotFound, "no site with sync_id %d", id)
	}
	if err := authorise(); err != nil {
		return err
	}
	if err := r.prim.ClearPin(id); err != nil {
		return control.Errorf(http.StatusNotFound, "%v", err)
	}
	r.log.Warn("hardware ID pin cleared; the next box to call as this site will be pinned", "site", id)
	return nil
}

// The settings the primary applies while running: its site rows (the site
// table is swapped), and the settings it does not use (its own interval,
// request size, stores and outbox limit), which status shows at once.
var primaryLive = liveSettings("site.interval_minutes", "site.request_size", "site.stores", "limits.outbox_max_records", "listen.omsupply_central_server_url",
	"sync_with", "sync_with.user", "sync_with.password_hash", "sync_with.url", "sync_with.stores", "sync_with.hardware_id")

func (r *primaryRole) live(setting string) bool { return primaryLive[setting] }

func (r *primaryRole) verify(next *prefs.Prefs) error { return r.prim.Verify(primaryConfig(next)) }

func (r *primaryRole) commit(next *prefs.Prefs) string {
	if err := r.prim.Configure(primaryConfig(next)); err != nil {
		r.log.Error("primary refused verified prefs", "err", err)
	}
	r.cfg.Store(next)
	return ""
}
