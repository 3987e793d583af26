package adapt

import (
	"slices"
	"sync"
	"time"
)

// Clock tells the time. The Sizer needs only this; tests pass a FakeClock.
type Clock interface {
	Now() time.Time
}

// Timer is the part of *time.Timer a Backoff needs.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// TimerClock is a Clock that can also start timers (for Backoff.Wait).
type TimerClock interface {
	Clock
	NewTimer(d time.Duration) Timer
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// NewTimer returns a real timer.
func (SystemClock) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time { return t.t.C }
func (t systemTimer) Stop() bool          { return t.t.Stop() }

var (
	_ TimerClock = SystemClock{}
	_ TimerClock = (*FakeClock)(nil)
)

// FakeClock is a manual clock for tests: time moves only when Advance is
// called, and Advance fires the timers that fall due, in order. It is safe
// for concurrent use.
type FakeClock struct {
	mu     sync.Mutex
	cond   *sync.Cond // signalled when the set of pending timers changes
	now    time.Time
	timers []*fakeTimer // pending, unordered; guarded by mu
}

// NewFakeClock returns a fake clock reading start.
func NewFakeClock(start time.Time) *FakeClock {
	c := &FakeClock{now: start}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer that fires when Advance moves the clock to or past
// now+d. A timer of d <= 0 fires at once.
func (c *FakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clock: c, when: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	c.cond.Broadcast()
	return t
}

// Advance moves the clock forward by d and fires every timer that falls due.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	due := slices.DeleteFunc(slices.Clone(c.timers), func(t *fakeTimer) bool { return t.when.After(c.now) })
	slices.SortFunc(due, func(a, b *fakeTimer) int { return a.when.Compare(b.when) })
	c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool { return !t.when.After(c.now) })
	for _, t := range due {
		t.ch <- t.when
	}
	if len(due) > 0 {
		c.cond.Broadcast()
	}
}

// Timers returns how many timers are pending.
func (c *FakeClock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// BlockUntilTimers waits until at least n timers are pending, so a test can
// Advance only after the goroutine under test has started its wait.
func (c *FakeClock) BlockUntilTimers(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.timers) < n {
		c.cond.Wait()
	}
}

type fakeTimer struct {
	clock *FakeClock
	when  time.Time
	ch    chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

// Stop removes a pending timer; it reports whether the timer was pending.
func (t *fakeTimer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.timers, t)
	if i < 0 {
		return false
	}
	c.timers = slices.Delete(c.timers, i, i+1)
	c.cond.Broadcast()
	return true
}
