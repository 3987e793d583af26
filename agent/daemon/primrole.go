package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/prefs"
	"syncagent/agent/primary"
	"syncagent/ops"
	"syncagent/queue"
	"syncagent/queue/pg"
)

// primaryRole is the primary: it serves the sync API v5 to its sites. Its
// site table is the primary.Server's, swapped atomically on a commit; its
// goroutine serves HTTP. Its state is in a BuntDB file in state_dir, or,
// with [central] database, in PostgreSQL, which several nodes serve at once.
type primaryRole struct {
	noCycles
	*centralRecords
	log     *slog.Logger
	store   primaryStore
	prim    *primary.Server
	path    string // the datafile; "" on PostgreSQL
	where   string // where the state is, for messages
	storage string // the same for status: the datafile or the database URL
	cfg     atomic.Pointer[prefs.Prefs]
	beat    atomic.Int64

	ln  net.Listener // bound by bind, before the start is committed
	srv *http.Server
}

// primaryStore is what the role needs of its storage: the contract, and
// a last flush of the sites' contact times (kept in memory between
// writes) on a clean stop.
type primaryStore interface {
	queue.PrimaryStore
	FlushContacts() error
}

var (
	_ primaryStore = (*queue.Central)(nil)
	_ primaryStore = (*pg.Store)(nil)
)

func newPrimaryRole(p *prefs.Prefs, log *slog.Logger, gone func(error)) (*primaryRole, error) {
	key, err := primaryAuthKey(p, log)
	if err != nil {
		return nil, err
	}
	r := &primaryRole{noCycles: noCycles{"this box is the primary: satellites sync with it, it has no cycle of its own (run this on a satellite)"}, log: log}
	var guard *datafileGuard
	if p.Central.Database == "" {
		r.path = datafilePath(p)
		r.where, r.storage = "its central datafile "+r.path, r.path
		c, err := queue.OpenCentral(r.path, queue.CentralOptions{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("cannot open the central datafile: %w", err)
		}
		if why := c.Recovered(); why != "" {
			log.Error("the central datafile was damaged; a copy was kept and every readable record recovered", "detail", why)
		}
		r.store, guard = c, newDatafileGuard(r.path, gone)
	} else {
		r.where, r.storage = "its database "+p.Central.Database, p.Central.Database
		if r.store, err = openDatabase(p.Central, log); err != nil {
			return nil, err
		}
		if p.Central.AuthKeyFile == "" {
			log.Warn("[central] auth_key_file is not set: each node signs its sites' password tokens with its own state_dir/auth.key, so each node costs each site one slow hash; give every node the same auth_key_file")
		}
	}
	cfg := primaryConfig(p)
	cfg.AuthKey = key
	prim, err := primary.New(r.store, cfg, log, nil)
	if err != nil {
		r.store.Close()
		return nil, err
	}
	r.prim = prim
	r.centralRecords = &centralRecords{central: r.store, prim: prim, guard: guard}
	r.cfg.Store(p)
	r.alive()
	return r, nil
}

// openTimeout bounds connecting to the database and migrating its schema
// at start.
const openTimeout = 60 * time.Second

// openDatabase connects to the primary's PostgreSQL database and applies
// the schema migrations it lacks.
func openDatabase(c prefs.Central, log *slog.Logger) (*pg.Store, error) {
	opts := pg.Options{MaxConns: c.MaxConnections, Logger: log, ApplicationName: "syncagent"}
	if host, err := os.Hostname(); err == nil {
		opts.ApplicationName = "syncagent-" + host
	}
	if c.DatabasePasswordFile != "" {
		pw, err := readSecret(c.DatabasePasswordFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read [central] database_password_file: %w", err)
		}
		opts.Password = pw
	}
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	st, err := pg.Open(ctx, c.Database, opts)
	if err != nil {
		return nil, fmt.Errorf("cannot serve from the database %s: %w; check that PostgreSQL runs and this node can reach it (host, port, firewall, pg_hba.conf), "+
			"that the user and password are right (database_password_file, PGPASSWORD or ~/.pgpass) and that the user may create tables in the database; the node serves nothing until it can, and systemd starts it again", c.Database, err)
	}
	log.Info("primary state in PostgreSQL", "database", c.Database, "max_connections", c.MaxConnections)
	return st, nil
}

// readSecret reads a small secret file, without a trailing newline.
func readSecret(path string) (string, error) {
	b, _, err := ops.ReadRegular(path, 4096)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// primaryAuthKey is the key of the password tokens (primary.Config.AuthKey):
// [central] auth_key_file, which every node of one database shares, or
// state_dir/auth.key, made on first use. Without a key the primary still
// serves: each site costs one slow hash after a restart.
func primaryAuthKey(p *prefs.Prefs, log *slog.Logger) ([]byte, error) {
	if f := p.Central.AuthKeyFile; f != "" {
		b, _, err := ops.ReadRegular(f, 4096)
		if err == nil && len(b) < minAuthKey {
			err = fmt.Errorf("%s holds %d bytes, want at least %d", f, len(b), minAuthKey)
		}
		if err != nil {
			return nil, fmt.Errorf("cannot read [central] auth_key_file: %w; make one with `head -c 32 /dev/urandom > %s && chmod 600 %s` and copy the same file to every primary node", err, f, f)
		}
		return b, nil
	}
	key, err := authKey(filepath.Join(p.Paths.StateDir, "auth.key"))
	if err != nil {
		log.Warn("no auth key: after a restart each site's password costs one slow hash again", "err", err)
		return nil, nil
	}
	return key, nil
}

const minAuthKey = 32

func primaryConfig(p *prefs.Prefs) primary.Config {
	cfg := primary.Config{DisabledReason: primarySyncOff(p), CentralServerURL: p.Listen.OmSupplyCentralServerURL}
	for _, s := range p.Listen.TrustedProxies {
		if pfx, err := netip.ParsePrefix(s); err == nil { // prefs checked it
			cfg.TrustedProxies = append(cfg.TrustedProxies, pfx)
		}
	}
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

// evidence: a central datafile (or database) that knows sites has served
// as a primary.
func (r *primaryRole) evidence() string {
	if n := len(r.store.Sites()); n > 0 {
		return fmt.Sprintf("%s knows %d sites", r.where, n)
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
	wctx, stopWatch := context.WithCancel(ctx)
	watching := make(chan struct{})
	go func() { r.prim.WatchRegistry(wctx, primary.RegistryRefresh); close(watching) }() // other nodes' and operators' site changes
	defer func() { stopWatch(); <-watching }()
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
// writes) and closes the central datafile or the database connections.
func (r *primaryRole) Close() error {
	if err := r.store.FlushContacts(); err != nil {
		r.log.Warn("cannot keep the sites' last contact times", "err", err)
	}
	return r.store.Close()
}

func (r *primaryRole) status(st *control.Status) {
	st.Storage = r.storage
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
// table is swapped), the trusted proxies, and the settings it does not use (its own interval,
// request size, stores and outbox limit), which status shows at once.
var primaryLive = liveSettings("site.interval_minutes", "site.request_size", "site.stores", "limits.outbox_max_records", "listen.omsupply_central_server_url", "listen.trusted_proxies",
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
