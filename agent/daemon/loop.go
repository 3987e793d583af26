package daemon

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"syncagent/agent/adapt"
	"syncagent/agent/control"
	"syncagent/agent/satellite"
	"syncagent/agent/syncapi"
)

// loop owns the satellite's sync cycles: on the interval, on request from the
// local API, and sooner after a failure (with backoff) or when the link is
// back. Every cycle runs on this one goroutine.
type loop struct {
	a        *Agent
	requests chan cycleRequest
	wake     chan struct{} // the link is back (a check succeeded)
	replan   chan struct{} // the interval changed
	backoff  *adapt.Backoff

	beat atomic.Int64 // unix nanos of the last sign of life of the loop

	mu          sync.Mutex
	next        time.Time      // guarded by mu
	last        *control.Cycle // guarded by mu
	lastSuccess time.Time      // guarded by mu
}

type cycleRequest struct {
	retrieveOnly bool
	reply        chan control.Cycle
}

func newLoop(a *Agent) *loop {
	l := &loop{a: a, requests: make(chan cycleRequest), wake: make(chan struct{}, 1), replan: make(chan struct{}, 1),
		backoff: adapt.NewBackoff(adapt.SystemClock{}, time.Second, 5*time.Minute)}
	l.alive()
	if a.sat != nil {
		a.sat.OnProgress(l.alive)
	}
	return l
}

// alive records that the loop is making progress.
func (l *loop) alive() { l.beat.Store(time.Now().UnixNano()) }

// sinceAlive is how long the loop has shown no sign of life.
func (l *loop) sinceAlive() time.Duration { return time.Since(time.Unix(0, l.beat.Load())) }

// heartbeat is how often an idle loop wakes to show it is alive.
const heartbeat = 10 * time.Second

func (l *loop) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	plan := func(d time.Duration) {
		timer.Stop()
		l.mu.Lock()
		defer l.mu.Unlock()
		if d < 0 {
			l.next = time.Time{}
			return
		}
		l.next = time.Now().Add(d)
		timer.Reset(d)
	}
	plan(l.firstDelay())
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		l.alive()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-l.replan:
			plan(l.interval())
		case <-l.wake:
			l.backoff.Reset()
			l.mu.Lock()
			failing := l.last != nil && l.last.Error != ""
			l.mu.Unlock()
			if failing {
				plan(0)
			}
		case req := <-l.requests:
			c := l.cycle(ctx, req.retrieveOnly)
			req.reply <- c
			plan(l.after(c))
		case <-timer.C:
			plan(l.after(l.cycle(ctx, false)))
		}
	}
}

// firstDelay starts the first cycle soon after start, so a box that was off
// catches up without waiting a whole interval.
func (l *loop) firstDelay() time.Duration {
	if l.interval() < 0 {
		return -1
	}
	return 2 * time.Second
}

// interval is the time between cycles; negative when sync is off.
func (l *loop) interval() time.Duration {
	p := l.a.prefs.Load()
	if l.a.sat == nil || p.SyncDisabledReason() != "" {
		return -1
	}
	return p.Interval()
}

// after plans the next cycle: the interval after a success, a jittered
// backoff (never longer than the interval) after a failure.
func (l *loop) after(c control.Cycle) time.Duration {
	iv := l.interval()
	if c.Error == "" || iv < 0 {
		l.backoff.Reset()
		return iv
	}
	return min(l.backoff.Next(), iv)
}

func (l *loop) cycle(ctx context.Context, retrieveOnly bool) control.Cycle {
	if l.a.sat == nil {
		return control.Cycle{Kind: kindOf(retrieveOnly), Error: l.a.notSyncingReason()}
	}
	faultPoint("cycle")
	var res satellite.Result
	if retrieveOnly {
		res = l.a.sat.Retrieve(ctx)
	} else {
		res = l.a.sat.Cycle(ctx)
	}
	c := cycleReport(kindOf(retrieveOnly), res)
	l.mu.Lock()
	l.last = &c
	if c.Error == "" {
		l.lastSuccess = c.Finished
	}
	l.mu.Unlock()
	if c.Error != "" {
		l.a.log.Warn("sync cycle failed", "kind", c.Kind, "err", c.Error, "advice", c.Advice)
	} else {
		l.a.log.Info("sync cycle done", "kind", c.Kind, "pushed", c.Pushed, "pulled", c.Pulled, "applied", c.Applied, "set_aside", c.SetAside, "took", c.Finished.Sub(c.Started).Round(time.Millisecond))
	}
	l.a.updateStatus()
	return c
}

// request runs a cycle on the loop now and waits for its result.
func (l *loop) request(ctx context.Context, retrieveOnly bool) (control.Cycle, error) {
	req := cycleRequest{retrieveOnly: retrieveOnly, reply: make(chan control.Cycle, 1)}
	select {
	case l.requests <- req:
	case <-ctx.Done():
		return control.Cycle{}, ctx.Err()
	}
	select {
	case c := <-req.reply:
		return c, nil
	case <-ctx.Done():
		return control.Cycle{}, ctx.Err()
	}
}

func (l *loop) poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (l *loop) snapshot() (next time.Time, last *control.Cycle, lastSuccess time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next, l.last, l.lastSuccess
}

func kindOf(retrieveOnly bool) string {
	if retrieveOnly {
		return "retrieve"
	}
	return "sync"
}

func cycleReport(kind string, r satellite.Result) control.Cycle {
	c := control.Cycle{Kind: kind, Started: r.Started, Finished: r.Finished, Pushed: r.Pushed, SetAside: r.SetAside,
		Pulled: r.Pulled, Applied: r.Applied, LocalWins: r.LocalWins, Invalid: r.Invalid}
	if r.Err != nil {
		c.Error, c.Advice = r.Err.Error(), syncapi.Advice(r.Err)
	}
	return c
}

// watchdog pings systemd while the loop shows signs of life. A link that is
// down is not unhealthy (every call has a deadline, so the loop comes round);
// a loop that is stuck stops the pings and systemd restarts the agent.
func (a *Agent) watchdog(ctx context.Context) {
	every, ok := a.notify.WatchdogInterval()
	if !ok {
		return
	}
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if stuck := a.loop.sinceAlive(); stuck < every-every/4 {
				a.notify.Watchdog()
			} else {
				a.log.Error("sync loop shows no progress; withholding the watchdog ping", "since", stuck.Round(time.Second))
			}
		}
	}
}
