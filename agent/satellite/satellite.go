// Package satellite is a sync satellite's cycle: push the outbox to the
// primary in batches, then pull central records (by cursor) and this site's
// queue, apply them durably and only then acknowledge them.
//
// Imported only by agent/daemon (the wiring) and tests.
package satellite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"syncagent/agent/adapt"
	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// Meta keys and cursor names kept in the datafile.
const (
	cursorCentral   = "central"
	metaPushSizer   = "sizer.push"
	metaPullSizer   = "sizer.pull"
	metaInitialised = "initialised"
)

// maxRounds bounds the requests of one phase of one cycle, so a cycle always
// ends and the watchdog sees the loop come round.
const maxRounds = 10000

// maxConsecutiveFailures of the link within one cycle ends the cycle; the
// daemon then retries with backoff.
const maxConsecutiveFailures = 4

// Config is what the satellite needs from the prefs.
type Config struct {
	Stores      []string
	RequestSize int // 0: adaptive
	// MinTimeout is the shortest deadline a request gets once the link is
	// known; 0: adapt.DefaultMinTimeout.
	MinTimeout time.Duration
}

// Satellite runs sync cycles against one primary. Cycle, Push, Pull and
// Generate must not run concurrently (the daemon's loop owns them); Status
// may be called from anywhere.
type Satellite struct {
	store  *queue.Local
	client *syncapi.Client
	log    *slog.Logger
	clock  adapt.Clock

	cfg        atomic.Pointer[Config]
	push, pull *adapt.Sizer // owned by the cycle goroutine

	lastExchange syncapi.Exchange // set by client.Observe during a call; owned by the cycle goroutine
	progress     func()           // told of every exchange; set before the first cycle
	singleFails  int              // consecutive failures of a one-record push; owned by the cycle goroutine

	mu     sync.Mutex
	last   Result         // guarded by mu
	sizing [2]string      // push, pull sizer descriptions; guarded by mu
	link   adapt.Estimate // guarded by mu
}

// Result is what one cycle did.
type Result struct {
	Started, Finished time.Time
	Pushed            int // records the primary took
	SetAside          int // records moved out of the outbox with a reason
	Pulled            int // records received
	Applied           int // records applied to the datafile
	LocalWins         int // pulled records skipped because a newer local change is waiting to be pushed
	Invalid           int // pulled records that could not be applied (logged, acknowledged)
	Err               error
}

// New returns a satellite. The client's Observe hook is taken over.
func New(store *queue.Local, client *syncapi.Client, cfg Config, log *slog.Logger, clock adapt.Clock) *Satellite {
	s := &Satellite{store: store, client: client, log: log.With("component", "satellite"), clock: clock}
	client.Observe = func(ex syncapi.Exchange) {
		s.lastExchange = ex
		if s.progress != nil {
			s.progress()
		}
	}
	s.Configure(cfg)
	return s
}

// OnProgress sets a function told of every exchange with the primary (the
// daemon's watchdog uses it as a sign of life). Call it before the first cycle.
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
	sc := adapt.Config{Fixed: cfg.RequestSize, MinRecords: 1, MaxRecords: 5000, MaxBytes: 4 << 20, Deadline: deadline, MinTimeout: cfg.MinTimeout}
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

// Cycle initialises a new site, pushes, then pulls. The result is also kept for Status.
func (s *Satellite) Cycle(ctx context.Context) Result {
	res := Result{Started: s.clock.Now()}
	// Initialise first: a fill requested after our push would echo our own
	// records back to us.
	res.Err = s.initialise(ctx)
	if res.Err == nil {
		res.Err = s.pushAll(ctx, &res)
	}
	if res.Err == nil {
		res.Err = s.pullAll(ctx, &res)
	}
	return s.finish(res)
}

// Retrieve pulls without pushing: the seed's "retrieve sync records".
func (s *Satellite) Retrieve(ctx context.Context) Result {
	res := Result{Started: s.clock.Now()}
	res.Err = s.pullAll(ctx, &res)
	return s.finish(res)
}

func (s *Satellite) finish(res Result) Result {
	res.Finished = s.clock.Now()
	s.saveSizers()
	s.mu.Lock()
	s.last, s.sizing, s.link = res, [2]string{s.push.String(), s.pull.String()}, s.push.Estimate()
	s.mu.Unlock()
	return res
}

// Status is a snapshot for `syncagent status`.
type Status struct {
	Last      Result
	OutboxLen int
	AsideLen  int
	PushSizer string
	PullSizer string
	Link      adapt.Estimate
}

// Status returns the satellite's state; safe from any goroutine.
func (s *Satellite) Status() Status {
	s.mu.Lock()
	st := Status{Last: s.last, PushSizer: s.sizing[0], PullSizer: s.sizing[1], Link: s.link}
	s.mu.Unlock()
	aside, _ := s.store.Aside()
	st.OutboxLen, st.AsideLen = s.store.OutboxLen(), len(aside)
	return st
}

// within runs call under the deadline z gives a request of about bytes:
// a request the link swallowed is given up after a few times what such a
// request takes, not the client's whole deadline.
func within[T any](ctx context.Context, z *adapt.Sizer, bytes int, call func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, z.Timeout(bytes))
	defer cancel()
	return call(ctx)
}

// observe feeds a sizer with what the last call showed about the link.
// Refusals by the primary say nothing about the link and are not fed.
func (s *Satellite) observe(z *adapt.Sizer, records int, full bool, err error) {
	ex := s.lastExchange
	// Bytes in the unit the outbox cuts batches in (JSON before gzip), so the
	// sizer's byte budget and the batches it gets agree.
	bytes := ex.Payload
	if bytes == 0 {
		bytes = ex.Sent + ex.Received
	}
	o := adapt.Observation{Records: records, Bytes: bytes, Elapsed: ex.Elapsed, Full: full}
	var opErr *net.OpError
	switch e, isAPI := syncapi.AsError(err); {
	case err == nil:
		o.Outcome = adapt.OK
	case isAPI && e.Status == 413:
		o.Outcome = adapt.TooLarge
	case isAPI && (e.Status == 408 || e.Status == 429):
		o.Outcome = adapt.Failed
	case isAPI && e.Status < 500:
		return
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return // no connection: says nothing about the size a request can have
	case errors.Is(err, context.DeadlineExceeded):
		o.Outcome = adapt.TimedOut
	default:
		o.Outcome = adapt.Failed
	}
	z.Observe(o)
}

// linkFailure reports whether err is the link's fault (worth retrying with a
// smaller batch) rather than a refusal or a stop.
func linkFailure(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	if e, ok := syncapi.AsError(err); ok {
		return e.Status >= 500 || e.Status == 413 || e.Status == 408 || e.Status == 429
	}
	return true
}

func (s *Satellite) stores() []string { return s.cfg.Load().Stores }

func (s *Satellite) hasStore(store string) bool { return slices.Contains(s.stores(), store) }

// Generate re-queues this site's records: the seed's "generate sync records".
// existing: store data of the active stores. new: that too, and the central
// cursor and this site's queue on the primary are refilled from scratch.
func (s *Satellite) Generate(ctx context.Context, fresh bool) (int, error) {
	n, err := s.store.Requeue(func(r queue.Record) bool { return s.hasStore(r.StoreID()) })
	if err != nil {
		return n, fmt.Errorf("cannot re-queue records: %w", err)
	}
	if fresh {
		if err := s.store.SetCursor(cursorCentral, 0); err != nil {
			return n, err
		}
		if err := s.store.SetMeta(metaInitialised, []byte("no")); err != nil {
			return n, err
		}
	}
	return n, nil
}
