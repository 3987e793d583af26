package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"syncagent/agent/adapt"
	"syncagent/agent/control"
	"syncagent/agent/lock"
	"syncagent/agent/prefs"
	"syncagent/agent/satellite"
	"syncagent/agent/syncapi"
	"syncagent/agent/version"
	"syncagent/ops"
	"syncagent/queue"
)

// satelliteRole is a satellite: sync cycles against its primary, on the
// interval, on request and sooner after a failure (with backoff) or when the
// link is back. Every cycle, and every prefs commit that touches what a
// cycle uses, runs on the one goroutine in Run, so no change races a cycle.
type satelliteRole struct {
	noPins
	*localRecords
	log     *slog.Logger
	local   *queue.Local
	path    string
	hwid    string
	clock   adapt.Clock
	hist    *history
	changed func() // refreshes STATUS=

	cfg     atomic.Pointer[prefs.Prefs]         // the prefs cycles run by; stored on the cycle goroutine
	latest  atomic.Pointer[prefs.Prefs]         // the latest committed prefs (writes and checks use them at once)
	sat     atomic.Pointer[satellite.Satellite] // replaced on the cycle goroutine only
	pending atomic.Pointer[pendingPrefs]        // committed, not yet applied by the cycle goroutine
	cycling atomic.Bool                         // a cycle is in progress
	beat    atomic.Int64                        // unix nanos of the cycle goroutine's last sign of life

	prefsPoke chan struct{}
	wake      chan struct{} // the link is back (a check succeeded)
	jobs      chan func(ctx context.Context)

	// Owned by the cycle goroutine.
	timer   *time.Timer
	backoff *adapt.Backoff

	mu   sync.Mutex
	next time.Time // the next planned cycle; guarded by mu

	started time.Time

	fleet satFleet // metrics of its requests, diagnostics on request (satfleet.go)
}

type pendingPrefs struct {
	p       *prefs.Prefs
	applied chan struct{} // closed once the cycle goroutine applied p (or a newer commit superseded it)
}

// Timings of the cycle goroutine.
var (
	// loopBeat is how often an idle cycle goroutine shows it is alive.
	loopBeat = 10 * time.Second
	// firstCycleDelay starts the first cycle soon after start, so a box that
	// was off catches up without waiting a whole interval.
	firstCycleDelay = 2 * time.Second
	// commitWait is how long a prefs commit waits for the cycle goroutine
	// before it reports that the change applies when the cycle ends.
	commitWait = time.Second
)

const pendingCycle = "applies when the sync cycle in progress ends"

func newSatelliteRole(p *prefs.Prefs, hwid string, log *slog.Logger, gone func(error), changed func()) (*satelliteRole, error) {
	path := datafilePath(p)
	l, err := queue.OpenLocal(path, queue.LocalOptions{OutboxMax: p.Limits.OutboxMaxRecords, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("cannot open the datafile: %w", err)
	}
	if why := l.Recovered(); why != "" {
		log.Error("the datafile was damaged and has been set aside; this site will be refilled from the primary", "detail", why)
	}
	s := &satelliteRole{noPins: noPins{prefs.RoleSatellite}, log: log, local: l, path: path, hwid: hwid, clock: adapt.SystemClock{},
		changed: changed, prefsPoke: make(chan struct{}, 1), wake: make(chan struct{}, 1), jobs: make(chan func(context.Context)),
		backoff: adapt.NewBackoff(adapt.SystemClock{}, time.Second, 5*time.Minute), started: time.Now()}
	s.hist = openHistory(l, log)
	s.localRecords = newLocalRecords(l, path, gone, log, changed)
	s.localRecords.stores.Store(&p.Site.Stores)
	s.cfg.Store(p)
	s.latest.Store(p)
	s.sat.Store(s.newSatellite(p))
	s.alive()
	return s, nil
}

func (s *satelliteRole) kind() prefs.Role { return prefs.RoleSatellite }
func (s *satelliteRole) bind() error      { return nil }
func (s *satelliteRole) datafile() string { return s.path }
func (s *satelliteRole) Close() error     { return s.local.Close() }

func (s *satelliteRole) provisioned() error {
	return s.local.SetMeta(lock.DatafileMeta, []byte(time.Now().UTC().Format(time.RFC3339)))
}

func (s *satelliteRole) evidence() string { return datafileEvidence(s.local, s.path) }

// datafileEvidence says whether a satellite's (or disabled box's) datafile
// shows the box was provisioned.
func datafileEvidence(l *queue.Local, path string) string {
	if b, ok, err := l.Meta(lock.DatafileMeta); err == nil && ok {
		return fmt.Sprintf("its datafile %s says it was provisioned at %s", path, b)
	}
	return ""
}

// newClient builds the client for p's primary row: a prefs commit that
// changes the URL, user or password gets a new one. It sends the box's
// health block once a cycle.
func (s *satelliteRole) newClient(p *prefs.Prefs) *syncapi.Client {
	peer := p.Primary()
	return &syncapi.Client{BaseURL: peer.URL, User: peer.User, PasswordSHA256: peer.PasswordSHA256, HardwareID: s.hwid,
		Health:   func() string { return syncapi.EncodeHealth(s.health()) },
		Marks:    func() string { return syncapi.EncodeMarks(s.marks()) },
		HTTP:     s.fleet.httpClient(),
		Answered: s.fleet.answered}
}

// marks are what every request carries for the primary to notice a
// datafile restored from an older copy.
func (s *satelliteRole) marks() syncapi.Marks {
	return syncapi.Marks{OutboxSeq: s.local.OutboxNumbering(), Acked: s.acked(), Gen: s.local.Generation()}
}

// acked is the satellite's acknowledged mark (0 before it is built).
func (s *satelliteRole) acked() uint64 {
	if sat := s.sat.Load(); sat != nil {
		return sat.Acked()
	}
	return 0
}

// health is what the box reports of itself to the primary's fleet view.
func (s *satelliteRole) health() syncapi.Health {
	now := time.Now()
	sum := s.hist.summary()
	h := syncapi.Health{Version: version.Release, Outbox: s.local.OutboxLen(), Clock: now.UnixMilli(),
		Uptime: int64(now.Sub(s.started).Seconds()), FreeBytes: ops.FreeBytes(filepath.Dir(s.path)),
		OutboxSeq: s.local.OutboxNumbering()}
	if since := s.local.OutboxWaitingSince(); !since.IsZero() {
		h.OutboxAge = int64(now.Sub(since).Seconds())
	}
	if aside, err := s.local.Aside(); err == nil {
		h.Aside = len(aside)
	}
	if fi, err := os.Stat(s.path); err == nil {
		h.DataBytes = fi.Size()
	}
	if !sum.lastSuccess.IsZero() {
		h.LastSuccess = sum.lastSuccess.Unix()
	}
	if f := sum.lastFailure; f != nil {
		h.LastError, h.LastErrorAt = f.Error, f.Finished.Unix()
	}
	if iv := s.cfg.Load().Interval(); iv > 0 {
		h.Interval = int(iv.Minutes())
	}
	if sat := s.sat.Load(); sat != nil {
		h.Acked = sat.Acked()
		h.Link = sat.Status().PushSizer
	}
	return h
}

func (s *satelliteRole) newSatellite(p *prefs.Prefs) *satellite.Satellite {
	sat := satellite.New(s.local, s.newClient(p), satelliteConfig(p), s.log, s.clock)
	sat.OnProgress(s.alive)
	return sat
}

func satelliteConfig(p *prefs.Prefs) satellite.Config {
	return satellite.Config{SyncID: p.Site.SyncID, Stores: p.Site.Stores, RequestSize: p.Site.RequestSize.Fixed}
}

func (s *satelliteRole) alive()                    { s.beat.Store(time.Now().UnixNano()) }
func (s *satelliteRole) sinceAlive() time.Duration { return time.Since(time.Unix(0, s.beat.Load())) }

// Run is the cycle goroutine.
func (s *satelliteRole) Run(ctx context.Context) error {
	s.timer = time.NewTimer(time.Hour)
	s.timer.Stop()
	defer s.timer.Stop()
	s.applyPending()
	if s.interval() >= 0 {
		s.plan(firstCycleDelay)
	}
	tick := time.NewTicker(loopBeat)
	defer tick.Stop()
	for {
		s.alive()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-s.prefsPoke:
			s.applyPending()
		case <-s.wake:
			s.backoff.Reset()
			if sum := s.hist.summary(); sum.last != nil && sum.last.Error != "" && s.interval() >= 0 {
				s.plan(0)
			}
		case job := <-s.jobs:
			job(ctx)
			s.applyPending()
		case <-s.timer.C:
			s.plan(s.after(s.cycle(ctx, false)))
			s.applyPending()
		}
	}
}

// plan sets the timer for the next cycle in d; d < 0 plans none.
func (s *satelliteRole) plan(d time.Duration) {
	s.timer.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if d < 0 {
		s.next = time.Time{}
		return
	}
	s.next = time.Now().Add(d)
	s.timer.Reset(d)
}

// interval is the time between cycles; negative when sync is paused.
func (s *satelliteRole) interval() time.Duration {
	p := s.cfg.Load()
	if p.SyncDisabledReason() != "" {
		return -1
	}
	return p.Interval()
}

// after plans the next cycle: at once after a truncated cycle, the interval
// after a success, a jittered backoff (never longer than the interval) after
// a failure.
func (s *satelliteRole) after(c control.Cycle) time.Duration {
	iv := s.interval()
	switch {
	case c.Truncated && c.Error == "":
		return 0
	case c.Busy:
		return min(busyRetry, max(iv, 0)) // the primary asked to come back: soon, not after a backoff
	case c.Error == "" || iv < 0:
		s.backoff.Reset()
		return iv
	}
	return min(s.backoff.Next(), iv)
}

func (s *satelliteRole) cycle(ctx context.Context, retrieveOnly bool) control.Cycle {
	s.cycling.Store(true)
	defer s.cycling.Store(false)
	faultPoint("cycle")
	sat := s.sat.Load()
	var res satellite.Result
	if retrieveOnly {
		res = sat.Retrieve(ctx)
	} else {
		res = sat.Cycle(ctx)
	}
	c := cycleReport(kindOf(retrieveOnly), res)
	if res.Err != nil && ctx.Err() != nil {
		// Stopping (SIGTERM): not a failure of the link, nor worth keeping.
		s.log.Info("sync cycle stopped: the agent is stopping", "kind", c.Kind)
		return c
	}
	contact := res.Err == nil || c.Refused || res.Pushed > 0 || res.Pulled > 0
	s.hist.record(c, contact)
	s.afterCycle(ctx, c)
	switch {
	case c.Refused:
		s.log.Warn("sync cycle refused by the primary", "kind", c.Kind, "err", c.Error, "advice", c.Advice)
	case c.Error != "":
		s.log.Warn("sync cycle failed", "kind", c.Kind, "err", c.Error, "advice", c.Advice)
	default:
		s.log.Info("sync cycle done", "kind", c.Kind, "pushed", c.Pushed, "pulled", c.Pulled, "applied", c.Applied, "set_aside", c.SetAside,
			"truncated", c.Truncated, "took", c.Finished.Sub(c.Started).Round(time.Millisecond))
	}
	s.changed()
	return c
}

// busyRetry is how soon a cycle the primary answered "busy" is tried again.
const busyRetry = 30 * time.Second

func kindOf(retrieveOnly bool) string {
	if retrieveOnly {
		return "retrieve"
	}
	return "sync"
}

func cycleReport(kind string, r satellite.Result) control.Cycle {
	c := control.Cycle{Kind: kind, Started: r.Started, Finished: r.Finished, Pushed: r.Pushed, SetAside: r.SetAside,
		Pulled: r.Pulled, Applied: r.Applied, LocalWins: r.LocalWins, Invalid: r.Invalid, Truncated: r.Truncated, Busy: r.Busy,
		Removed: r.Removed, Initialisation: r.Initialisation, CentralReread: r.CentralReread, Rewound: r.Rewound, Notes: r.Notes}
	if r.Err != nil {
		c.Error, c.Advice, c.Refused = r.Err.Error(), syncapi.Advice(r.Err), isRefusal(r.Err)
	}
	return c
}

// isRefusal reports whether err is the primary answering with a v5 error
// (credentials, hardware ID, store, version, busy, storage): it was reached,
// and the link is not at fault.
func isRefusal(err error) bool {
	e, ok := syncapi.AsError(err)
	if !ok {
		return false
	}
	switch e.Status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusConflict, http.StatusTooManyRequests:
		return true
	}
	return e.Code != "" && e.Code != fmt.Sprintf("http_%d", e.Status)
}

// do runs job on the cycle goroutine and waits for it.
func (s *satelliteRole) do(ctx context.Context, job func(ctx context.Context)) error {
	done := make(chan struct{})
	select {
	case s.jobs <- func(loopCtx context.Context) { job(loopCtx); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *satelliteRole) sync(ctx context.Context, retrieveOnly bool) (control.Cycle, error) {
	var c control.Cycle
	err := s.do(ctx, func(loopCtx context.Context) {
		c = s.cycle(loopCtx, retrieveOnly)
		s.plan(s.after(c))
	})
	return c, err
}

func (s *satelliteRole) generate(ctx context.Context, fresh bool) (int, error) {
	var n int
	var genErr error
	if err := s.do(ctx, func(loopCtx context.Context) { n, genErr = s.sat.Load().Generate(loopCtx, fresh) }); err != nil {
		return 0, err
	}
	return n, genErr
}

// check tests the connection with the latest committed prefs. It runs on a
// satellite and client of its own, so it never waits for a cycle nor shares
// the cycle's client.
func (s *satelliteRole) check(ctx context.Context) (control.Check, error) {
	p := s.latest.Load()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r := satellite.New(s.local, s.newClient(p), satelliteConfig(p), s.log, s.clock).Check(ctx)
	c := checkReport(r, p.Primary().User)
	if c.RoundTripMS != nil {
		s.hist.contact(time.Now())
	}
	if r.OK() {
		poke(s.wake) // the link is back: don't sleep out a backoff
	}
	return c, nil
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (s *satelliteRole) history() ([]control.Cycle, error) { return s.hist.cycles(), nil }

func (s *satelliteRole) status(st *control.Status) {
	ss := s.sat.Load().Status()
	st.OutboxLength, st.SetAside, st.PushSizer, st.PullSizer = ss.OutboxLen, ss.AsideLen, ss.PushSizer, ss.PullSizer
	st.Initialisation, st.CentralReread, st.Rewound = ss.Initialisation, ss.CentralReread, ss.Rewound
	if f := ss.FirstSync; f != nil {
		st.FirstSync = &control.Progress{Started: f.Started, Done: f.Done, Total: f.Total, Bytes: f.Bytes, Rate: f.Rate, LeftS: int64(f.Left / time.Second)}
	}
	sum := s.hist.summary()
	st.LastSync, st.LastSuccess, st.LastFailure, st.FailingSince, st.LastContact = sum.last, sum.lastSuccess, sum.lastFailure, sum.failingSince, sum.lastContact
	s.mu.Lock()
	st.NextSync = s.next
	s.mu.Unlock()
	st.Records = s.local.Count()
	if peer := s.cfg.Load().Primary(); peer != nil {
		st.PrimaryURL, st.PrimaryUser = peer.URL, peer.User
	}
	if s.pending.Load() != nil {
		st.Prefs.Pending = pendingCycle
	}
}

// sites is the satellite's one row, its primary, as the cycles use it.
func (s *satelliteRole) sites() ([]control.Site, error) {
	peer := s.cfg.Load().Primary()
	if peer == nil {
		return []control.Site{}, nil
	}
	return []control.Site{{SyncID: peer.SyncID, User: peer.User, URL: peer.URL, LastContact: s.hist.summary().lastContact, QueueLength: s.local.OutboxLen()}}, nil
}

// The settings a satellite applies while running: the interval (the next
// cycle is planned by it), the request size and stores (the satellite is
// configured between cycles), the outbox limit and the stores writes must
// belong to (at once), and the primary's URL, user and password (a new
// client, between cycles).
var satelliteLive = liveSettings("site.interval_minutes", "site.request_size", "site.stores", "limits.outbox_max_records",
	"sync_with.user", "sync_with.password_sha256", "sync_with.url")

func (s *satelliteRole) live(setting string) bool { return satelliteLive[setting] }

func (s *satelliteRole) verify(next *prefs.Prefs) error {
	if next.Primary() == nil {
		return fmt.Errorf("a satellite needs exactly one [[sync_with]] row, its primary")
	}
	return nil
}

// commit applies what writes use at once, and hands the rest to the cycle
// goroutine, waiting a moment for it.
func (s *satelliteRole) commit(next *prefs.Prefs) string {
	s.latest.Store(next)
	s.localRecords.stores.Store(&next.Site.Stores)
	s.local.SetOutboxMax(next.Limits.OutboxMaxRecords)
	pp := &pendingPrefs{p: next, applied: make(chan struct{})}
	if old := s.pending.Swap(pp); old != nil {
		close(old.applied) // superseded: pp carries it
	}
	poke(s.prefsPoke)
	select {
	case <-pp.applied:
		return ""
	case <-time.After(commitWait):
		return pendingCycle
	}
}

// applyPending applies the latest committed prefs; on the cycle goroutine.
func (s *satelliteRole) applyPending() {
	pp := s.pending.Swap(nil)
	if pp == nil {
		return
	}
	defer close(pp.applied)
	old, next := s.cfg.Load(), pp.p
	oldPeer, newPeer := old.Primary(), next.Primary()
	peerChanged := oldPeer.URL != newPeer.URL || oldPeer.User != newPeer.User || oldPeer.PasswordSHA256 != newPeer.PasswordSHA256
	if peerChanged {
		s.sat.Store(s.newSatellite(next))
		s.backoff.Reset()
		s.log.Info("the primary's URL, user or password changed: the next request uses them", "url", newPeer.URL, "user", newPeer.User)
	} else {
		s.sat.Load().Configure(satelliteConfig(next))
	}
	s.cfg.Store(next)
	failing := false
	if sum := s.hist.summary(); sum.last != nil && sum.last.Error != "" {
		failing = true
	}
	switch iv := s.interval(); {
	case iv < 0:
		s.plan(-1)
	case peerChanged && failing:
		s.plan(0) // a fixed password or URL is tried at once
	case old.Interval() != next.Interval() || old.SyncDisabledReason() != next.SyncDisabledReason():
		s.plan(iv)
	}
	s.changed()
}
