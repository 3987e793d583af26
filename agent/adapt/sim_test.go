package adapt

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	simRecords     = 20000
	simRecordBytes = 500
	simDeadline    = 25 * time.Second
)

func simConfig(fixed int) Config {
	return Config{Fixed: fixed, MinRecords: 1, MaxRecords: 5000, MaxBytes: 4 << 20, Deadline: simDeadline}
}

// simDrain drains the standard queue over link with a fresh sizer.
func simDrain(link simLink, fixed int, seed uint64) (drainResult, *Sizer) {
	clock := NewFakeClock(epoch)
	s := NewSizer(simConfig(fixed), clock)
	return drain(link, s, clock, simRecords, simRecordBytes, seed), s
}

// Protects the target: on every simulated profile, auto drains within
// 1.15× of the best fixed size, and on the flaky link at least 2× faster than
// a fixed 1000 (which must still finish).
func TestSizer_AutoVersusFixed(t *testing.T) {
	sizes := []int{10, 50, 200, 1000, 5000}
	var table strings.Builder
	fmt.Fprintf(&table, "%-6s %9s", "link", "auto")
	for _, n := range sizes {
		fmt.Fprintf(&table, " %9s", fmt.Sprintf("fixed %d", n))
	}
	fmt.Fprintf(&table, " %9s\n", "auto/best")
	for _, link := range simProfiles {
		t.Run(link.name, func(t *testing.T) {
			const seeds = 3
			mean := func(fixed int) time.Duration {
				var sum time.Duration
				for seed := range uint64(seeds) {
					r, _ := simDrain(link, fixed, seed+1)
					if r.took == time.Duration(1<<63-1) {
						return r.took
					}
					sum += r.took
				}
				return sum / seeds
			}
			auto := mean(0)
			best := time.Duration(1<<63 - 1)
			fixed := map[int]time.Duration{}
			fmt.Fprintf(&table, "%-6s %9s", link.name, short(auto))
			for _, n := range sizes {
				fixed[n] = mean(n)
				best = min(best, fixed[n])
				fmt.Fprintf(&table, " %9s", short(fixed[n]))
			}
			ratio := float64(auto) / float64(best)
			fmt.Fprintf(&table, " %9.2f\n", ratio)
			if ratio > 1.15 {
				t.Errorf("auto took %v, best fixed %v: ratio %.2f, want <= 1.15", auto, best, ratio)
			}
			if strings.HasPrefix(link.name, "flaky") {
				if fixed[1000] == time.Duration(1<<63-1) {
					t.Errorf("fixed 1000 stalled on the flaky link")
				}
				if float64(fixed[1000]) < 2*float64(auto) {
					t.Errorf("flaky: auto %v, fixed 1000 %v: want auto at least 2x faster", auto, fixed[1000])
				}
			}
		})
	}
	t.Logf("simulated drain of %d records of %d B (mean of 3 seeds):\n%s", simRecords, simRecordBytes, table.String())
}

func short(d time.Duration) string {
	if d == time.Duration(1<<63-1) {
		return "stalled"
	}
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}
