// Package linkbench holds the testable pieces of the link benchmark
// (testtools/cmd/linkbench): link profiles and the flags that define them, the
// drain loop that runs sync cycles until the queues are empty, and the
// summary that compares the adaptive request size with fixed ones.
//
// It imports only the standard library. The emulated link (toxiproxy) lives
// in testtools/cmd/linkbench, the only package that imports toxiproxy, so none
// of it reaches the syncagent binary. Imported only by testtools/cmd/linkbench.
package linkbench

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Profile is one emulated link and the volume drained over it.
type Profile struct {
	Name string
	// Latency is the round trip added to the link, half in each direction;
	// Jitter varies it by up to ± its value.
	Latency, Jitter time.Duration
	// KBps is the bandwidth of each direction in kB/s (1000 bytes); 0 is
	// unlimited.
	KBps int
	// ResetAfter: each direction of each connection is reset after a number
	// of bytes drawn uniformly from [ResetAfter/2, 3·ResetAfter/2]; 0 never.
	ResetAfter int
	// TimeoutProb is the chance that a request is swallowed by the link and
	// hangs until the client's deadline.
	TimeoutProb float64
	// Records are pushed from the satellite's outbox, and as many are then
	// pulled from its queue on the primary; each carries RecordBytes of
	// JSON data.
	Records, RecordBytes int
	// Repeat: each size runs this many times, each in a fresh state, and
	// the run with the median time counts (a fast link's drain is short
	// enough for the machine's load to matter).
	Repeat int
	// Initial: a new site's first sync. Nothing is pushed; Records legacy
	// rows of 500–1,300 B (shaped like open-mSupply's recorded transact
	// rows) are queued for the site and pulled, and the report compares
	// auto's time with the link floor (Floor).
	Initial bool
	// OnRequest: not in the default run (it takes long); run it by name.
	OnRequest bool
}

// InitialRoundTrips is the requests a sync cycle that pulls n records needs
// at the least under the v5 protocol as the reference client speaks it:
// GET site, the closing empty push, one site_status poll, central records,
// and a page and its acknowledgement for every MaxRequestSize records.
func InitialRoundTrips(n int) int { return 4 + 2*((n+MaxRequestSize-1)/MaxRequestSize) }

// Floor is the link floor of moving gzBytes (the records as the primary
// sends them, gzipped) over p: the bytes at p's bandwidth, plus
// InitialRoundTrips round trips of p's latency. Nothing can be faster.
func (p Profile) Floor(gzBytes int64) time.Duration {
	d := time.Duration(InitialRoundTrips(p.Records)) * p.Latency
	if p.KBps > 0 {
		d += time.Duration(float64(gzBytes) / float64(p.KBps*1000) * float64(time.Second))
	}
	return d
}

// Describe is the profile in one line, for the table's header.
func (p Profile) Describe() string {
	var link []string
	if p.Latency > 0 {
		s := "rtt +" + p.Latency.String()
		if p.Jitter > 0 {
			s += " ±" + p.Jitter.String()
		}
		link = append(link, s)
	}
	if p.KBps > 0 {
		link = append(link, fmt.Sprintf("%d kB/s each way", p.KBps))
	}
	if p.ResetAfter > 0 {
		link = append(link, fmt.Sprintf("reset after ~%s", formatBytes(int64(p.ResetAfter))))
	}
	if p.TimeoutProb > 0 {
		link = append(link, fmt.Sprintf("%.0f%% of requests hang", 100*p.TimeoutProb))
	}
	if len(link) == 0 {
		link = append(link, "loopback, no impairment")
	}
	s := fmt.Sprintf("%s: %s; %d records × %d B pushed, then as many pulled", p.Name, strings.Join(link, ", "), p.Records, p.RecordBytes)
	if p.Initial {
		s = fmt.Sprintf("%s: %s; a new site pulls %d legacy rows of 500–1300 B", p.Name, strings.Join(link, ", "), p.Records)
	}
	if p.Repeat > 1 {
		s += fmt.Sprintf("; median of %d runs", p.Repeat)
	}
	return s
}

// DefaultRecordBytes is the data size of each record unless a flag says
// otherwise.
const DefaultRecordBytes = 256

// Builtin returns the built-in profiles, in the order they run. Record
// counts are per profile so that the default run of all of them takes a few
// minutes on two cores: a slow link moves fewer records.
func Builtin() []Profile {
	return []Profile{
		{Name: "lan", Records: 10000, RecordBytes: DefaultRecordBytes, Repeat: 5},
		{Name: "3g", Latency: 300 * time.Millisecond, Jitter: 50 * time.Millisecond, KBps: 100, Records: 300, RecordBytes: DefaultRecordBytes, Repeat: 1},
		{Name: "2g", Latency: 800 * time.Millisecond, Jitter: 100 * time.Millisecond, KBps: 10, Records: 100, RecordBytes: DefaultRecordBytes, Repeat: 1},
		{Name: "flaky", Latency: 200 * time.Millisecond, Jitter: 50 * time.Millisecond, KBps: 50, ResetAfter: 16 << 10,
			TimeoutProb: 0.05, Records: 300, RecordBytes: DefaultRecordBytes, Repeat: 1},
		// A satellite-class link (VSAT, a geostationary hop): long round
		// trips, moderate bandwidth, a rare reset.
		{Name: "satellite", Latency: 1200 * time.Millisecond, Jitter: 100 * time.Millisecond, KBps: 250, ResetAfter: 2 << 20,
			Records: 300, RecordBytes: 600, Repeat: 1},
		// A new site's first sync over 3G and 2G (`--profile initial`):
		// the wait open-mSupply's users report as "literally hours".
		{Name: "initial-3g", Latency: 300 * time.Millisecond, Jitter: 50 * time.Millisecond, KBps: 100, Records: 100_000, RecordBytes: 900,
			Repeat: 1, Initial: true, OnRequest: true},
		{Name: "initial-2g", Latency: 800 * time.Millisecond, Jitter: 100 * time.Millisecond, KBps: 10, Records: 100_000, RecordBytes: 900,
			Repeat: 1, Initial: true, OnRequest: true},
	}
}

// Overrides are the flags that change profiles; nil fields were not given.
type Overrides struct {
	// Link flags: any of them defines the "custom" profile.
	Latency, Jitter *time.Duration
	KBps            *int
	ResetAfter      *int
	TimeoutProb     *float64
	// Volume flags apply to every profile that runs.
	Records, RecordBytes, Repeat *int
}

func (o Overrides) linkSet() bool {
	return o.Latency != nil || o.Jitter != nil || o.KBps != nil || o.ResetAfter != nil || o.TimeoutProb != nil
}

// Select returns the profiles to run. names is the --profile flag: a comma
// list of built-in names, empty for all of them. When a link flag is set,
// one profile runs, named "custom": the one profile names gives (or a clean
// link when names is empty) with the link flags applied.
func Select(names string, o Overrides) ([]Profile, error) {
	builtin := Builtin()
	var picked []Profile
	var wanted []string
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(strings.ToLower(n))
		if n == "initial" {
			wanted = append(wanted, "initial-3g", "initial-2g")
		} else if n != "" {
			wanted = append(wanted, n)
		}
	}
	for _, n := range wanted {
		i := slices.IndexFunc(builtin, func(p Profile) bool { return p.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("unknown profile %q (built-in: %s, initial for both initial ones)", n, builtinNames())
		}
		if !slices.ContainsFunc(picked, func(p Profile) bool { return p.Name == n }) {
			picked = append(picked, builtin[i])
		}
	}
	if o.linkSet() {
		base := Profile{Records: builtin[0].Records, RecordBytes: DefaultRecordBytes, Repeat: 1}
		switch len(picked) {
		case 0:
		case 1:
			base = picked[0]
		default:
			return nil, errors.New("--latency, --jitter, --kbps, --reset-after and --timeout-prob define one custom profile: give at most one --profile to start from")
		}
		base.Name = "custom"
		setIf(&base.Latency, o.Latency)
		setIf(&base.Jitter, o.Jitter)
		setIf(&base.KBps, o.KBps)
		setIf(&base.ResetAfter, o.ResetAfter)
		setIf(&base.TimeoutProb, o.TimeoutProb)
		picked = []Profile{base}
	} else if len(picked) == 0 {
		for _, p := range builtin {
			if !p.OnRequest {
				picked = append(picked, p)
			}
		}
	}
	for i := range picked {
		setIf(&picked[i].Records, o.Records)
		setIf(&picked[i].RecordBytes, o.RecordBytes)
		setIf(&picked[i].Repeat, o.Repeat)
		picked[i].Repeat = max(1, picked[i].Repeat)
		if err := picked[i].Validate(); err != nil {
			return nil, err
		}
	}
	return picked, nil
}

func setIf[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func builtinNames() string {
	var names []string
	for _, p := range Builtin() {
		names = append(names, p.Name)
	}
	return strings.Join(names, ", ")
}

// Validate reports the first setting out of range.
func (p Profile) Validate() error {
	switch {
	case p.Latency < 0 || p.Jitter < 0:
		return fmt.Errorf("profile %s: latency and jitter must not be negative", p.Name)
	case p.Jitter > p.Latency:
		return fmt.Errorf("profile %s: jitter %s is larger than the latency %s", p.Name, p.Jitter, p.Latency)
	case p.KBps < 0:
		return fmt.Errorf("profile %s: --kbps must not be negative (0 is unlimited)", p.Name)
	case p.ResetAfter < 0:
		return fmt.Errorf("profile %s: --reset-after must not be negative (0 is never)", p.Name)
	case p.ResetAfter > 0 && p.ResetAfter < 512:
		return fmt.Errorf("profile %s: --reset-after %d is too small for an HTTP request to pass; use at least 512 bytes", p.Name, p.ResetAfter)
	case p.TimeoutProb < 0 || p.TimeoutProb >= 1:
		return fmt.Errorf("profile %s: --timeout-prob must be in [0, 1)", p.Name)
	case p.Records < 1:
		return fmt.Errorf("profile %s: --records must be at least 1", p.Name)
	case p.RecordBytes < 32 || p.RecordBytes > 1<<20:
		return fmt.Errorf("profile %s: --record-bytes must be from 32 to 1048576", p.Name)
	case p.Repeat > 99:
		return fmt.Errorf("profile %s: --repeat must be at most 99", p.Name)
	}
	return nil
}

// Auto is the request size that lets the sizer choose, in size lists.
const Auto = 0

// MaxRequestSize is the largest fixed request size the prefs allow.
const MaxRequestSize = 5000

// ParseSizes parses the --sizes flag, e.g. "auto,10,50,200,1000,5000", into
// request sizes (Auto for auto), without repeats, in the order given.
func ParseSizes(s string) ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.ToLower(f))
		if f == "" {
			continue
		}
		n := Auto
		if f != "auto" {
			v, err := strconv.Atoi(f)
			if err != nil || v < 1 || v > MaxRequestSize {
				return nil, fmt.Errorf("--sizes: %q is neither auto nor a number of records from 1 to %d", f, MaxRequestSize)
			}
			n = v
		}
		if !slices.Contains(sizes, n) {
			sizes = append(sizes, n)
		}
	}
	if len(sizes) == 0 {
		return nil, errors.New("--sizes: give at least one size (auto or a number of records)")
	}
	return sizes, nil
}

// SizeName is how a request size shows in the table.
func SizeName(size int) string {
	if size == Auto {
		return "auto"
	}
	return strconv.Itoa(size)
}

func formatBytes(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 10<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
