package adapt

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Defaults for the zero arguments of NewBackoff.
const (
	DefaultBackoffBase = time.Second
	DefaultBackoffMax  = 5 * time.Minute
)

// Backoff spaces out retries of a link that keeps failing: exponential with
// full jitter (each wait is uniform in [0, min(max, base·2ⁿ)] after n
// failures), driven by a TimerClock so tests need not sleep. Reset after a
// success; Wake when the link is known to be back (a success elsewhere, or
// `syncagent check`) to end a pending Wait at once. Safe for concurrent use.
type Backoff struct {
	clock     TimerClock
	base, max time.Duration
	wake      chan struct{} // holds one pending wake-up

	mu      sync.Mutex
	attempt int        // failures since the last Reset; guarded by mu
	rnd     *rand.Rand // guarded by mu
}

// NewBackoff returns a Backoff; base <= 0 means 1 s, limit <= 0 means 5 min.
func NewBackoff(clock TimerClock, base, limit time.Duration) *Backoff {
	if base <= 0 {
		base = DefaultBackoffBase
	}
	if limit <= 0 {
		limit = DefaultBackoffMax
	}
	return &Backoff{
		clock: clock, base: base, max: max(base, limit),
		wake: make(chan struct{}, 1),
		rnd:  rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
}

// Ceiling returns the upper bound of the next wait.
func (b *Backoff) Ceiling() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ceilingLocked()
}

func (b *Backoff) ceilingLocked() time.Duration {
	d := b.base
	for range b.attempt {
		if d >= b.max/2 {
			return b.max
		}
		d *= 2
	}
	return min(d, b.max)
}

// Next returns how long to wait before the next retry and counts a failure.
func (b *Backoff) Next() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.ceilingLocked()
	if c < b.max {
		b.attempt++
	}
	return time.Duration(b.rnd.Int64N(int64(c) + 1))
}

// Reset forgets the failures (call it after a success) and drops a pending
// wake-up that no wait has used.
func (b *Backoff) Reset() {
	b.mu.Lock()
	b.attempt = 0
	b.mu.Unlock()
	select {
	case <-b.wake:
	default:
	}
}

// Wake ends a pending Wait at once. If none is pending, the next Wait
// returns at once instead (a wake-up is never lost between a failure and its
// wait). It does not forget the failures: if the retry fails too, the next
// wait is as long as it would have been.
func (b *Backoff) Wake() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Wait waits Next(), or less if Wake is called. It returns ctx.Err() if ctx
// ends first, otherwise nil.
func (b *Backoff) Wait(ctx context.Context) error {
	t := b.clock.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-b.wake:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
