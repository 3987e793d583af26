package linkbench

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestDrainer_retriesFailedCycles protects the daemon-like loop: failed
// cycles are counted and followed by another after the pause, until
// nothing remains.
func TestDrainer_retriesFailedCycles(t *testing.T) {
	var left atomic.Int64
	left.Store(3)
	calls := 0
	var lastEnd time.Time
	var gaps []time.Duration
	d := Drainer{
		Cycle: func(context.Context) error {
			if !lastEnd.IsZero() {
				gaps = append(gaps, time.Since(lastEnd))
			}
			defer func() { lastEnd = time.Now() }()
			calls++
			if calls%2 == 1 { // every other cycle fails after draining one
				left.Add(-1)
				return errors.New("push: link reset")
			}
			return nil
		},
		Remaining:  func() int { return int(left.Load()) },
		Pause:      20 * time.Millisecond,
		StallAfter: 5 * time.Second,
		Poll:       time.Millisecond,
	}
	got := d.Run(context.Background())
	if got.Cycles != 5 || got.FailedCycles != 3 || got.Stalled || got.Remaining != 0 {
		t.Errorf("got %+v, want 5 cycles, 3 failed, drained", got)
	}
	if got.LastErr == nil || got.LastErr.Error() != "push: link reset" {
		t.Errorf("last error %v", got.LastErr)
	}
	for i, g := range gaps {
		if failedBefore := i%2 == 0; failedBefore && g < d.Pause {
			t.Errorf("gap %d after a failed cycle was %v, want ≥ %v", i, g, d.Pause)
		}
	}
}

// TestDrainer_stalls protects the bound: a run that makes no progress is
// stopped (its cycle's context is cancelled) and reported as stalled
// instead of hanging the benchmark.
func TestDrainer_stalls(t *testing.T) {
	var reported atomic.Int64
	d := Drainer{
		Cycle: func(ctx context.Context) error {
			<-ctx.Done() // a cycle that would hang forever
			return ctx.Err()
		},
		Remaining:     func() int { return 7 },
		Pause:         time.Millisecond,
		StallAfter:    50 * time.Millisecond,
		Poll:          5 * time.Millisecond,
		Progress:      func(int, time.Duration) { reported.Add(1) },
		ProgressEvery: 10 * time.Millisecond,
	}
	start := time.Now()
	got := d.Run(context.Background())
	if !got.Stalled || got.Remaining != 7 || got.Cycles != 1 || got.FailedCycles != 0 {
		t.Errorf("got %+v, want stalled with 7 left after 1 cycle, not counted as failed", got)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v to notice a stall of 50ms", took)
	}
	if reported.Load() < 2 {
		t.Errorf("progress reported %d times, want periodic reports and a final one", reported.Load())
	}
}

// TestDrainer_progressResetsTheStallClock: a slow run that keeps draining is
// not a stall.
func TestDrainer_progressResetsTheStallClock(t *testing.T) {
	var left atomic.Int64
	left.Store(6)
	d := Drainer{
		Cycle: func(context.Context) error {
			time.Sleep(100 * time.Millisecond) // the whole run is longer than StallAfter, each step well within it
			left.Add(-1)
			return nil
		},
		Remaining:  func() int { return int(left.Load()) },
		StallAfter: 400 * time.Millisecond,
		Poll:       5 * time.Millisecond,
	}
	if got := d.Run(context.Background()); got.Stalled || got.Remaining != 0 || got.Cycles != 6 {
		t.Errorf("got %+v, want 6 cycles, drained, not stalled", got)
	}
}

func TestDrainer_nothingToDo(t *testing.T) {
	d := Drainer{
		Cycle:      func(context.Context) error { t.Error("cycle ran with nothing to drain"); return nil },
		Remaining:  func() int { return 0 },
		StallAfter: time.Second,
	}
	if got := d.Run(context.Background()); got.Cycles != 0 || got.Stalled {
		t.Errorf("got %+v", got)
	}
}
