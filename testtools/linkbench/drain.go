package linkbench

import (
	"context"
	"sync"
	"time"
)

// Drainer runs sync cycles until nothing remains, as the daemon would: a
// cycle that fails (the satellite gives up after a few link failures in a
// row) is followed, after Pause, by another. A run whose remaining count
// has not fallen for StallAfter is stopped and reported as stalled; one
// still running after Cutoff is stopped and reported as cut.
type Drainer struct {
	// Cycle runs one sync cycle and returns its error.
	Cycle func(ctx context.Context) error
	// Remaining is what is left to drain: records in the outbox and in the
	// site's queue on the primary. It is called from another goroutine
	// while a cycle runs.
	Remaining func() int
	// Pause between a failed cycle and the next.
	Pause time.Duration
	// StallAfter: no progress for this long ends the run as stalled.
	StallAfter time.Duration
	// Cutoff, when > 0, stops a run that has taken this long: it is already
	// too slow to matter, and the benchmark need not wait for it.
	Cutoff time.Duration
	// Poll is how often Remaining is checked; 0 means 200ms.
	Poll time.Duration
	// Progress, when set, is called every ProgressEvery (and once at the
	// end) with what remains and the time so far.
	Progress      func(remaining int, elapsed time.Duration)
	ProgressEvery time.Duration
}

// Drained is how a drain went.
type Drained struct {
	Elapsed      time.Duration
	Cycles       int
	FailedCycles int
	Stalled      bool
	Cut          bool // stopped at Cutoff with records left
	Remaining    int
	LastErr      error // of the last failed cycle
}

// Run drains until Remaining is 0, the run stalls, or ctx ends.
func (d Drainer) Run(ctx context.Context) Drained {
	poll := d.Poll
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()

	var mu sync.Mutex
	stalled, cut := false, false
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		best, lastDrop, lastReport := d.Remaining(), time.Now(), time.Now()
		t := time.NewTicker(poll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				if r := d.Remaining(); r < best {
					best, lastDrop = r, now
				}
				if d.Progress != nil && d.ProgressEvery > 0 && now.Sub(lastReport) >= d.ProgressEvery {
					lastReport = now
					d.Progress(best, now.Sub(start))
				}
				overdue := d.Cutoff > 0 && now.Sub(start) >= d.Cutoff
				if overdue || now.Sub(lastDrop) >= d.StallAfter {
					mu.Lock()
					stalled, cut = !overdue, overdue
					mu.Unlock()
					cancel()
					return
				}
			}
		}
	}()

	var out Drained
	for {
		if out.Remaining = d.Remaining(); out.Remaining == 0 || ctx.Err() != nil {
			break
		}
		out.Cycles++
		if err := d.Cycle(ctx); err != nil {
			if ctx.Err() != nil {
				continue // stalled, cut or stopped: the loop ends above
			}
			out.FailedCycles++
			out.LastErr = err
			select {
			case <-ctx.Done():
			case <-time.After(d.Pause):
			}
		}
	}
	out.Elapsed = time.Since(start)
	cancel()
	<-watchDone
	mu.Lock()
	out.Stalled = stalled && out.Remaining > 0
	out.Cut = cut && out.Remaining > 0
	mu.Unlock()
	if d.Progress != nil {
		d.Progress(out.Remaining, out.Elapsed)
	}
	return out
}
