package linkbench

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func sec(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func TestSummarise_ratioToBestFinishedFixed(t *testing.T) {
	runs := []Run{
		{Profile: "3g", Size: Auto, Elapsed: sec(11)},
		{Profile: "3g", Size: Auto, Warm: true, Elapsed: sec(9)},
		{Profile: "3g", Size: 10, Elapsed: sec(50)},
		{Profile: "3g", Size: 200, Elapsed: sec(10)},
		{Profile: "3g", Size: 1000, Elapsed: sec(2), Stalled: true, Remaining: 5}, // fast but unfinished: not the best
		{Profile: "2g", Size: Auto, Elapsed: sec(30)},
		{Profile: "2g", Size: 50, Elapsed: sec(20)},
	}
	sums := Summarise(runs)
	if len(sums) != 2 || sums[0].Profile != "3g" || sums[1].Profile != "2g" {
		t.Fatalf("profiles %+v", sums)
	}
	if got := sums[0].Best.Size; got != 200 {
		t.Errorf("3g best = %d, want 200 (1000 stalled)", got)
	}
	if got := sums[0].Ratio; math.Abs(got-1.1) > 1e-9 {
		t.Errorf("3g ratio = %v, want 1.1", got)
	}
	if got := sums[0].WarmRatio; math.Abs(got-0.9) > 1e-9 {
		t.Errorf("3g warm ratio = %v, want 0.9", got)
	}
	if got := sums[0].Speedup; !math.IsInf(got, 1) {
		t.Errorf("3g speedup over a stalled fixed 1000 = %v, want +Inf", got)
	}
	if got := Worst(sums); math.Abs(got-1.5) > 1e-9 {
		t.Errorf("worst = %v, want 1.5 (2g)", got)
	}
}

// TestSummarise_autoStalled: auto that did not finish is infinitely worse,
// and that is the worst ratio.
func TestSummarise_autoStalled(t *testing.T) {
	sums := Summarise([]Run{
		{Profile: "flaky", Size: Auto, Elapsed: sec(60), Stalled: true, Remaining: 3},
		{Profile: "flaky", Size: 50, Elapsed: sec(40)},
		{Profile: "flaky", Size: 1000, Elapsed: sec(90)},
	})
	if !math.IsInf(sums[0].Ratio, 1) || !math.IsNaN(sums[0].Speedup) {
		t.Errorf("ratio %v speedup %v, want +Inf and NaN", sums[0].Ratio, sums[0].Speedup)
	}
	if got := FormatRatio(Worst(sums)); got != "inf" {
		t.Errorf("worst = %s, want inf", got)
	}
}

func TestSummarise_nothingToCompare(t *testing.T) {
	sums := Summarise([]Run{{Profile: "lan", Size: Auto, Elapsed: sec(1)}})
	if !math.IsNaN(sums[0].Ratio) || FormatRatio(Worst(sums)) != "n/a" {
		t.Errorf("ratio %v worst %v, want NaN and n/a", sums[0].Ratio, Worst(sums))
	}
}

func TestMisses(t *testing.T) {
	runs := []Run{
		{Profile: "3g", Size: Auto, Elapsed: sec(12)},
		{Profile: "3g", Size: 200, Elapsed: sec(10)},
		{Profile: "flaky", Size: Auto, Elapsed: sec(30)},
		{Profile: "flaky", Size: 200, Elapsed: sec(29)},
		{Profile: "flaky", Size: 1000, Elapsed: sec(45)},
		{Profile: "2g", Size: Auto, Elapsed: sec(10)},
		{Profile: "2g", Size: 1000, Elapsed: sec(20), Stalled: true, Remaining: 7},
		{Profile: "2g", Size: 50, Elapsed: sec(9.5)},
	}
	got := strings.Join(Misses(Summarise(runs), runs), "\n")
	for _, want := range []string{
		"3g: auto/best = 1.20 > 1.10",
		"flaky: auto is 1.50× as fast as fixed 1000, want ≥ 2.0×",
		"2g size 1000 stalled with 7 records left",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("misses lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "2g: auto/best") {
		t.Errorf("2g at 1.05 reported as a miss:\n%s", got)
	}
}

func TestMedian(t *testing.T) {
	runs := []Run{
		{Elapsed: sec(3)},
		{Elapsed: sec(1), Stalled: true, Remaining: 1},
		{Elapsed: sec(2)},
	}
	if got := Median(runs).Elapsed; got != sec(3) {
		t.Errorf("median = %v, want 3s (the stalled run counts as slowest)", got)
	}
	if got := Median(runs[:1]).Elapsed; got != sec(3) {
		t.Errorf("median of one = %v", got)
	}
	if runs[1].Elapsed != sec(1) {
		t.Error("Median reordered its argument")
	}
}

// TestWriteReport_lastLine protects the contract scripts rely on: the last
// line is exactly "auto/best = X.XX", the worst ratio.
func TestWriteReport_lastLine(t *testing.T) {
	var buf bytes.Buffer
	profiles := []Profile{{Name: "3g", Records: 10, RecordBytes: 64}, {Name: "2g", Records: 10, RecordBytes: 64}}
	WriteReport(&buf, profiles, []Run{
		{Profile: "3g", Size: Auto, Elapsed: sec(10.5)},
		{Profile: "3g", Size: 50, Elapsed: sec(10)},
		{Profile: "2g", Size: Auto, Elapsed: sec(33)},
		{Profile: "2g", Size: 50, Elapsed: sec(30), SetAside: 2},
	})
	out := buf.String()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if last := lines[len(lines)-1]; last != "auto/best = 1.10" {
		t.Errorf("last line %q, want %q\n%s", last, "auto/best = 1.10", out)
	}
	for _, want := range []string{"# 3g:", "# 2g:", "2 set aside", "targets met", "2g: auto 33.0s, best fixed 50 30.0s, auto/best 1.10"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
