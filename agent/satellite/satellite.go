// Package satellite is a sync satellite's cycle, modelled on the reference
// v5 client (open-msupply server/service/src/sync/synchroniser.rs):
//
//  1. GET site: the primary's view of this site (initialisation status).
//  2. Initialise when needed (a datafile never initialised, the primary
//     saying "new", a changed sync_id), never POSTing again while the
//     primary says "started": it waits by polling GET site_status instead.
//  3. Push what waited in the outbox when the cycle started, in batches
//     whose queueLength counts the batch, then an empty batch
//     {"queueLength":0,"data":[]}, then poll site_status until the primary
//     has integrated (every second, up to 30 s).
//  4. Pull central records by cursor (an empty page below maxCursor is a
//     gap to step over; a maxCursor below ours means a primary restored
//     from backup: read again from 0), then this site's queue; apply
//     durably, only then acknowledge.
//  5. After a (re-)initialisation has been pulled completely, remove what
//     an older generation of the datafile left behind.
//
// Only a refusal of a record by the primary sets it aside; the link (5xx,
// 429, timeouts, resets, dial, DNS and TLS errors, a proxy's error page) never
// does. "Busy" (503 sync_is_running) is waited out without shrinking the
// request size.
package satellite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"syncagent/agent/adapt"
	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// Meta keys and cursor names kept in the datafile.
const (
	cursorCentral = "central"
	metaPushSizer = "sizer.push"
	// metaAcked is the highest queue entry this datafile has applied and
	// acknowledged (our primary's syncOutIds are numbers): the health block
	// reports it, so a primary notices a datafile restored from a copy.
	metaAcked     = "acked"
	metaPullSizer = "sizer.pull"
)

// defaultMaxRounds bounds the requests of one phase of one cycle, so a cycle
// always ends and the watchdog sees the loop come round. A phase cut there
// sets Result.Truncated.
const defaultMaxRounds = 10000

// maxConsecutiveFailures of the link within one phase ends the cycle; the
// daemon then retries with backoff.
const maxConsecutiveFailures = 4

// ErrBusy is in the chain of a cycle's error when the primary stayed busy
// (503 sync_is_running) longer than the cycle waits: retry soon.
var ErrBusy = errors.New("the primary is busy")

// Config is what the satellite needs from the prefs.
type Config struct {
	Stores      []string
	RequestSize int // 0: adaptive
	// MinTimeout is the shortest deadline a request gets once the link is
	// known; 0: adapt.DefaultMinTimeout.
	MinTimeout time.Duration
	// SyncID is this site's sync_id. The datafile remembers the sync_id it
	// was initialised for, and a different one re-initialises it cleanly
	// (another site's records are removed). 0: not checked.
	SyncID int
}

// Satellite runs sync cycles against one primary. Cycle, Retrieve and
// Generate must not run concurrently (the daemon's loop owns them); Status
// may be called from anywhere.
type Satellite struct {
	store  *queue.Local
	client *syncapi.Client
	log    *slog.Logger
	clock  adapt.Clock

	cfg        atomic.Pointer[Config]
	push, pull *adapt.Sizer // owned by the cycle goroutine
	maxRounds  int          // defaultMaxRounds; tests lower it

	lastExchange syncapi.Exchange // set by client.Observe during a call; owned by the cycle goroutine
	peerGzip     atomic.Bool      // the primary takes gzip request bodies, so the client sends them gzipped
	progress     func()           // told of every exchange; set before the first cycle

	mu      sync.Mutex
	last    Result         // guarded by mu
	sizing  [2]string      // push, pull sizer descriptions; guarded by mu
	link    adapt.Estimate // guarded by mu
	reread  time.Time      // last central re-read; guarded by mu
	rewound time.Time      // last "rewound" answer; guarded by mu
	first   *firstSync     // the first sync on its way, or nil; guarded by mu

	acked atomic.Uint64 // the highest queue entry applied and acknowledged (metaAcked)
}

// Result is what one cycle did.
type Result struct {
	Started, Finished time.Time
	Pushed            int // records the primary took
	SetAside          int // records the primary refused, moved out of the outbox with its reason
	Pulled            int // records received
	Applied           int // records applied to the datafile
	LocalWins         int // pulled records skipped because a newer local change is waiting to be pushed
	Invalid           int // pulled records that could not be applied (logged, acknowledged)
	// Removed counts records a completed re-initialisation removed: an older
	// generation's, not delivered again and with no change waiting.
	Removed int
	// Initialisation says what this cycle did about initialising the site:
	// "" nothing, "requested" (POST initialise answered), "waited" (the
	// primary was still initialising; it was waited for, not asked again),
	// "completed" (everything pulled, leftovers removed).
	Initialisation string
	// Truncated: a phase stopped at its round cap with more to do; the next
	// cycle should start at once.
	Truncated bool
	// Busy: the primary answered 503 sync_is_running and stayed busy longer
	// than the cycle waits; Err holds ErrBusy. Retry soon, not after the interval.
	Busy bool
	// CentralReread: the primary's maxCursor was below this site's central
	// cursor (a primary restored from a backup), so central data was read
	// again from cursor 0.
	CentralReread bool
	// Rewound: the primary said this site's outbox numbering went backwards
	// (this datafile restored from a backup) and took the new changes.
	Rewound bool
	// Notes are warnings for `syncagent status`, one line each.
	Notes []string
	Err   error
}

// New returns a satellite. The client's Observe hook is taken over. A clock
// that is also an adapt.TimerClock paces the waits for the primary (tests
// pass an adapt.FakeClock); otherwise they use real timers.
func New(store *queue.Local, client *syncapi.Client, cfg Config, log *slog.Logger, clock adapt.Clock) *Satellite {
	s := &Satellite{store: store, client: client, log: log.With("component", "satellite"), clock: clock, maxRounds: defaultMaxRounds}
	client.Observe = func(ex syncapi.Exchange) {
		s.lastExchange = ex
		if s.progress != nil {
			s.progress()
		}
	}
	// The client gzips request bodies once the primary's answers say it
	// takes them (Accept-Encoding); the first push wants to know (push.go).
	answered := client.Answered
	client.Answered = func(endpoint string, h http.Header) {
		if strings.Contains(strings.ToLower(h.Get("Accept-Encoding")), "gzip") {
			s.peerGzip.Store(true)
		}
		if answered != nil {
			answered(endpoint, h)
		}
	}
	s.Configure(cfg)
	if b, ok, err := store.Meta(metaAcked); err == nil && ok {
		if n, err := strconv.ParseUint(string(b), 10, 64); err == nil {
			s.acked.Store(n)
		}
	}
	return s
}

// Acked is the highest queue entry this datafile has applied and
// acknowledged, as far as the primary numbers its entries (0: none).
func (s *Satellite) Acked() uint64 { return s.acked.Load() }

// noteAcked raises the acknowledged mark to the highest of ids before they
// are acknowledged (they are applied and durable already), so a crash after
// the primary took the acknowledgement never leaves the mark behind it.
func (s *Satellite) noteAcked(ids []string) error {
	high := s.acked.Load()
	for _, id := range ids {
		if n, err := strconv.ParseUint(id, 10, 64); err == nil && n > high {
			high = n
		}
	}
	if high == s.acked.Load() {
		return nil
	}
	if err := s.store.SetMeta(metaAcked, []byte(strconv.FormatUint(high, 10))); err != nil {
		return fmt.Errorf("cannot save the acknowledged mark: %w", err)
	}
	s.acked.Store(high)
	return nil
}

// OnProgress sets a function told of every exchange with the primary (the
// daemon's watchdog uses it as a sign of life; every poll of a wait is
// one). Call it before the first cycle.
func (s *Satellite) OnProgress(f func()) { s.progress = f }

// Configure applies new settings live; learned sizes are kept when the
// request size stays adaptive.
func (s *Satellite) Configure(cfg Config) {
	old := s.cfg.Swap(&cfg)
	if old != nil && old.RequestSize == cfg.RequestSize && old.MinTimeout == cfg.MinTimeout && s.push != nil {
		return
	}
	deadline := s.client.Timeout
	if deadline <= 0 {
		deadline = syncapi.DefaultTimeout
	}
	sc := adapt.Config{Fixed: cfg.RequestSize, MinRecords: 1, MaxRecords: 5000, MaxBytes: maxRequestBytes, Deadline: deadline, MinTimeout: cfg.MinTimeout}
	s.push, s.pull = adapt.NewSizer(sc, s.clock), adapt.NewSizer(sc, s.clock)
	s.restoreSizer(s.push, metaPushSizer)
	s.restoreSizer(s.pull, metaPullSizer)
}

func (s *Satellite) restoreSizer(z *adapt.Sizer, key string) {
	if b, ok, err := s.store.Meta(key); err == nil && ok {
		if err := z.RestoreState(b); err != nil {
			s.log.Info("ignoring saved request size", "key", key, "err", err)
		}
	}
}

func (s *Satellite) saveSizers() {
	for key, z := range map[string]*adapt.Sizer{metaPushSizer: s.push, metaPullSizer: s.pull} {
		if b, err := z.MarshalState(); err == nil {
			if err := s.store.SetMeta(key, b); err != nil {
				s.log.Warn("cannot save request size", "err", err)
			}
		}
	}
}

// maxRequestBytes is the most JSON any request may carry.
const maxRequestBytes = 4 << 20

// cycle is the state of one Cycle or Retrieve.
type cycle struct {
	s         *Satellite
	ctx       context.Context
	res       *Result
	last      uint64 // the outbox's last seq when the cycle started: nothing later is pushed
	first     bool   // this cycle pulls an initialisation: count its pages (progress.go)
	busyWaits int    // busy answers waited out so far
}

// Cycle asks for initialisation when needed, pushes what waited when it
// started, then pulls. The result is also kept for Status.
func (s *Satellite) Cycle(ctx context.Context) Result {
	return s.run(ctx, true)
}

// Retrieve pulls without pushing: the seed's "retrieve sync records".
func (s *Satellite) Retrieve(ctx context.Context) Result {
	return s.run(ctx, false)
}

func (s *Satellite) run(ctx context.Context, push bool) Result {
	res := Result{Started: s.clock.Now()}
	c := &cycle{s: s, ctx: ctx, res: &res, last: s.store.LastSeq()}
	res.Err = c.run(push)
	if errors.Is(res.Err, ErrBusy) {
		res.Busy = true
	}
	return s.finish(res)
}

func (c *cycle) run(push bool) error {
	st, err := c.prepare()
	if err != nil {
		return err
	}
	if st.Step == stepPull {
		c.first = true
		c.s.trackFirst(st.Queue)
	}
	if push {
		if err := c.pushAll(); err != nil {
			return err
		}
	}
	if err := c.pullAll(); err != nil {
		return err
	}
	return c.complete(st)
}

func (s *Satellite) finish(res Result) Result {
	res.Finished = s.clock.Now()
	s.saveSizers()
	s.mu.Lock()
	s.last, s.sizing, s.link = res, [2]string{s.push.String(), s.pull.String()}, s.push.Estimate()
	if res.CentralReread {
		s.reread = res.Finished
	}
	if res.Rewound {
		s.rewound = res.Finished
	}
	s.mu.Unlock()
	return res
}

// note records a warning for the result and the log.
func (c *cycle) note(msg string, args ...any) {
	c.res.Notes = append(c.res.Notes, msg)
	c.s.log.Warn(msg, args...)
}

// Status is a snapshot for `syncagent status`.
type Status struct {
	Last      Result
	OutboxLen int
	AsideLen  int
	PushSizer string
	PullSizer string
	Link      adapt.Estimate
	// Initialisation is the datafile's state: "completed", "never", or the
	// step of a (re-)initialisation in progress and why it started.
	Initialisation string
	// CentralReread is when central data was last read again from cursor 0
	// because the primary's maxCursor went backwards (zero: not since start).
	CentralReread time.Time
	// Rewound is when the primary last said this site's outbox numbering
	// went backwards (zero: not since start).
	Rewound time.Time
	// FirstSync is the progress of an initialisation's pull, or nil.
	FirstSync *FirstSync
}

// Status returns the satellite's state; safe from any goroutine.
func (s *Satellite) Status() Status {
	s.mu.Lock()
	st := Status{Last: s.last, PushSizer: s.sizing[0], PullSizer: s.sizing[1], Link: s.link, CentralReread: s.reread, Rewound: s.rewound}
	if s.first != nil {
		st.FirstSync = s.first.snapshot(s.clock.Now())
	}
	s.mu.Unlock()
	aside, _ := s.store.Aside()
	st.OutboxLen, st.AsideLen = s.store.OutboxLen(), len(aside)
	if is, err := s.loadInit(); err == nil {
		st.Initialisation = is.describe()
	}
	return st
}

func (s *Satellite) stores() []string { return s.cfg.Load().Stores }

func (s *Satellite) hasStore(store string) bool { return slices.Contains(s.stores(), store) }

// Generate re-queues this site's records: the seed's "generate sync records".
// existing: store data of the active stores. new: that too, and a clean
// re-initialisation starts (the site's queue on the primary is refilled,
// central data read again from cursor 0, leftovers removed at the end).
func (s *Satellite) Generate(ctx context.Context, fresh bool) (int, error) {
	n, err := s.store.Requeue(func(r queue.Record) bool { return s.hasStore(r.StoreID()) })
	if err != nil {
		return n, fmt.Errorf("cannot re-queue records: %w", err)
	}
	if fresh {
		if _, err := s.beginInit("generate --new"); err != nil {
			return n, err
		}
	}
	return n, nil
}
