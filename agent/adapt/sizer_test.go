package adapt

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func newTestSizer(cfg Config) (*Sizer, *FakeClock) {
	clock := NewFakeClock(epoch)
	return NewSizer(cfg, clock), clock
}

// ok feeds one clean request of n records of 500 B that took t.
func ok(s *Sizer, n int, t time.Duration, full bool) {
	s.Observe(Observation{Records: n, Bytes: n*500 + simRequestOverhead, Elapsed: t, Outcome: OK, Full: full})
}

// Protects the defaults a zero Config must get (1..5000 records, 4 MiB, a
// deadline) and the cap of a fixed size at MaxRecords.
func TestConfig_Defaults(t *testing.T) {
	got := Config{Fixed: 9000}.withDefaults()
	want := Config{Fixed: DefaultMaxRecords, MinRecords: 1, MaxRecords: DefaultMaxRecords, MaxBytes: DefaultMaxBytes, Deadline: DefaultDeadline, MinTimeout: DefaultMinTimeout}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if got := (Config{MinRecords: 10, MaxRecords: 5}).withDefaults(); got.MaxRecords != 10 {
		t.Fatalf("MaxRecords below MinRecords: got %d, want 10", got.MaxRecords)
	}
}

// Protects the climb on a fast clean link: auto reaches the record cap
// within a handful of requests instead of creeping up.
func TestSizer_LANClimbsToMaxQuickly(t *testing.T) {
	link := simProfiles[0]
	s, clock := newTestSizer(simConfig(0))
	r := drain(link, s, clock, 20000, 500, 1)
	if r.requests > 12 {
		t.Errorf("took %d requests to drain 20000 records, want <= 12", r.requests)
	}
	if recs, _ := s.Limit(); recs != 5000 {
		t.Errorf("limit %d records, want the 5000 cap", recs)
	}
}

// Protects the deadline rule on a slow clean link (2G: 800 ms, 10 KB/s):
// auto settles at a moderate size whose expected time is under half the
// deadline, not at the 4 MiB cap.
func TestSizer_2GSettlesModerate(t *testing.T) {
	link := simProfiles[2]
	s, clock := newTestSizer(simConfig(0))
	r := drain(link, s, clock, 20000, 500, 1)
	recs, bytes := s.Limit()
	if recs < 100 || recs > 400 {
		t.Errorf("settled at %d records, want a moderate 100..400", recs)
	}
	est := s.Estimate()
	expected := est.RTT + time.Duration(float64(bytes)/est.BytesPerSec*float64(time.Second))
	if expected > simDeadline/2+time.Second {
		t.Errorf("plans %d B, expected to take %v; want <= half the %v deadline", bytes, expected, simDeadline)
	}
	if r.failures > 0 {
		t.Errorf("%d requests failed on a clean link (timed out?)", r.failures)
	}
}

// Protects the flaky-link behaviour: connections reset after 16..48 KB, so
// auto must settle below that and drain far faster than a fixed 1000 (which
// must still finish, by re-slicing).
func TestSizer_FlakySettlesUnderResetSize(t *testing.T) {
	link := simProfiles[3]
	clock := NewFakeClock(epoch)
	s := NewSizer(simConfig(0), clock)
	auto := drain(link, s, clock, 20000, 500, 1)
	_, bytes := s.Limit()
	if bytes > int(link.resetAfter) {
		t.Errorf("settled at %d B, want under the %v B reset size", bytes, link.resetAfter)
	}
	fixed, _ := simDrain(link, 1000, 1)
	if fixed.took == stalled {
		t.Fatalf("fixed 1000 stalled: %v", fixed)
	}
	if fixed.took < 2*auto.took {
		t.Errorf("auto %v, fixed 1000 %v: want auto at least 2x faster", auto, fixed)
	}
}

// Protects the 413 rule: once the server refused a size, auto never plans a
// request above the server's limit again (within the ceiling's lifetime).
func TestSizer_TooLargeNeverExceededAgain(t *testing.T) {
	link := simProfiles[0]
	link.maxBody = 100_000
	s, clock := newTestSizer(simConfig(0))
	seen413 := false
	for range 200 {
		recs, lim := s.Limit()
		n := min(recs, max(1, lim/500))
		b := n*500 + simRequestOverhead
		if seen413 && b > link.maxBody {
			t.Fatalf("sent %d B after a 413 at a %d B limit", b, link.maxBody)
		}
		outcome := OK
		if b > link.maxBody {
			outcome, seen413 = TooLarge, true
		}
		clock.Advance(10 * time.Millisecond)
		s.Observe(Observation{Records: n, Bytes: b, Elapsed: 10 * time.Millisecond, Outcome: outcome, Full: true})
	}
	if !seen413 {
		t.Fatal("never reached the server's limit")
	}
	if _, lim := s.Limit(); lim < link.maxBody/2 {
		t.Errorf("limit %d B: cut far below the server's %d B", lim, link.maxBody)
	}
}

// Protects the ceiling's expiry: a day after a 413, auto may probe above it
// again (the server's limit may have been raised).
func TestSizer_TooLargeCeilingExpires(t *testing.T) {
	s, clock := newTestSizer(simConfig(0))
	ok(s, 100, 20*time.Millisecond, true)
	s.Observe(Observation{Records: 200, Bytes: 100_400, Elapsed: 20 * time.Millisecond, Outcome: TooLarge, Full: true})
	_, ceiling := s.Limit()
	clock.Advance(ceilingLifetime + time.Hour)
	for range 5 {
		recs, _ := s.Limit()
		ok(s, recs, 20*time.Millisecond, true)
	}
	if _, lim := s.Limit(); lim <= ceiling {
		t.Errorf("limit %d B a day later, still under the old ceiling %d B", lim, ceiling)
	}
}

// Protects prefs' fixed request_size: honoured exactly on a clean link, cut
// only to re-slice a failed batch, and back to the fixed size after the
// next success.
func TestSizer_FixedHonoured(t *testing.T) {
	for _, fixed := range []int{1, 10, 50, 200, 1000, 5000} {
		s, _ := newTestSizer(simConfig(fixed))
		for i := range 50 {
			recs, bytes := s.Limit()
			if recs != fixed || bytes != 4<<20 {
				t.Fatalf("fixed %d, request %d: limit %d rec/%d B, want %d rec/4 MiB", fixed, i, recs, bytes, fixed)
			}
			ok(s, recs, time.Duration(recs)*time.Millisecond, true)
		}
		s.Observe(Observation{Records: fixed, Bytes: fixed * 500, Elapsed: time.Second, Outcome: Failed, Full: true})
		if recs, _ := s.Limit(); fixed > 1 && recs >= fixed {
			t.Errorf("fixed %d: after a failure the limit is %d records; the failed batch must be re-sliced", fixed, recs)
		}
		ok(s, 1, time.Millisecond, true)
		if recs, _ := s.Limit(); recs != fixed {
			t.Errorf("fixed %d: after the next success the limit is %d records", fixed, recs)
		}
	}
}

// Protects the re-slice contract: after any failure of a batch of more than
// one record, the next limit is smaller than that batch, in auto and fixed
// mode alike, so the same oversized batch is never resent.
func TestSizer_FailureReslices(t *testing.T) {
	tests := []struct {
		name    string
		fixed   int
		outcome Outcome
	}{
		{"auto reset", 0, Failed},
		{"auto timeout", 0, TimedOut},
		{"auto 413", 0, TooLarge},
		{"fixed reset", 1000, Failed},
		{"fixed timeout", 1000, TimedOut},
		{"fixed 413", 1000, TooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestSizer(simConfig(tt.fixed))
			for range 10 {
				recs, _ := s.Limit()
				ok(s, recs, 50*time.Millisecond, true)
			}
			for range 20 {
				recs, bytes := s.Limit()
				n := min(recs, max(1, bytes/500))
				s.Observe(Observation{Records: n, Bytes: n*500 + simRequestOverhead, Elapsed: time.Second, Outcome: tt.outcome, Full: true})
				next, nextBytes := s.Limit()
				if m := min(next, max(1, nextBytes/500)); n > 1 && m >= n {
					t.Fatalf("after a failed batch of %d records the next batch is %d", n, m)
				}
				if next < 1 || nextBytes < 1 {
					t.Fatalf("limit %d rec/%d B: below one", next, nextBytes)
				}
			}
		})
	}
}

// Protects the bounds: auto stays within MinRecords..MaxRecords and under
// MaxBytes whatever the link shows.
func TestSizer_StaysInBounds(t *testing.T) {
	cfg := Config{MinRecords: 2, MaxRecords: 300, MaxBytes: 100_000, Deadline: simDeadline}
	s, _ := newTestSizer(cfg)
	for range 100 {
		recs, _ := s.Limit()
		s.Observe(Observation{Records: recs, Bytes: recs * 50, Elapsed: time.Millisecond, Outcome: OK, Full: true})
		recs, bytes := s.Limit()
		if recs > 300 || bytes > 100_000 {
			t.Fatalf("limit %d rec/%d B above the caps", recs, bytes)
		}
	}
	for range 100 {
		recs, bytes := s.Limit()
		s.Observe(Observation{Records: recs, Bytes: bytes, Elapsed: time.Second, Outcome: Failed, Full: true})
		if recs, bytes := s.Limit(); recs < 2 || bytes < 1 {
			t.Fatalf("limit %d rec/%d B below the floor", recs, bytes)
		}
	}
}

// Protects "a short final batch says nothing about growing".
func TestSizer_ShortBatchDoesNotGrow(t *testing.T) {
	s, _ := newTestSizer(simConfig(0))
	for range 10 {
		ok(s, 3, 10*time.Millisecond, false)
	}
	// The byte budget neither grows nor shrinks; the record count follows
	// the measured bytes per record.
	if _, bytes := s.Limit(); bytes != int(s.cfg.initialBytes()) {
		t.Errorf("budget moved to %d B on clean short batches, want %v", bytes, s.cfg.initialBytes())
	}
}

// Protects the exposure rule for timeouts: a request that hung counts the
// time it was given (the caller's elapsed time, or its timeout when the
// caller reports none) as exposure.
func TestSizer_TimeoutExposure(t *testing.T) {
	for _, tc := range []struct {
		name    string
		elapsed time.Duration
		want    float64 // seconds of exposure
	}{
		{"no elapsed reported: the whole deadline of an unknown link", 0, simDeadline.Seconds()},
		{"elapsed reported", 7 * time.Second, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newTestSizer(simConfig(0))
			s.Observe(Observation{Records: 10, Bytes: 5000, Elapsed: tc.elapsed, Outcome: TimedOut, Full: true})
			got := s.Estimate().FailuresPerSec
			if want := 1 / (tc.want + hazardPriorExposure); math.Abs(got-want) > 1e-9 {
				t.Errorf("failures/s %v, want %v", got, want)
			}
		})
	}
}

// Protects the per-request deadline: the whole Deadline while the link is
// unknown, then TimeoutFactor × the expected time, never under MinTimeout
// nor over the Deadline.
func TestSizer_Timeout(t *testing.T) {
	learn := func(rtt time.Duration, bytesPerSec float64) *Sizer {
		s, _ := newTestSizer(simConfig(0))
		for _, b := range []int{2000, 20000, 8000, 40000} {
			s.Observe(Observation{Records: b / 500, Bytes: b, Elapsed: rtt + time.Duration(float64(b)/bytesPerSec*float64(time.Second)), Outcome: OK})
		}
		return s
	}
	unknown, _ := newTestSizer(simConfig(0))
	// A new site's first sync on 2G: only an empty central page (558 B in
	// 0.9 s) has gone through before the first page of its queue.
	roundTrip, _ := newTestSizer(simConfig(0))
	roundTrip.Observe(Observation{Bytes: 558, Elapsed: 900 * time.Millisecond, Outcome: OK})
	threeG, twoG := learn(300*time.Millisecond, 100e3), learn(800*time.Millisecond, 10e3)
	for _, tc := range []struct {
		name  string
		s     *Sizer
		bytes int
		want  time.Duration
	}{
		{"unknown link: the whole deadline", unknown, 10000, simDeadline},
		{"only a round trip known, 125 kB: what 2G needs, 0.9 s + 12.5 s", roundTrip, 125000, 13400 * time.Millisecond},
		{"3g, small request: the floor", threeG, 10000, DefaultMinTimeout},
		{"3g, 1 MB: 4 × (0.3 s + 10 s), capped", threeG, 1000000, simDeadline},
		{"3g, 300 kB: 4 × 3.3 s", threeG, 300000, 13200 * time.Millisecond},
		{"2g, 40 kB: 4 × 4.8 s", twoG, 40000, 19200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.s.Timeout(tc.bytes)
			if d := got - tc.want; d < -50*time.Millisecond || d > 50*time.Millisecond {
				t.Errorf("Timeout(%d) = %v, want %v", tc.bytes, got, tc.want)
			}
		})
	}
}

// Protects the link estimate: RTT and throughput are recovered from
// requests of varied sizes, noise-free.
func TestSizer_EstimateRecoversLink(t *testing.T) {
	s, _ := newTestSizer(simConfig(0))
	for _, n := range []int{10, 40, 20, 80, 160, 5, 300} {
		b := n * 500
		s.Observe(Observation{Records: n, Bytes: b, Elapsed: 300*time.Millisecond + time.Duration(float64(b)/100e3*float64(time.Second)), Outcome: OK})
	}
	e := s.Estimate()
	if d := e.RTT - 300*time.Millisecond; d < -5*time.Millisecond || d > 5*time.Millisecond {
		t.Errorf("RTT %v, want 300ms", e.RTT)
	}
	if math.Abs(e.BytesPerSec-100e3) > 2e3 {
		t.Errorf("throughput %.0f B/s, want 100000", e.BytesPerSec)
	}
}

// Protects the status line's shape.
func TestSizer_String(t *testing.T) {
	s, _ := newTestSizer(simConfig(0))
	if got := s.String(); got != "auto 244 rec/122KiB · no link estimate yet" {
		t.Errorf("fresh: %q", got)
	}
	for _, n := range []int{10, 40, 20, 80, 160, 5, 300} {
		b := n * 500
		s.Observe(Observation{Records: n, Bytes: b, Elapsed: 310*time.Millisecond + time.Duration(float64(b)/96e3*float64(time.Second)), Outcome: OK})
	}
	got := s.String()
	for _, want := range []string{"auto ", " rec/", "KiB · rtt 310ms · 96KB/s · 0 fail/s"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	f, _ := newTestSizer(simConfig(200))
	if got := f.String(); !strings.HasPrefix(got, "fixed 200 rec/4MiB") {
		t.Errorf("fixed: %q", got)
	}
}

// Protects the units of the status line: binary for sizes, decimal for rates.
func TestFormat(t *testing.T) {
	sizes := map[int]string{512: "512B", 256 << 10: "256KiB", 4 << 20: "4MiB", 1536 << 10: "1.5MiB"}
	for b, want := range sizes {
		if got := formatSize(b); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", b, got, want)
		}
	}
	rates := map[float64]string{500: "500B/s", 96e3: "96KB/s", 12.5e6: "12.5MB/s", 2e6: "2MB/s"}
	for r, want := range rates {
		if got := formatRate(r); got != want {
			t.Errorf("formatRate(%v) = %q, want %q", r, got, want)
		}
	}
}

// Protects SetAside's rules: a record failing alone on a healthy link is
// set aside after SetAsideAfter tries; a one-record 413 at once; never when
// the link fails everything; at most once between successes.
func TestSizer_SetAside(t *testing.T) {
	healthy := func() *Sizer {
		s, _ := newTestSizer(simConfig(0))
		for i := range 100 {
			ok(s, 50+i%7, 300*time.Millisecond, true)
		}
		return s
	}
	fail := func(s *Sizer, records int, outcome Outcome, took time.Duration) {
		s.Observe(Observation{Records: records, Bytes: records*500 + simRequestOverhead, Elapsed: took, Outcome: outcome, Full: true})
	}

	t.Run("poison record on a healthy link", func(t *testing.T) {
		s := healthy()
		var got []bool
		for n := 1; n <= SetAsideAfter; n++ {
			fail(s, 1, Failed, 300*time.Millisecond)
			got = append(got, s.SetAside(n))
		}
		if want := []bool{false, false, true}; !slices.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
	t.Run("one record too large", func(t *testing.T) {
		s := healthy()
		fail(s, 1, TooLarge, 300*time.Millisecond)
		if !s.SetAside(1) {
			t.Error("a one-record 413 was not set aside")
		}
	})
	t.Run("link failing everything", func(t *testing.T) {
		s, _ := newTestSizer(simConfig(0))
		for range 20 {
			recs, _ := s.Limit()
			fail(s, recs, Failed, 10*time.Second)
		}
		for n := 1; n <= 6; n++ {
			fail(s, 1, Failed, 10*time.Second)
			if s.SetAside(n) {
				t.Fatalf("set aside after %d failures on a link that fails everything", n)
			}
		}
	})
	t.Run("once between successes", func(t *testing.T) {
		s := healthy()
		for n := 1; n <= SetAsideAfter; n++ {
			fail(s, 1, Failed, 300*time.Millisecond)
		}
		if !s.SetAside(SetAsideAfter) {
			t.Fatal("first record not set aside")
		}
		for n := 1; n <= SetAsideAfter; n++ {
			fail(s, 1, Failed, 300*time.Millisecond)
		}
		if s.SetAside(SetAsideAfter) {
			t.Fatal("a second record set aside with no success in between")
		}
		ok(s, 1, 300*time.Millisecond, true)
		for n := 1; n <= SetAsideAfter; n++ {
			fail(s, 1, Failed, 300*time.Millisecond)
		}
		if !s.SetAside(SetAsideAfter) {
			t.Fatal("not set aside after a success in between")
		}
	})
}

// Protects pulls: a pull that failed reports no records, and the next limit
// must still ask for fewer (auto and fixed), never the same oversized page.
func TestSizer_FailedPullReslices(t *testing.T) {
	for _, fixed := range []int{0, 1000} {
		s, _ := newTestSizer(simConfig(fixed))
		for range 5 {
			recs, _ := s.Limit()
			ok(s, recs, 50*time.Millisecond, true)
		}
		before, _ := s.Limit()
		s.Observe(Observation{Records: 0, Bytes: 300, Elapsed: time.Second, Outcome: Failed})
		if after, _ := s.Limit(); after >= before {
			t.Errorf("fixed %d: asked for %d records, after the failure %d", fixed, before, after)
		}
	}
}

// Protects recovery after an outage: a long run of failures re-slices down
// to one record, but once the link is back auto climbs to the cap again
// within a few requests instead of crawling under a hazard the outage left.
func TestSizer_RecoversAfterOutage(t *testing.T) {
	s, clock := newTestSizer(simConfig(0))
	drain(simProfiles[0], s, clock, 20000, 500, 1)
	for range 200 { // the link is down for hours: every try fails at once
		recs, bytes := s.Limit()
		n := min(recs, max(1, bytes/500))
		clock.Advance(time.Minute)
		s.Observe(Observation{Records: n, Bytes: n*500 + simRequestOverhead, Elapsed: 5 * time.Millisecond, Outcome: Failed, Full: true})
	}
	if recs, _ := s.Limit(); recs != 1 {
		t.Fatalf("during the outage the limit is %d records, want 1", recs)
	}
	r := drain(simProfiles[0], s, clock, 20000, 500, 2)
	if recs, _ := s.Limit(); recs != 5000 || r.requests > 25 {
		t.Errorf("after the outage: %v; want back at 5000 records within 25 requests", r)
	}
}

// Protects a caller that slices by uncompressed bytes but reports the
// (gzip) bytes on the wire: auto must still grow to the cap, not stall at
// its first budget.
func TestSizer_GrowsWhenWireBytesAreCompressed(t *testing.T) {
	s, _ := newTestSizer(simConfig(0))
	for range 30 {
		recs, bytes := s.Limit()
		n := min(recs, max(1, bytes/500))  // sliced by 500 B records
		wire := n*100 + simRequestOverhead // compressed 5:1
		s.Observe(Observation{Records: n, Bytes: wire, Elapsed: 2*time.Millisecond + time.Duration(wire)*80, Outcome: OK, Full: true})
	}
	if recs, bytes := s.Limit(); min(recs, bytes/500) < 5000 {
		t.Errorf("limit %d rec/%d B: a batch of %d records, want the 5000 cap", recs, bytes, min(recs, bytes/500))
	}
}

// TestSizer_smallFirstRequestIsRoundTrip protects a cold start: an empty page
// that took a round trip must not be read as a crawling link that caps the
// next batch at a few hundred bytes.
func TestSizer_smallFirstRequestIsRoundTrip(t *testing.T) {
	s := NewSizer(Config{Deadline: 5 * time.Second}, NewFakeClock(time.Unix(0, 0)))
	_, before := s.Limit()
	s.Observe(Observation{Records: 0, Bytes: 320, Elapsed: 800 * time.Millisecond, Outcome: OK})
	if _, after := s.Limit(); after < before {
		t.Errorf("byte budget fell from %d to %d after one empty 800ms page", before, after)
	}
}

// TestSizer_fixedResliceNeedsFullSuccess protects a fixed size on a link that
// breaks large batches: a short success (an empty page) must not restore the
// size that keeps failing; a full batch at the re-sliced size does.
func TestSizer_fixedResliceNeedsFullSuccess(t *testing.T) {
	s := NewSizer(Config{Fixed: 1000}, NewFakeClock(time.Unix(0, 0)))
	s.Observe(Observation{Records: 1000, Bytes: 200000, Elapsed: time.Second, Outcome: Failed})
	r, _ := s.Limit()
	if r != 500 {
		t.Fatalf("after a failed 1000: limit %d, want 500", r)
	}
	s.Observe(Observation{Records: 0, Bytes: 300, Elapsed: 300 * time.Millisecond, Outcome: OK})
	if r, _ := s.Limit(); r != 500 {
		t.Errorf("an empty page restored the fixed size: limit %d, want 500", r)
	}
	s.Observe(Observation{Records: 500, Bytes: 100000, Elapsed: time.Second, Outcome: OK, Full: true})
	if r, _ := s.Limit(); r != 1000 {
		t.Errorf("after a full 500: limit %d, want the fixed 1000 back", r)
	}
}

// Protects the runt rule: a queue at most a quarter over the limit goes in
// one batch; not a larger one, not while re-slicing, not past MaxRecords or
// a 413 ceiling, and never for a fixed size.
func TestSizer_LimitFor(t *testing.T) {
	fresh := func(cfg Config) *Sizer { s, _ := newTestSizer(cfg); return s }
	auto := fresh(simConfig(0))
	recs, bytes := auto.Limit()
	resliced := fresh(simConfig(0))
	resliced.Observe(Observation{Records: recs, Bytes: bytes, Elapsed: time.Second, Outcome: Failed, Full: true})
	rRecs, _ := resliced.Limit()
	ceiling := fresh(simConfig(0))
	ceiling.Observe(Observation{Records: 2 * recs, Bytes: 2 * bytes, Elapsed: time.Second, Outcome: TooLarge, Full: true})
	cRecs, cBytes := ceiling.Limit()
	small := fresh(Config{MaxRecords: recs, Deadline: simDeadline})
	for _, tc := range []struct {
		name                 string
		s                    *Sizer
		queued               int
		wantRecs, wantBytesX int // wantBytesX: bytes × 100 / the limit's bytes
	}{
		{"unknown queue", auto, 0, recs, 100},
		{"queue under the limit", auto, recs / 2, recs, 100},
		{"a quarter over: all of it", auto, recs * 5 / 4, recs * 5 / 4, 125},
		{"more than a quarter over", auto, recs*5/4 + 1, recs, 100},
		{"re-slicing after a failure", resliced, rRecs + 1, rRecs, 100},
		{"past MaxRecords", small, recs + 1, recs, 100},
		{"fixed size honoured", fresh(simConfig(1000)), 1100, 1000, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, limitBytes := tc.s.Limit()
			gotRecs, gotBytes := tc.s.LimitFor(tc.queued)
			if gotRecs != tc.wantRecs || gotBytes*100/limitBytes != tc.wantBytesX {
				t.Errorf("LimitFor(%d) = %d rec/%d B, want %d rec and %d%% of %d B", tc.queued, gotRecs, gotBytes, tc.wantRecs, tc.wantBytesX, limitBytes)
			}
		})
	}
	if r, b := ceiling.LimitFor(cRecs + 1); b > cBytes*5/4 || r > cRecs+1 {
		t.Errorf("under a 413 ceiling of %d B: LimitFor = %d rec/%d B", cBytes, r, b)
	}
	if _, b := ceiling.LimitFor(cRecs + 1); float64(b) > ceiling.ceiling {
		t.Errorf("LimitFor planned %d B over the %v B ceiling", b, ceiling.ceiling)
	}
}

// Protects the hand-over between directions: a pull sizer that has carried
// nothing starts at the push sizer's budget and bytes per record, up or
// down; one that has learned on its own, or a fixed one, is left alone.
func TestSizer_StartFrom(t *testing.T) {
	grown, _ := newTestSizer(simConfig(0))
	for range 3 { // a clean fast link: the push grows
		recs, _ := grown.Limit()
		grown.Observe(Observation{Records: recs, Bytes: recs * 300, Elapsed: 300 * time.Millisecond, Outcome: OK, Full: true})
	}
	shrunk, _ := newTestSizer(simConfig(0))
	recs, bytes := shrunk.Limit()
	shrunk.Observe(Observation{Records: recs, Bytes: bytes, Elapsed: time.Second, Outcome: Failed, Full: true})

	for _, tc := range []struct {
		name    string
		from    *Sizer
		prepare func(s *Sizer)
		cfg     Config
		adopt   bool
	}{
		{"fresh pull after a grown push", grown, func(*Sizer) {}, simConfig(0), true},
		{"fresh pull after a failing push", shrunk, func(*Sizer) {}, simConfig(0), true},
		{"pull that saw only an empty page", grown, func(s *Sizer) {
			s.Observe(Observation{Bytes: 300, Elapsed: 300 * time.Millisecond, Outcome: OK})
		}, simConfig(0), true},
		{"pull that carried a batch", grown, func(s *Sizer) { ok(s, 40, 400*time.Millisecond, false) }, simConfig(0), false},
		{"pull that failed", grown, func(s *Sizer) {
			s.Observe(Observation{Elapsed: time.Second, Outcome: Failed})
		}, simConfig(0), false},
		{"fixed pull", grown, func(*Sizer) {}, simConfig(200), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newTestSizer(tc.cfg)
			tc.prepare(s)
			beforeRecs, beforeBytes := s.Limit()
			s.StartFrom(tc.from)
			gotRecs, gotBytes := s.Limit()
			fromRecs, fromBytes := tc.from.Limit()
			if tc.adopt && (gotRecs != fromRecs || gotBytes != fromBytes) {
				t.Errorf("limit %d rec/%d B, want the push's %d rec/%d B", gotRecs, gotBytes, fromRecs, fromBytes)
			}
			if !tc.adopt && (gotRecs != beforeRecs || gotBytes != beforeBytes) {
				t.Errorf("limit moved from %d rec/%d B to %d rec/%d B", beforeRecs, beforeBytes, gotRecs, gotBytes)
			}
		})
	}
}

// Protects the growth rule on a clean link: a full batch doubles the time a
// request is exposed, so where the round trip dominates the budget grows up
// to 4×, and where the transfer dominates about 2×.
func TestSizer_GrowthDoublesExposure(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rtt      time.Duration
		lo, hi   float64 // growth factor of the budget
		linkRate float64 // bytes/s
	}{
		{"round trip dominates", 800 * time.Millisecond, 3.9, 4.01, 1e6},
		{"transfer dominates", 10 * time.Millisecond, 1.9, 2.2, 100e3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newTestSizer(simConfig(0))
			// Teach the split with two small requests of different sizes.
			for _, b := range []int{1000, 3000} {
				s.Observe(Observation{Records: 1, Bytes: b, Elapsed: tc.rtt + time.Duration(float64(b)/tc.linkRate*float64(time.Second)), Outcome: OK})
			}
			recs, before := s.Limit()
			b := before // the byte bound stopped the batch
			s.Observe(Observation{Records: recs - 1, Bytes: b, Elapsed: tc.rtt + time.Duration(float64(b)/tc.linkRate*float64(time.Second)), Outcome: OK, Full: true})
			_, after := s.Limit()
			if g := float64(after) / float64(before); g < tc.lo || g > tc.hi {
				t.Errorf("budget %d → %d B: ×%.2f, want ×%.1f..%.1f", before, after, g, tc.lo, tc.hi)
			}
		})
	}
}

// Protects Cold (a new auto sizer, until it learns anything) and the rule
// that a request larger than the budget that went through raises the
// budget to its size: a satellite's first push, bounded by its gzipped
// bytes, carried 210 kB of JSON on a 125 kB budget, and the pull that
// starts from it must not split the same volume in two.
func TestSizer_coldAndProvenSize(t *testing.T) {
	s, _ := newTestSizer(simConfig(0))
	if !s.Cold() {
		t.Fatal("a new auto sizer is not cold")
	}
	if f, _ := newTestSizer(simConfig(100)); f.Cold() {
		t.Error("a fixed sizer says it is cold")
	}
	initial := int(s.cfg.initialBytes())
	s.Observe(Observation{Records: 300, Bytes: 210_000, Elapsed: 1800 * time.Millisecond, Outcome: OK})
	if s.Cold() {
		t.Error("still cold after a request")
	}
	if _, bytes := s.Limit(); bytes < 210_000 {
		t.Errorf("budget %d B after a 210 kB request went through (from %d B), want at least its size", bytes, initial)
	}
	f, _ := newTestSizer(simConfig(0))
	f.Observe(Observation{Records: 10, Bytes: 5000, Elapsed: time.Second, Outcome: Failed})
	if f.Cold() {
		t.Error("still cold after a failure")
	}
}
