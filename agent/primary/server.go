// Package primary is the central server of the sync API v5: it authenticates
// sites, pins their hardware, takes their pushes, decides by the routing
// rules (agent/routing) which store owns each record and which sites must
// hold it, publishes the store rows, and serves central data by cursor. The
// order of changes, the queues and convergence are the storage's (queue.PrimaryStore)
// (docs/replication.md).
//
// Imported by agent/daemon (the wiring), agent/admin (the site list it
// shows) and tests.
package primary

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"syncagent/agent/metrics"
	"syncagent/agent/routing"
	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// Limits a primary enforces on every request.
const (
	DefaultMaxBody  = 16 << 20 // bytes of a request body, after gzip
	DefaultMaxBatch = 5000     // records in one push, ids in one acknowledgement, limit of a pull
	// DefaultMaxInFlight is the bytes of requests served at once (about
	// four pushes of the largest body).
	DefaultMaxInFlight = 64 << 20
	DefaultMaxPerSite  = 3
	requestCost        = 256 << 10 // what a request without a body counts for (its answer)
	defaultPull        = 1000      // records in a pull when the client gives no limit
)

// Config is what the primary needs from the prefs.
type Config struct {
	Sites []SiteRow
	// DisabledReason, when not empty, refuses every sync request with it
	// (e.g. a site row carries a URL, which disables sync on a primary).
	DisabledReason string
	MaxBody        int64
	MaxBatch       int
	// CentralServerURL is answered as omSupplyCentralServerUrl by GET site
	// (an open-mSupply remote needs it to sync; see the README).
	CentralServerURL string
	// TrustedProxies are the addresses (CIDR) of load balancers in front
	// of this primary: from them, a request's source address is taken from
	// X-Forwarded-For (for the per-address login lockout).
	TrustedProxies []netip.Prefix
	// MaxInFlight bounds the bytes of requests being served at once (a
	// push counts its body, any other request a fixed cost); a request
	// over it is answered 503 with Retry-After before its body is read.
	MaxInFlight int64
	// MaxPerSite bounds one site's requests in flight (a real box sends one
	// at a time).
	MaxPerSite int
	// AuthKey, when set, lets a verified password leave a token in the
	// registry so that a restart (or another node) lets the site in without
	// a slow hash. Every node serving one database needs the same key.
	AuthKey []byte
}

// Server serves the sync API v5 for a primary.
type Server struct {
	store queue.PrimaryStore
	log   *slog.Logger
	now   func() time.Time
	auth  *authenticator
	rate  *rateLog // for anything a client can make repeat

	cfg      atomic.Pointer[Config]
	sites    atomic.Pointer[siteTable]
	router   atomic.Pointer[router]
	confMu   sync.Mutex       // one Configure (or registry refresh, or site change) at a time
	registry registrySnapshot // the registry as last applied; guarded by confMu

	fleet    *fleet
	metrics  *metrics.Registry // nil: nothing counted
	inflight inflight
}

// New returns a primary serving store. now may be nil (time.Now).
func New(store queue.PrimaryStore, cfg Config, log *slog.Logger, now func() time.Time) (*Server, error) {
	if now == nil {
		now = time.Now
	}
	log = log.With("component", "primary")
	auth := newAuthenticator(now)
	auth.key = cfg.AuthKey
	s := &Server{store: store, log: log, now: now, auth: auth, rate: newRateLog(log, now), fleet: newFleet(), inflight: inflight{perSite: map[int]int{}}}
	if err := s.Configure(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// UseMetrics makes the server count requests and records in r. Call it
// before serving.
func (s *Server) UseMetrics(r *metrics.Registry) { s.metrics = r }

// Verify reports whether cfg could be applied, without applying it: its
// rows must also agree with the registry as last read.
func (s *Server) Verify(cfg Config) error {
	s.confMu.Lock()
	reg := s.registry
	s.confMu.Unlock()
	_, err := newSiteTable(cfg.Sites, reg.rows...)
	return err
}

// Configure applies new settings and site rows live, with the site
// registry as it is now in the storage (see applyLocked).
func (s *Server) Configure(cfg Config) error {
	s.confMu.Lock()
	defer s.confMu.Unlock()
	reg, err := s.readRegistry()
	if err != nil {
		return err
	}
	return s.applyLocked(cfg, reg, nil)
}

// applyLocked applies cfg with the registry reg: the site table is the
// prefs rows and the registry's. Pre-pinned hardware IDs are seeded for
// sites the primary has never seen, the central store rows are kept in
// step with the rows, and every queue is brought in line with the new
// membership (a store added to a site fills its queue, one removed deletes
// its records there, a removed site's queue is emptied). The caller holds
// confMu.
//
// prev is the router of the table being replaced when only the registry
// changed (its store rows are then published store by store), nil to read
// them all.
func (s *Server) applyLocked(cfg Config, reg registrySnapshot, prev *router) error {
	start := time.Now()
	t, err := newSiteTable(cfg.Sites, reg.rows...)
	if err != nil {
		return fmt.Errorf("cannot use site rows: %w", err)
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxPerSite <= 0 {
		cfg.MaxPerSite = DefaultMaxPerSite
	}
	inUse := make(map[string]bool, len(t.byID))
	var states map[int]queue.SiteState // read once, for every pre-pin
	for _, row := range t.byID {
		inUse[row.PasswordHash] = true
		if row.HardwareID == "" || row.Registry {
			continue // a registry row's pre-pin holds at first contact (prePin): 40,000 pins written here would take minutes
		}
		if states == nil {
			states = map[int]queue.SiteState{}
			for _, st := range s.store.Sites() {
				states[st.SyncID] = st
			}
		}
		st, seen := states[row.SyncID]
		if !seen { // not in the list: make sure before pinning
			if st, err = s.store.Site(row.SyncID); err != nil {
				return fmt.Errorf("cannot read site %d: %w", row.SyncID, err)
			}
		}
		if st.HardwareID == "" && st.PinnedAt.IsZero() && st.LastContact.IsZero() {
			if _, err := s.store.Pin(row.SyncID, row.HardwareID); err != nil {
				return fmt.Errorf("cannot pre-pin site %d: %w", row.SyncID, err)
			}
		}
	}
	s.auth.forget(inUse)
	tabled := time.Now()
	rt, err := s.publishStores(t, prev)
	if err != nil {
		return err
	}
	published := time.Now()
	s.cfg.Store(&cfg)
	s.sites.Store(t)
	s.router.Store(rt)
	s.registry = reg
	if _, err := s.store.Reconcile(t.membership(), rt); err != nil {
		return fmt.Errorf("cannot bring the queues in line with the site rows: %w", err)
	}
	s.log.Debug("site table applied", "sites", len(t.ids), "registry_generation", reg.gen, "table", tabled.Sub(start),
		"store_rows", published.Sub(tabled), "reconcile", time.Since(published))
	return nil
}

// Handler returns the HTTP handler for the sync API, with its bounds.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(method, endpoint string, h func(http.ResponseWriter, *http.Request, *SiteRow)) {
		mux.HandleFunc(method+" "+syncapi.PathPrefix+endpoint, s.authenticated(h))
	}
	route("GET", syncapi.EndpointSite, s.handleSite)
	route("GET", syncapi.EndpointSiteStatus, s.handleSiteStatus)
	route("POST", syncapi.EndpointInitialise, s.handleInitialise)
	route("GET", syncapi.EndpointCentral, s.handleCentral)
	route("GET", syncapi.EndpointQueued, s.handleQueued)
	route("POST", syncapi.EndpointQueued, s.handlePush)
	route("POST", syncapi.EndpointAcknowledged, s.handleAcknowledged)
	route("POST", syncapi.EndpointDiagnostics, s.handleDiagnostics)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, syncapi.PathPrefix) && knownEndpoint(strings.TrimPrefix(r.URL.Path, syncapi.PathPrefix)) {
			syncapi.WriteError(w, r, syncapi.Errorf(http.StatusMethodNotAllowed, syncapi.CodeMethodNotAllowed, "%s is not allowed on %s", r.Method, r.URL.Path))
			return
		}
		syncapi.WriteError(w, r, syncapi.Errorf(http.StatusNotFound, syncapi.CodeNotFound, "no endpoint %s: the sync API lives under %s", r.URL.Path, syncapi.PathPrefix))
	})
	return mux
}

func knownEndpoint(e string) bool {
	switch e {
	case syncapi.EndpointSite, syncapi.EndpointSiteStatus, syncapi.EndpointInitialise, syncapi.EndpointCentral, syncapi.EndpointQueued, syncapi.EndpointAcknowledged,
		syncapi.EndpointDiagnostics:
		return true
	}
	return false
}

// NewHTTPServer wraps h with the timeouts that keep slow or silent clients
// from holding connections.
func NewHTTPServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// authenticated checks credentials, the version header and the hardware pin
// before handing the request to h, and counts the request for the fleet
// view and the metrics.
func (s *Server) authenticated(h func(http.ResponseWriter, *http.Request, *SiteRow)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		endpoint := strings.TrimPrefix(r.URL.Path, syncapi.PathPrefix)
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() { s.metrics.Request(r.Method, endpoint, sw.status, s.now().Sub(start)) }()
		row, e := s.admit(r)
		if e != nil {
			if e.Status >= 500 {
				s.rate.logf(slog.LevelError, "fail "+r.URL.Path, "request failed", "path", r.URL.Path, "err", e)
			}
			if row != nil {
				s.fleet.refused(row.SyncID, start, e.Code)
			}
			syncapi.WriteError(sw, r, e)
			return
		}
		release, e := s.inflight.admit(row.SyncID, s.costOf(r), s.cfg.Load())
		if e != nil {
			sw.Header().Set("Retry-After", "5")
			s.metrics.Event("busy_refused")
			syncapi.WriteError(sw, r, e)
			return
		}
		defer release()
		s.noteHealth(r, row, start)
		s.fleet.note(row.SyncID, endpoint, start, nil)
		h(sw, r, row)
		switch {
		case sw.failure != nil:
			s.fleet.fail(row.SyncID, endpoint, start, sw.failure)
		case sw.status >= 400:
			s.fleet.fail(row.SyncID, endpoint, start, syncapi.Errorf(sw.status, "", "answered %d", sw.status))
		}
	}
}

// statusWriter remembers the status a handler answered and, for an error,
// the v5 error itself (syncapi.WriteError reports it).
type statusWriter struct {
	http.ResponseWriter
	status  int
	failure *syncapi.Error
}

func (w *statusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// Failed is called by syncapi.WriteError with what it answers.
func (w *statusWriter) Failed(e *syncapi.Error) { w.failure = e }

// noteHealth keeps the health block a satellite sends once a cycle, and
// the marks it sends with every request (syncagent's extensions; real v5
// peers send neither), so the primary notices a box restored from an older
// copy on its first request.
func (s *Server) noteHealth(r *http.Request, row *SiteRow, now time.Time) {
	var raw []byte
	var m queue.Marks
	if v := r.Header.Get(syncapi.HeaderHealth); v != "" {
		h, err := syncapi.ParseHealth(v)
		if err != nil {
			s.metrics.Event("health_refused")
			s.rate.logf(slog.LevelWarn, fmt.Sprint("health ", row.SyncID), "ignoring a health block", "site", row.SyncID, "err", err)
		} else {
			raw, _ = json.Marshal(h)
			m.OutboxSeq, m.Acked = h.OutboxSeq, h.Acked
		}
	}
	if v := r.Header.Get(syncapi.HeaderMarks); v != "" {
		wm, err := syncapi.ParseMarks(v)
		if err != nil {
			s.metrics.Event("marks_refused")
			s.rate.logf(slog.LevelWarn, fmt.Sprint("marks ", row.SyncID), "ignoring marks", "site", row.SyncID, "err", err)
			return
		}
		m = queue.Marks(wm)
	}
	if raw == nil && m == (queue.Marks{}) {
		return
	}
	if _, err := s.store.NoteHealth(row.SyncID, raw, m, now); err != nil {
		s.rate.logf(slog.LevelWarn, fmt.Sprint("health store ", row.SyncID), "cannot keep a health block", "site", row.SyncID, "err", err)
	}
}

func (s *Server) admit(r *http.Request) (*SiteRow, *syncapi.Error) {
	caller, e := syncapi.ReadCaller(r)
	if e != nil {
		return nil, e
	}
	if reason := s.cfg.Load().DisabledReason; reason != "" {
		return nil, syncapi.Errorf(http.StatusServiceUnavailable, syncapi.CodeSyncDisabled, "sync is disabled on the primary: %s", reason)
	}
	row := s.sites.Load().byUser[caller.User]
	if row == nil {
		return nil, syncapi.Errorf(http.StatusUnauthorized, syncapi.CodeSiteNameNotFound, "no site has the user name %q", caller.User)
	}
	if row.URL != "" {
		// The seed's rule, per row: a URL on the primary's row of a site
		// disables sync for it (for a prefs row, DisabledReason above
		// already stopped every site).
		return row, syncapi.Errorf(http.StatusServiceUnavailable, syncapi.CodeSyncDisabled,
			"sync is disabled for site %d: its row on the primary carries a url; remove it (syncagent sites edit %d --clear url)", row.SyncID, row.SyncID)
	}
	st, err := s.store.Site(row.SyncID)
	if err != nil {
		return nil, storageError(err)
	}
	l := login{presented: caller.PasswordSHA256, from: s.source(r), hwid: caller.HardwareID, pinned: st.HardwareID, token: st.Verified}
	tok, e := s.auth.check(row, l)
	if e != nil {
		return row, e
	}
	if tok != "" {
		if err := s.store.SetVerified(row.SyncID, tok); err != nil {
			s.rate.logf(slog.LevelWarn, "verified", "cannot keep a verified password's token", "site", row.SyncID, "err", err)
		}
	}
	if caller.HardwareID == "" {
		return row, syncapi.Errorf(http.StatusUnauthorized, syncapi.CodeSiteIncorrectHWID, "the %s header is missing", syncapi.HeaderSiteUUID)
	}
	if !validHardwareID(caller.HardwareID) {
		// Refused here, not by the datafile: that refusal read as a storage
		// failure (503, "retry later") for what is bad input.
		return row, syncapi.Errorf(http.StatusUnauthorized, syncapi.CodeSiteIncorrectHWID,
			"the %s header is not a hardware ID: at most %d characters, no control characters", syncapi.HeaderSiteUUID, maxHardwareID)
	}
	if want := prePin(row, st); want != "" && caller.HardwareID != want {
		return row, syncapi.Errorf(http.StatusUnauthorized, syncapi.CodeSiteIncorrectHWID,
			"site %d is pinned to another box; sync stays disabled for it until the pin is cleared on the primary", row.SyncID)
	}
	if _, err := s.store.Pin(row.SyncID, caller.HardwareID); err != nil {
		if errors.Is(err, queue.ErrHardwareMismatch) {
			return row, syncapi.Errorf(http.StatusUnauthorized, syncapi.CodeSiteIncorrectHWID,
				"site %d is pinned to another box; sync stays disabled for it until the pin is cleared on the primary", row.SyncID)
		}
		return nil, storageError(err)
	}
	if len(row.Stores) == 0 {
		return row, syncapi.Errorf(http.StatusForbidden, syncapi.CodeSiteHasNoStore, "site %d has no active store", row.SyncID)
	}
	if err := s.store.Touch(row.SyncID, s.now()); err != nil {
		s.rate.logf(slog.LevelWarn, "touch", "cannot record last contact", "site", row.SyncID, "err", err)
	}
	return row, nil
}

// source is the address a request comes from: its peer, or behind a
// trusted proxy the last address X-Forwarded-For names that is not itself
// a trusted proxy.
func (s *Server) source(r *http.Request) string {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	addr := peer.Addr().Unmap()
	trusted := func(a netip.Addr) bool {
		for _, p := range s.cfg.Load().TrustedProxies {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	if !trusted(addr) {
		return addr.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		if a = a.Unmap(); !trusted(a) {
			return a.String()
		}
	}
	return addr.String()
}

// maxHardwareID is the longest hardware ID the datafile pins.
const maxHardwareID = 256

func validHardwareID(id string) bool { return len(id) <= maxHardwareID && !hasControl(id) }

// hasControl reports whether s holds an ASCII control character, which the
// datafile refuses inside its keys.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

func storageError(err error) *syncapi.Error {
	return syncapi.Errorf(http.StatusServiceUnavailable, syncapi.CodeStorage, "the primary could not store data (%v); retry later", err)
}

// Write is the primary's own write (local API on the primary), routed by
// the same rules as a push: a store record goes to every site where its
// store is active (and to a transfer's receiver), central data to the
// central log every site reads.
func (s *Server) Write(r queue.Record) (uint64, error) {
	if err := r.Validate(); err != nil {
		return 0, err
	}
	s.confMu.Lock()
	defer s.confMu.Unlock()
	v, err := s.store.Write(r, s.router.Load())
	if err == nil && r.Table == routing.TableStore {
		// A store row names where its store is active and its name record:
		// transfers route by it.
		var rt *router
		if rt, err = s.routerFor(s.sites.Load()); err == nil {
			s.router.Store(rt)
		}
	}
	return v, err
}

// Accept takes a push from site origin (what POST queued_records does once
// the request is decoded), deciding each record by the routing rules.
func (s *Server) Accept(origin int, in []queue.Inbound) (queue.AcceptResult, error) {
	return s.store.Accept(origin, in, s.router.Load())
}

// Generate refills every site's queue with what it should hold: the seed's
// "generate sync records" on a primary. A record already queued for a site
// is not queued again.
func (s *Server) Generate(ctx context.Context) (int, error) {
	total := 0
	for _, id := range s.sites.Load().ids {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := s.store.Fill(id)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// ClearPin clears a site's pinned hardware ID so the next box to call is
// pinned instead.
func (s *Server) ClearPin(id int) error {
	if s.sites.Load().byID[id] == nil {
		return fmt.Errorf("no site with sync_id %d", id)
	}
	return s.store.ClearPin(id)
}
