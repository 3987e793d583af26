package linkbench

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Targets of issues 4 and 13.
const (
	// TargetAutoRatio: auto's time to drain is within this factor of the
	// best fixed size's, on every profile (1.15 in issue 4, 1.10 since 13).
	TargetAutoRatio = 1.10
	// TargetFloorRatio: a first sync (an Initial profile) takes at most
	// this many times the link floor (Profile.Floor).
	TargetFloorRatio = 1.3
	// TargetETAError: after its first tenth, the time left a first sync
	// shows is within this fraction of the time it really takes.
	TargetETAError = 0.2
	// TargetFlakySpeedup: on flaky, auto drains at least this many times
	// faster than a fixed FlakyBaseline.
	TargetFlakySpeedup = 2.0
	FlakyBaseline      = 1000
	FlakyProfile       = "flaky"
)

// Run is what one drain of one profile at one request size measured.
type Run struct {
	Profile        string
	Size           int  // Auto or records per request
	Warm           bool // auto's second round in the same state: its sizers already taught
	Elapsed        time.Duration
	Requests       int   // HTTP requests the satellite made
	WireBytes      int64 // bytes delivered by the link, both directions, headers included
	FailedRequests int   // requests that failed on the link (reset, hung, 5xx)
	Hung           int   // of which ran out the deadline
	FailedCycles   int   // cycles that gave up and were retried after a pause
	SetAside       int   // records the satellite set aside instead of pushing
	Stalled        bool
	Cut            bool // stopped at the cutoff: slower than CutoffFactor × the fastest run before it
	Remaining      int  // records left when a stalled or cut run was stopped
	// Floor and GzBytes, on an Initial profile: the link floor of the
	// records pulled, and their bytes gzipped as the primary sends them.
	Floor   time.Duration
	GzBytes int64
	// ETAWorst: the largest error of the first sync's time left, read
	// twice a second after its first tenth, against the time it really
	// took (NaN: no reading); ETAReadings how many there were.
	ETAWorst    float64
	ETAReadings int
}

// CutoffFactor: a run still draining after this many times the fastest
// finished run of its profile so far is stopped. It cannot be the best
// size, and waiting for size 10 on a slow link would make the benchmark
// take an hour. Larger than TargetFlakySpeedup, so the flaky baseline is
// measured in full whenever the target is met.
const CutoffFactor = 3

// Median returns the run with the median time of runs of the same size
// (a run that did not finish counts as slower than any that did); the
// upper median of an even count.
func Median(runs []Run) Run {
	sorted := slices.Clone(runs)
	slices.SortStableFunc(sorted, func(a, b Run) int {
		if a.Finished() != b.Finished() {
			if a.Finished() {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Elapsed, b.Elapsed)
	})
	return sorted[len(sorted)/2]
}

// Finished reports whether the run drained everything.
func (r Run) Finished() bool { return !r.Stalled && !r.Cut && r.Remaining == 0 }

// ProfileSummary compares auto with the fixed sizes of one profile.
type ProfileSummary struct {
	Profile string
	Auto    *Run // nil: auto did not run
	Warm    *Run // auto's second round, for information; nil: none
	Best    *Run // the fastest fixed size that finished; nil: none did
	// Ratio is auto's time over Best's: +Inf when auto did not finish, NaN
	// when there is nothing to compare.
	Ratio float64
	// Baseline is fixed FlakyBaseline, when it ran; Speedup is its time over
	// auto's (+Inf when the baseline did not finish, NaN when either is
	// missing or auto did not finish).
	Baseline *Run
	Speedup  float64
	// WarmRatio is Warm's time over Best's (NaN when either is missing).
	WarmRatio float64
}

// Summarise groups runs by profile, in the order profiles first appear.
func Summarise(runs []Run) []ProfileSummary {
	var out []ProfileSummary
	index := map[string]int{}
	for i := range runs {
		r := &runs[i]
		k, ok := index[r.Profile]
		if !ok {
			k = len(out)
			index[r.Profile] = k
			out = append(out, ProfileSummary{Profile: r.Profile})
		}
		s := &out[k]
		switch {
		case r.Warm:
			s.Warm = r
		case r.Size == Auto:
			s.Auto = r
		case r.Finished() && (s.Best == nil || r.Elapsed < s.Best.Elapsed):
			s.Best = r
		}
		if r.Size == FlakyBaseline && !r.Warm {
			s.Baseline = r
		}
	}
	for i := range out {
		s := &out[i]
		s.Ratio, s.Speedup, s.WarmRatio = math.NaN(), math.NaN(), math.NaN()
		if s.Warm != nil && s.Best != nil {
			s.WarmRatio = math.Inf(1)
			if !s.Warm.Stalled {
				s.WarmRatio = ratio(s.Warm.Elapsed, s.Best.Elapsed)
			}
		}
		// A cut run's time is a lower bound, and so are the ratios made
		// from it.
		switch {
		case s.Auto != nil && s.Auto.Stalled:
			s.Ratio = math.Inf(1)
		case s.Auto != nil && s.Best != nil:
			s.Ratio = ratio(s.Auto.Elapsed, s.Best.Elapsed)
		}
		if s.Auto != nil && s.Auto.Finished() && s.Baseline != nil {
			if s.Baseline.Stalled {
				s.Speedup = math.Inf(1)
			} else {
				s.Speedup = ratio(s.Baseline.Elapsed, s.Auto.Elapsed)
			}
		}
	}
	return out
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return math.Inf(1)
	}
	return float64(a) / float64(b)
}

// Worst is the largest auto/best ratio over the profiles (NaN ones
// skipped); NaN when no profile has one.
func Worst(sums []ProfileSummary) float64 {
	worst := math.NaN()
	for _, s := range sums {
		if !math.IsNaN(s.Ratio) && (math.IsNaN(worst) || s.Ratio > worst) {
			worst = s.Ratio
		}
	}
	return worst
}

// Misses lists, one line each, the targets the summaries miss: auto slower
// than TargetAutoRatio × the best fixed size, auto not TargetFlakySpeedup ×
// faster than fixed FlakyBaseline on flaky, and any stalled run.
func Misses(sums []ProfileSummary, runs []Run) []string {
	var out []string
	for _, s := range sums {
		if s.Ratio > TargetAutoRatio {
			out = append(out, fmt.Sprintf("%s: auto/best = %s > %.2f", s.Profile, FormatRatio(s.Ratio), TargetAutoRatio))
		}
		if s.Profile == FlakyProfile && !math.IsNaN(s.Speedup) && s.Speedup < TargetFlakySpeedup {
			out = append(out, fmt.Sprintf("%s: auto is %s× as fast as fixed %d, want ≥ %.1f×", s.Profile, FormatRatio(s.Speedup), FlakyBaseline, TargetFlakySpeedup))
		}
	}
	for _, r := range runs {
		if r.Stalled {
			out = append(out, fmt.Sprintf("%s size %s stalled with %d records left", r.Profile, SizeName(r.Size), r.Remaining))
		}
	}
	return out
}

// FormatRatio prints a ratio with two decimals; "inf" when a run did not
// finish, "n/a" when there was nothing to compare.
func FormatRatio(x float64) string {
	switch {
	case math.IsNaN(x):
		return "n/a"
	case math.IsInf(x, 1):
		return "inf"
	}
	return fmt.Sprintf("%.2f", x)
}

// WriteReport prints the table, one summary line per profile, the targets
// and, last, "auto/best = X.XX" (the worst ratio over the profiles).
func WriteReport(w io.Writer, profiles []Profile, runs []Run) {
	sums := Summarise(runs)
	best := map[string]time.Duration{}
	for _, s := range sums {
		if s.Best != nil {
			best[s.Profile] = s.Best.Elapsed
		}
	}
	for _, p := range profiles {
		fmt.Fprintf(w, "# %s\n", p.Describe())
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "profile\tsize\ttime\trequests\twire kB\tfailed req\thung\tfailed cycles\t×best\t")
	for _, r := range runs {
		x := math.NaN()
		if b, ok := best[r.Profile]; ok && !r.Stalled {
			x = ratio(r.Elapsed, b)
		}
		elapsed, ratioText := formatSeconds(r.Elapsed), FormatRatio(x)
		var note []string
		if r.Stalled {
			note = append(note, fmt.Sprintf("STALLED, %d left", r.Remaining))
		}
		if r.Cut {
			elapsed, ratioText = ">"+elapsed, ">"+ratioText
			note = append(note, fmt.Sprintf("cut at %d× the fastest, %d left", CutoffFactor, r.Remaining))
		}
		if r.SetAside > 0 {
			note = append(note, fmt.Sprintf("%d set aside", r.SetAside))
		}
		size := SizeName(r.Size)
		if r.Warm {
			size += " (warm)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.0f\t%d\t%d\t%d\t%s\t  %s\n", r.Profile, size, elapsed,
			r.Requests, float64(r.WireBytes)/1000, r.FailedRequests, r.Hung, r.FailedCycles, ratioText, strings.Join(note, "; "))
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, s := range sums {
		line := s.Profile + ": "
		switch {
		case s.Auto == nil:
			line += "auto not run"
		case s.Best == nil:
			line += "no fixed size finished"
		default:
			autoTime := formatSeconds(s.Auto.Elapsed)
			if s.Auto.Cut {
				autoTime = ">" + autoTime
			}
			line += fmt.Sprintf("auto %s, best fixed %s %s, auto/best %s", autoTime, SizeName(s.Best.Size), formatSeconds(s.Best.Elapsed), FormatRatio(s.Ratio))
		}
		if !math.IsNaN(s.WarmRatio) {
			line += fmt.Sprintf("; auto (warm)/best %s", FormatRatio(s.WarmRatio))
		}
		if !math.IsNaN(s.Speedup) {
			atLeast := ""
			if s.Baseline.Cut {
				atLeast = "≥ "
			}
			line += fmt.Sprintf("; fixed %d/auto %s%s", FlakyBaseline, atLeast, FormatRatio(s.Speedup))
		}
		fmt.Fprintln(w, line)
	}
	for _, p := range profiles {
		if !p.Initial {
			continue
		}
		for _, r := range runs {
			if r.Profile != p.Name || r.Warm || r.Floor <= 0 {
				continue
			}
			x := ratio(r.Elapsed, r.Floor)
			verdict := "ok"
			if !r.Finished() || x > TargetFloorRatio {
				verdict = "MISSED"
			}
			fmt.Fprintf(w, "%s size %s: %s = %s × the link floor %s (%.1f MB gzipped at %d kB/s + %d round trips of %s); target ≤ %.1f×: %s\n",
				p.Name, SizeName(r.Size), formatSeconds(r.Elapsed), FormatRatio(x), formatSeconds(r.Floor), float64(r.GzBytes)/1e6, p.KBps,
				InitialRoundTrips(p.Records), p.Latency, TargetFloorRatio, verdict)
			if r.ETAReadings > 0 && !math.IsNaN(r.ETAWorst) {
				verdict = "ok"
				if r.ETAWorst > TargetETAError {
					verdict = "MISSED"
				}
				fmt.Fprintf(w, "%s size %s: time left shown, worst error %.0f%% over %d readings after the first 10%%; target ≤ %.0f%%: %s\n",
					p.Name, SizeName(r.Size), 100*r.ETAWorst, r.ETAReadings, 100*TargetETAError, verdict)
			}
		}
	}
	if m := Misses(sums, runs); len(m) > 0 {
		fmt.Fprintf(w, "targets missed (auto ≤ %.2f× best; flaky: auto ≥ %.0f× faster than fixed %d; nothing stalls):\n", TargetAutoRatio, TargetFlakySpeedup, FlakyBaseline)
		for _, line := range m {
			fmt.Fprintln(w, "  "+line)
		}
	} else {
		fmt.Fprintf(w, "targets met (auto ≤ %.2f× best; flaky: auto ≥ %.0f× faster than fixed %d; nothing stalls)\n", TargetAutoRatio, TargetFlakySpeedup, FlakyBaseline)
	}
	fmt.Fprintf(w, "auto/best = %s\n", FormatRatio(Worst(sums)))
}

func formatSeconds(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}
