package linkbench

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

func names(ps []Profile) string {
	var n []string
	for _, p := range ps {
		n = append(n, p.Name)
	}
	return strings.Join(n, ",")
}

// TestSelect_builtins protects the default: every built-in profile, in order.
func TestSelect_builtins(t *testing.T) {
	got, err := Select("", Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(got), "lan,3g,2g,flaky,satellite"; got != want {
		t.Errorf("profiles = %s, want %s", got, want)
	}
}

func TestSelect_list(t *testing.T) {
	got, err := Select(" 2G, flaky,2g ", Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(got), "2g,flaky"; got != want {
		t.Errorf("profiles = %s, want %s", got, want)
	}
}

func TestSelect_unknown(t *testing.T) {
	_, err := Select("3g,5g", Overrides{})
	if err == nil || !strings.Contains(err.Error(), `"5g"`) || !strings.Contains(err.Error(), "lan, 3g, 2g, flaky") {
		t.Errorf("err = %v, want the unknown name and the built-in ones", err)
	}
}

// TestSelect_customFromScratch: link flags alone define one clean-link
// profile named custom with just those impairments.
func TestSelect_customFromScratch(t *testing.T) {
	got, err := Select("", Overrides{Latency: ptr(600 * time.Millisecond), KBps: ptr(20), ResetAfter: ptr(30000), Records: ptr(77)})
	if err != nil {
		t.Fatal(err)
	}
	want := []Profile{{Name: "custom", Latency: 600 * time.Millisecond, KBps: 20, ResetAfter: 30000, Records: 77, RecordBytes: DefaultRecordBytes, Repeat: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

// TestSelect_customFromBase: with one --profile, link flags modify it.
func TestSelect_customFromBase(t *testing.T) {
	got, err := Select("2g", Overrides{TimeoutProb: ptr(0.1)})
	if err != nil {
		t.Fatal(err)
	}
	base := Builtin()[2]
	base.Name, base.TimeoutProb = "custom", 0.1
	if len(got) != 1 || !reflect.DeepEqual(got[0], base) {
		t.Errorf("got %+v, want %+v", got, base)
	}
}

func TestSelect_customWithSeveralProfiles(t *testing.T) {
	if _, err := Select("3g,2g", Overrides{KBps: ptr(5)}); err == nil {
		t.Error("link flags with two profiles: no error")
	}
}

// TestSelect_volumeAppliesToAll: --records and friends change every profile
// and do not make a custom one.
func TestSelect_volumeAppliesToAll(t *testing.T) {
	got, err := Select("lan,3g", Overrides{Records: ptr(10), RecordBytes: ptr(64), Repeat: ptr(2)})
	if err != nil {
		t.Fatal(err)
	}
	if names(got) != "lan,3g" {
		t.Fatalf("profiles = %s", names(got))
	}
	for _, p := range got {
		if p.Records != 10 || p.RecordBytes != 64 || p.Repeat != 2 {
			t.Errorf("%s: records %d, bytes %d, repeat %d; want 10, 64, 2", p.Name, p.Records, p.RecordBytes, p.Repeat)
		}
	}
}

func TestSelect_invalid(t *testing.T) {
	for name, o := range map[string]Overrides{
		"negative latency": {Latency: ptr(-time.Second)},
		"jitter > latency": {Latency: ptr(time.Millisecond), Jitter: ptr(time.Second)},
		"negative kbps":    {KBps: ptr(-1)},
		"tiny reset":       {ResetAfter: ptr(100)},
		"prob 1":           {TimeoutProb: ptr(1.0)},
		"no records":       {Records: ptr(0)},
		"tiny records":     {RecordBytes: ptr(8)},
	} {
		if _, err := Select("", o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseSizes(t *testing.T) {
	got, err := ParseSizes(" auto,10, 50,AUTO,10,5000 ")
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{Auto, 10, 50, 5000}; !reflect.DeepEqual(got, want) {
		t.Errorf("sizes = %v, want %v", got, want)
	}
	for _, bad := range []string{"", ",", "0", "5001", "ten", "-5", "auto,1.5"} {
		if _, err := ParseSizes(bad); err == nil {
			t.Errorf("ParseSizes(%q): no error", bad)
		}
	}
}

// TestProfile_describe protects the table header's account of each profile.
func TestProfile_describe(t *testing.T) {
	p := Builtin()[3]
	got := p.Describe()
	for _, want := range []string{"flaky:", "rtt +200ms ±50ms", "50 kB/s each way", "reset after ~16 KiB", "5% of requests hang", fmt.Sprintf("%d records × 256 B", p.Records)} {
		if !strings.Contains(got, want) {
			t.Errorf("Describe() = %q, lacks %q", got, want)
		}
	}
	lan := Builtin()[0]
	if got := lan.Describe(); !strings.Contains(got, "no impairment") || !strings.Contains(got, fmt.Sprintf("median of %d", lan.Repeat)) {
		t.Errorf("lan: Describe() = %q", got)
	}
}

// TestProfile_initial protects the first-sync profiles: run by name (or
// "initial" for both), not in the default run, and their link floor.
func TestProfile_initial(t *testing.T) {
	all, err := Select("", Overrides{})
	if err != nil || strings.Contains(names(all), "initial") {
		t.Errorf("default run: %s, %v; want no initial profile", names(all), err)
	}
	got, err := Select("initial", Overrides{})
	if err != nil || names(got) != "initial-3g,initial-2g" {
		t.Fatalf("--profile initial: %s, %v", names(got), err)
	}
	p := got[0] // 3g: 100 kB/s, +300 ms; 100,000 records: 20 pages and 20 acks
	if got, want := p.Floor(10_000_000), 100*time.Second+44*300*time.Millisecond; got != want {
		t.Errorf("floor of 10 MB on 3g = %v, want %v", got, want)
	}
}
