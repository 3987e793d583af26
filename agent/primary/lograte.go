package primary

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// logEvery is how often one kind of repeated message is logged per key.
const logEvery = time.Minute

// rateLog logs a message at most once per logEvery for each key (a site and
// a kind of event), adding how many were suppressed since: a misbehaving
// site cannot fill a clinic-sized disk with the primary's journal.
type rateLog struct {
	log *slog.Logger
	now func() time.Time

	mu   sync.Mutex
	seen map[string]*rateEntry // guarded by mu
}

type rateEntry struct {
	last       time.Time
	suppressed int
}

func newRateLog(log *slog.Logger, now func() time.Time) *rateLog {
	return &rateLog{log: log, now: now, seen: map[string]*rateEntry{}}
}

// maxRateKeys bounds the limiter's memory; past it, old keys are forgotten.
const maxRateKeys = 10000

func (r *rateLog) logf(level slog.Level, key, msg string, args ...any) {
	now := r.now()
	r.mu.Lock()
	e := r.seen[key]
	if e != nil && now.Sub(e.last) < logEvery {
		e.suppressed++
		r.mu.Unlock()
		return
	}
	suppressed := 0
	if e == nil {
		if len(r.seen) >= maxRateKeys {
			clear(r.seen)
		}
		e = &rateEntry{}
		r.seen[key] = e
	} else {
		suppressed = e.suppressed
	}
	e.last, e.suppressed = now, 0
	r.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	r.log.Log(context.Background(), level, msg, args...)
}
