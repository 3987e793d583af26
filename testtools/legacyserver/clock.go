package legacyserver

import (
	"sync"
	"time"

	"syncagent/agent/adapt"
)

// Clock is a fake clock for a satellite and this server together: a wait
// on it (NewTimer) moves it forward at once, so the satellite's polls of
// site_status every 15 s for up to 30 min run in milliseconds, and the
// server sees that much time pass. It is an adapt.TimerClock.
type Clock struct {
	mu    sync.Mutex
	now   time.Time
	slept time.Duration
}

var _ adapt.TimerClock = (*Clock)(nil)

// NewClock returns a clock reading start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer moves the clock forward by d and returns a timer that has fired.
func (c *Clock) NewTimer(d time.Duration) adapt.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(max(d, 0))
	c.slept += max(d, 0)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return firedTimer(ch)
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Slept is the total time timers have waited.
func (c *Clock) Slept() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slept
}

type firedTimer chan time.Time

func (t firedTimer) C() <-chan time.Time { return t }
func (t firedTimer) Stop() bool          { return false }
