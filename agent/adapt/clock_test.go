package adapt

import (
	"testing"
	"time"
)

// Protects the fake clock the other tests rely on: Advance fires due timers
// in order and only those; Stop removes a timer; d <= 0 fires at once.
func TestFakeClock_Timers(t *testing.T) {
	c := NewFakeClock(epoch)
	t1, t2, t3 := c.NewTimer(2*time.Second), c.NewTimer(time.Second), c.NewTimer(time.Hour)
	if now := c.NewTimer(0); len(now.C()) != 1 {
		t.Error("a zero timer did not fire at once")
	}
	c.Advance(1500 * time.Millisecond)
	if got := <-t2.C(); got != epoch.Add(time.Second) {
		t.Errorf("fired at %v", got)
	}
	if len(t1.C()) != 0 {
		t.Error("a timer fired early")
	}
	if !t3.Stop() || t3.Stop() {
		t.Error("Stop of a pending timer, then of a stopped one")
	}
	c.Advance(time.Hour)
	if got := <-t1.C(); got != epoch.Add(2*time.Second) {
		t.Errorf("fired at %v", got)
	}
	if len(t3.C()) != 0 || c.Timers() != 0 {
		t.Error("a stopped timer fired or lingers")
	}
	if got := c.Now(); got != epoch.Add(time.Hour+1500*time.Millisecond) {
		t.Errorf("now %v", got)
	}
}

// Protects the real clock's timer wiring (no sleeping: a zero timer).
func TestSystemClock(t *testing.T) {
	var c SystemClock
	if c.Now().IsZero() {
		t.Fatal("zero time")
	}
	<-c.NewTimer(0).C()
}
