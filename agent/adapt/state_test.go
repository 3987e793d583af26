package adapt

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// learned returns a sizer that has drained a queue over the flaky link.
func learned(t *testing.T) (*Sizer, *FakeClock) {
	t.Helper()
	clock := NewFakeClock(epoch)
	s := NewSizer(simConfig(0), clock)
	drain(simProfiles[3], s, clock, 5000, 500, 1)
	return s, clock
}

// Protects persistence: a restarted sizer picks up where the last one left
// off (same limit, same link estimate).
func TestSizer_StateRoundTrip(t *testing.T) {
	s, clock := learned(t)
	data, err := s.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	r := NewSizer(simConfig(0), clock)
	if err := r.RestoreState(data); err != nil {
		t.Fatal(err)
	}
	if got, want := r.Estimate(), s.Estimate(); got != want {
		t.Errorf("restored %+v, want %+v", got, want)
	}
	if got, want := r.String(), s.String(); got != want {
		t.Errorf("restored %q, want %q", got, want)
	}
}

// Protects "a corrupt or old state is ignored safely": each is refused with
// an error and leaves the sizer as it was.
func TestSizer_RestoreRefusesBadState(t *testing.T) {
	s, _ := learned(t)
	good, _ := s.MarshalState()
	edit := func(f func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	tests := map[string]string{
		"empty":          "",
		"garbage":        "\x00\xffnot json",
		"truncated":      string(good[:len(good)/2]),
		"trailing":       string(good) + "{}",
		"old version":    edit(func(m map[string]any) { m["version"] = 0 }),
		"future version": edit(func(m map[string]any) { m["version"] = stateVersion + 1 }),
		"unknown field":  edit(func(m map[string]any) { m["records"] = 7 }),
		"negative":       edit(func(m map[string]any) { m["budget"] = -5 }),
		"no budget":      edit(func(m map[string]any) { m["budget"] = 0 }),
		"bad fit":        edit(func(m map[string]any) { m["fit"].(map[string]any)["RTT"] = -1 }),
		"wrong type":     edit(func(m map[string]any) { m["hazard"] = "high" }),
		"huge":           strings.Replace(string(good), `"budget":`, `"budget":1e999,"x":`, 1),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			fresh := NewSizer(simConfig(0), NewFakeClock(epoch))
			before := fresh.Estimate()
			if err := fresh.RestoreState([]byte(data)); err == nil {
				t.Fatal("accepted")
			}
			if got := fresh.Estimate(); got != before {
				t.Errorf("changed to %+v", got)
			}
		})
	}
}

// Protects the restored budget against a tighter Config (e.g. a lower
// MaxBytes after an upgrade): it is clamped, never trusted.
func TestSizer_RestoreClampsToConfig(t *testing.T) {
	clock := NewFakeClock(epoch)
	s := NewSizer(simConfig(0), clock)
	drain(simProfiles[0], s, clock, 20000, 500, 1)
	data, _ := s.MarshalState()
	r := NewSizer(Config{MaxRecords: 100, MaxBytes: 20_000, Deadline: simDeadline}, clock)
	if err := r.RestoreState(data); err != nil {
		t.Fatal(err)
	}
	if recs, bytes := r.Limit(); recs > 100 || bytes > 20_000 {
		t.Errorf("restored limit %d rec/%d B, over the new caps", recs, bytes)
	}
}

// Protects the fading of old evidence: a state saved two days ago counts a
// quarter; one "from the future" (clock set back) counts fully.
func TestSizer_RestoreFadesWithAge(t *testing.T) {
	s, clock := learned(t)
	data, _ := s.MarshalState()
	want := s.Estimate().FailuresPerSec
	for _, tt := range []struct {
		age    time.Duration
		weight float64
	}{{0, 1}, {2 * stateHalfLife, 0.25}, {-time.Hour, 1}} {
		c := NewFakeClock(clock.Now().Add(tt.age))
		r := NewSizer(simConfig(0), c)
		if err := r.RestoreState(data); err != nil {
			t.Fatal(err)
		}
		r.mu.Lock()
		gotF, wantF := r.hz.Resets+r.hz.Hangs, (s.hz.Resets+s.hz.Hangs)*tt.weight
		r.mu.Unlock()
		if math.Abs(gotF-wantF) > 1e-9 {
			t.Errorf("age %v: failures %v, want %v", tt.age, gotF, wantF)
		}
		if tt.weight == 1 && r.Estimate().FailuresPerSec != want {
			t.Errorf("age %v: failures/s %v, want %v", tt.age, r.Estimate().FailuresPerSec, want)
		}
	}
}
