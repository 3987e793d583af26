package adapt

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

func newTestBackoff() (*Backoff, *FakeClock) {
	clock := NewFakeClock(epoch)
	b := NewBackoff(clock, time.Second, 5*time.Minute)
	b.rnd = rand.New(rand.NewPCG(1, 2))
	return b, clock
}

// Protects the exponential growth and its cap: the ceiling doubles from the
// base after each failure and stops at the cap; Reset goes back to the base.
func TestBackoff_GrowsAndResets(t *testing.T) {
	b, _ := newTestBackoff()
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300}
	for i, w := range want {
		if got := b.Ceiling(); got != w*time.Second {
			t.Fatalf("after %d failures: ceiling %v, want %v", i, got, w*time.Second)
		}
		b.Next()
	}
	for range 100 { // no overflow however long the outage
		b.Next()
	}
	if got := b.Ceiling(); got != 5*time.Minute {
		t.Fatalf("after a long outage: ceiling %v", got)
	}
	b.Reset()
	if got := b.Ceiling(); got != time.Second {
		t.Errorf("after Reset: ceiling %v, want 1s", got)
	}
}

// Protects full jitter: every wait lies in [0, ceiling] and the waits spread
// over that range rather than bunching at the top.
func TestBackoff_FullJitter(t *testing.T) {
	b, _ := newTestBackoff()
	for range 10 {
		b.Next()
	}
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for range 1000 {
		c := b.Ceiling()
		d := b.Next()
		if d < 0 || d > c {
			t.Fatalf("wait %v outside [0, %v]", d, c)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo > 30*time.Second || hi < 270*time.Second {
		t.Errorf("waits span only %v..%v of 0..5m", lo, hi)
	}
}

// Protects zero arguments: they take the documented defaults.
func TestBackoff_Defaults(t *testing.T) {
	b := NewBackoff(NewFakeClock(epoch), 0, 0)
	if b.base != DefaultBackoffBase || b.max != DefaultBackoffMax {
		t.Errorf("base %v max %v", b.base, b.max)
	}
}

// Protects Wait on the clock: it returns when the fake clock passes the
// drawn wait, without real sleeping.
func TestBackoff_WaitUsesClock(t *testing.T) {
	b, clock := newTestBackoff()
	done := make(chan error)
	go func() { done <- b.Wait(context.Background()) }()
	clock.BlockUntilTimers(1)
	clock.Advance(time.Second) // the first ceiling
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Protects the wake-up: Wake ends a pending long wait at once, with the
// clock standing still.
func TestBackoff_WakeCutsWaitShort(t *testing.T) {
	b, clock := newTestBackoff()
	for range 20 {
		b.Next()
	}
	done := make(chan error)
	go func() { done <- b.Wait(context.Background()) }()
	clock.BlockUntilTimers(1)
	b.Wake()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if clock.Now() != epoch {
		t.Error("the clock moved")
	}
	if n := clock.Timers(); n != 0 {
		t.Errorf("%d timers left behind", n)
	}
}

// Protects against a lost wake-up: a Wake between a failure and its Wait
// makes that Wait return at once; a Reset (a success) drops it.
func TestBackoff_WakeBeforeWait(t *testing.T) {
	b, _ := newTestBackoff()
	for range 20 {
		b.Next()
	}
	b.Wake()
	if err := b.Wait(context.Background()); err != nil { // would block without the wake
		t.Fatal(err)
	}
	b.Wake()
	b.Reset()
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- b.Wait(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v: the wake-up survived Reset", err)
	default:
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// Protects cancellation: Wait returns the context's error when it ends.
func TestBackoff_WaitCancelled(t *testing.T) {
	b, clock := newTestBackoff()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Wait(ctx) }()
	clock.BlockUntilTimers(1)
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}
