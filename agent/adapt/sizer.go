package adapt

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Outcome is how a request ended, as far as the sizer cares.
type Outcome int

const (
	// OK: the request completed and the peer took it.
	OK Outcome = iota
	// Failed: the link broke it: connection reset, broken body, HTTP 5xx.
	Failed
	// TooLarge: the peer refused the size (HTTP 413).
	TooLarge
	// TimedOut: the request ran out its deadline.
	TimedOut
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Failed:
		return "failed"
	case TooLarge:
		return "too large"
	case TimedOut:
		return "timed out"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Observation is what one request showed.
type Observation struct {
	// Records in the batch; for a pull, records received (0 for a pull that
	// failed: it is taken to have asked for the whole limit).
	Records int
	// Bytes on the wire, both directions, counted the way the caller slices
	// batches. For a failed push, what the request was to carry.
	Bytes   int
	Elapsed time.Duration
	Outcome Outcome
	// Full: the batch was as large as the limit allowed: the record or the
	// byte bound stopped it, not the end of the queue. A short final batch
	// says nothing about growing.
	Full bool
}

// Defaults for the zero fields of Config.
const (
	DefaultMinRecords = 1
	DefaultMaxRecords = 5000
	DefaultMaxBytes   = 4 << 20
	DefaultDeadline   = 25 * time.Second
)

// Config bounds a Sizer. Zero fields take the defaults above.
type Config struct {
	// Fixed > 0 honours the prefs' fixed request_size: Limit always offers
	// that many records (capped at MaxRecords), except that a failed batch is
	// re-sliced until the next success.
	Fixed      int
	MinRecords int // auto never goes below this (at least 1)
	MaxRecords int // auto never goes above this
	MaxBytes   int // byte cap of any request
	// Deadline of each request; shorter than the watchdog interval. Auto
	// never plans a request expected to take more than half of it. Once the
	// link is known, Timeout gives a request a shorter one.
	Deadline time.Duration
	// MinTimeout is the shortest deadline Timeout gives once the link is
	// known (it leaves room for the server's disk).
	MinTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.MinRecords < 1 {
		c.MinRecords = DefaultMinRecords
	}
	if c.MaxRecords <= 0 {
		c.MaxRecords = DefaultMaxRecords
	}
	c.MaxRecords = max(c.MaxRecords, c.MinRecords)
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Deadline <= 0 {
		c.Deadline = DefaultDeadline
	}
	if c.MinTimeout <= 0 {
		c.MinTimeout = DefaultMinTimeout
	}
	if c.Fixed > 0 {
		c.Fixed = min(c.Fixed, c.MaxRecords)
	}
	return c
}

// initialBytes is the first auto budget, before anything is known.
func (c Config) initialBytes() float64 {
	return max(1, min(float64(c.MaxBytes), slowestLink*c.Deadline.Seconds()/2))
}

// Estimate is what the sizer believes about the link, and its next limit.
type Estimate struct {
	RTT            time.Duration // fixed cost of a request (0: not measured yet)
	BytesPerSec    float64       // throughput (0: not measured yet)
	FailuresPerSec float64       // failures per second of exposure
	Records, Bytes int           // the next Limit
}

// SetAsideAfter is how many times in a row a one-record batch must fail
// before SetAside agrees to set it aside (a 413 needs only one).
const SetAsideAfter = 3

const (
	// slowestLink is the throughput, bytes/s, of the slowest link the agent
	// is designed for (2G). Before anything is known, the first auto batch
	// is what it carries in half the deadline, uncompressed: 125 kB with
	// the default 25 s, which a faster link then grows from.
	slowestLink        = 10e3
	maxGrowth          = 4    // most a clean full batch multiplies the budget by
	assumedRecordBytes = 512  // bytes per record until one is measured (a v5 row is a few hundred bytes of JSON)
	perRecordSmoothing = 0.25 // weight of the newest bytes-per-record sample
	ceilingLifetime    = 24 * time.Hour
	// outageRun: beyond this many failures in a row, more failures say the
	// link is down, not how large a request may be: they still re-slice,
	// but do not teach the link model. Once such a run reaches the smallest
	// batch, even its first failures are taken back: an outage (or a record
	// the server chokes on) must not leave a hazard that keeps requests
	// small long after the link is back.
	outageRun = 3
	// setAsideChance: a record is set aside only if the link's own failure
	// rate explains its run of failures with less than this probability.
	setAsideChance = 0.01
)

// Sizer chooses the size of each sync request from what earlier requests
// showed. One Sizer serves one direction (push or pull) of one link. It is
// safe for concurrent use (Observe and Limit come from the sync loop, String
// and Estimate from status).
type Sizer struct {
	cfg   Config
	clock Clock

	mu          sync.Mutex
	budget      float64 // auto: bytes the next request may carry; guarded by mu
	perRecord   float64 // smoothed bytes per record; 0 unknown
	fit         linkFit
	hz          hazard // failures that size the requests (outages left out)
	allHz       hazard // every failure: the link as it is, for SetAside and status
	sizes       sizeStats
	maxOK       float64   // largest successful request, bytes
	ceiling     float64   // from a 413: never plan above it; 0 none
	ceilingAt   time.Time // when the ceiling was set; it expires after ceilingLifetime
	reslice     int       // records cap after a failure, until the next success; 0 none
	resliceB    float64   // fixed mode: bytes cap after a failure, until the next success
	singleLarge bool      // the last observation was a one-record 413
	runCount    int       // one-record failures in a row
	runExposure float64   // their exposure, seconds
	setAside    bool      // SetAside said yes since the last success
	failRun     failureRun
}

// failureRun is the failures since the last success.
type failureRun struct {
	n     int    // failures in the run
	bands []int  // size bands of the failures taught to the model
	hung  []bool // and whether each hung
}

// NewSizer returns a Sizer that starts, in auto mode, at what the slowest
// link carries in half the deadline (125 kB with the default deadline).
func NewSizer(cfg Config, clock Clock) *Sizer {
	cfg = cfg.withDefaults()
	return &Sizer{cfg: cfg, clock: clock, budget: cfg.initialBytes()}
}

// Limit returns the next batch's bounds: at most records records and about
// bytes bytes. A batch always holds at least one record, even one larger
// than bytes.
func (s *Sizer) Limit() (records, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limitLocked()
}

// LimitFor is Limit for a queue known to hold queued records. When they are
// at most a quarter more than Limit allows, in records and in bytes at the
// bytes per record seen, an auto sizer takes them all: the runt batch left
// over would cost a whole round trip for little. Never while re-slicing
// after a failure, never beyond MaxRecords, MaxBytes or a 413 ceiling, and
// a fixed size is honoured as it is.
func (s *Sizer) LimitFor(queued int) (records, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	records, bytes = s.limitLocked()
	if s.cfg.Fixed > 0 || s.reslice > 0 || queued <= records || queued*4 > records*5 || queued > s.cfg.MaxRecords {
		return records, bytes
	}
	b := float64(bytes) * float64(queued) / float64(records)
	if b > s.byteCapLocked() {
		return records, bytes
	}
	return queued, int(b)
}

func (s *Sizer) limitLocked() (records, bytes int) {
	var b float64
	if s.cfg.Fixed > 0 {
		records, b = s.cfg.Fixed, s.byteCapLocked()
		if s.resliceB > 0 {
			b = min(b, s.resliceB)
		}
	} else {
		b = s.budget
		per := s.perRecord
		if per <= 0 {
			per = assumedRecordBytes
		}
		records = int(min(b/per, float64(s.cfg.MaxRecords)))
		records = max(s.cfg.MinRecords, min(s.cfg.MaxRecords, records))
	}
	if s.reslice > 0 {
		records = min(records, s.reslice)
	}
	return max(1, records), max(1, int(b))
}

// ceilingLocked returns the 413 ceiling in force, forgetting one that has
// expired (the server's limit may have been raised).
func (s *Sizer) ceilingLocked() float64 {
	if s.ceiling > 0 && s.clock.Now().Sub(s.ceilingAt) > ceilingLifetime {
		s.ceiling = 0
	}
	return s.ceiling
}

// byteCapLocked is the most any request may carry: MaxBytes, or the 413
// ceiling in force when lower.
func (s *Sizer) byteCapLocked() float64 {
	if c := s.ceilingLocked(); c > 0 {
		return min(float64(s.cfg.MaxBytes), c)
	}
	return float64(s.cfg.MaxBytes)
}

// boundsLocked returns the smallest and largest byte budget auto may plan:
// at least MinRecords records, at most MaxBytes, the 413 ceiling, and what
// the link is expected to carry in half the deadline.
func (s *Sizer) boundsLocked() (lo, hi float64) {
	lo = max(1, s.perRecord*float64(s.cfg.MinRecords))
	hi = s.byteCapLocked()
	if s.fit.Seen && s.fit.PerByte > 0 {
		hi = min(hi, (s.cfg.Deadline.Seconds()/2-s.fit.RTT)/s.fit.PerByte)
	}
	return lo, max(lo, hi)
}

// targetLocked is the budget that maximises expected goodput.
func (s *Sizer) targetLocked() float64 {
	lo, hi := s.boundsLocked()
	if !s.fit.Seen {
		return hi
	}
	return bestBytes(&s.fit, &s.hz, &s.sizes, s.timeoutSeconds, lo, hi)
}

// Timeout is the deadline for a request of about bytes bytes: TimeoutFactor
// times what the link has shown such a request takes, at least
// Config.MinTimeout, at most Config.Deadline (the whole Deadline while the link is unknown).
// A request the link swallowed is given up after seconds instead of the
// whole deadline, like TCP's retransmission timeout; the planning bound
// (half the Deadline) leaves room for the factor.
func (s *Sizer) Timeout(bytes int) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Duration(s.timeoutSeconds(float64(bytes)) * float64(time.Second))
}

// Per-request deadlines once the link is known.
const (
	TimeoutFactor = 4
	// DefaultMinTimeout leaves room for the server: a batch's commit waits
	// for its disk, which a fast link does not make faster.
	DefaultMinTimeout = 5 * time.Second
)

func (s *Sizer) timeoutSeconds(b float64) float64 {
	d := s.cfg.Deadline.Seconds()
	if !s.fit.Seen {
		return d
	}
	t := max(s.cfg.MinTimeout.Seconds(), TimeoutFactor*s.fit.seconds(b))
	if s.maxOK < smallRequestBytes {
		// Only small requests (GET site, an empty central page) have gone
		// through: the fit knows the round trip, not the throughput, so a
		// first real page gets what the slowest link needs for it. Without
		// this a new site's first page on 2G got the 5 s floor and was cut
		// just before its end, holding the first sync (and its time left)
		// for those 5 s and a retry.
		t = max(t, s.fit.RTT+b/slowestLink)
	}
	return min(d, t)
}

// Observe learns from one request. After a failure the next Limit is
// smaller than the failed batch (unless it held one record, or MinRecords):
// the caller must re-slice that batch at the new Limit, never resend it
// whole.
//
// Better not observe a request that never reached the peer (dial, DNS or
// refused connection): it says the link is down, not that the batch was too
// big; wait on a Backoff instead. (If such failures are observed, a run of
// them that reaches the smallest batch is recognised as an outage and does
// not teach the model.) Refusals of the content (4xx other than 413) say
// nothing about the link and must not be observed.
func (s *Sizer) Observe(o Observation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	limitRecords, _ := s.limitLocked() // what this batch was sliced at
	b := float64(max(0, o.Bytes))
	sec := max(0, o.Elapsed.Seconds())
	if o.Outcome == TimedOut && sec == 0 {
		sec = s.timeoutSeconds(b)
	}
	if o.Records > 0 && b > 0 && (o.Outcome == OK || s.perRecord == 0) {
		sample := b / float64(o.Records)
		if s.perRecord == 0 {
			s.perRecord = sample
		} else {
			s.perRecord += perRecordSmoothing * (sample - s.perRecord)
		}
	}
	s.singleLarge = false
	if o.Records != 1 || o.Outcome == OK {
		s.runCount, s.runExposure = 0, 0
	}

	switch o.Outcome {
	case OK:
		s.fit.add(b, sec)
		s.hz.add(sec, false, false)
		s.allHz.add(sec, false, false)
		s.sizes.add(b, true)
		s.maxOK = max(s.maxOK, b)
		// A fixed size comes back only after a full batch at the re-sliced
		// size worked: a short page (an empty one, the queue's tail) proves
		// nothing, and letting it restore the size would fail the same way.
		if s.cfg.Fixed == 0 || o.Full || (o.Records > 0 && o.Records >= limitRecords) {
			s.reslice, s.resliceB = 0, 0
		}
		s.setAside, s.failRun = false, failureRun{}
		s.adjustAfterSuccessLocked(b, o.Full, o.Records >= limitRecords)
	case TooLarge:
		s.hz.add(sec, false, false)
		s.allHz.add(sec, false, false)
		size := s.failedSizeLocked(o)
		c := size / 2
		if s.maxOK > 0 && s.maxOK < size {
			c = s.maxOK
		}
		if old := s.ceilingLocked(); old > 0 {
			c = min(c, old)
		}
		s.ceiling, s.ceilingAt = max(1, c), s.clock.Now()
		s.singleLarge = o.Records == 1
		s.cutLocked(o, s.ceiling)
	default: // Failed, TimedOut
		size, hung := s.failedSizeLocked(o), o.Outcome == TimedOut
		s.allHz.add(sec, true, hung)
		run := &s.failRun
		run.n++
		switch {
		case run.n <= outageRun:
			s.hz.add(sec, true, hung)
			s.sizes.add(size, false)
			run.bands, run.hung = append(run.bands, bandOf(size)), append(run.hung, hung)
		case limitRecords <= max(1, s.cfg.MinRecords): // sliced as small as it goes
			s.forgiveRunLocked()
		}
		if o.Records == 1 {
			s.runCount++
			s.runExposure += sec
		}
		s.cutLocked(o, size/2)
	}
	s.budget = s.clampLocked(s.budget)
}

// forgiveRunLocked takes back what the failures of an outage taught the
// model (decay since makes this approximate; counts stay >= 0).
func (s *Sizer) forgiveRunLocked() {
	run := &s.failRun
	for i, band := range run.bands {
		if run.hung[i] {
			s.hz.Hangs = max(0, s.hz.Hangs-1)
		} else {
			s.hz.Resets = max(0, s.hz.Resets-1)
		}
		s.sizes.Failed[band] = max(0, s.sizes.Failed[band]-1)
	}
	run.bands, run.hung = nil, nil
}

// adjustAfterSuccessLocked grows the auto budget after a clean full-size
// success (×2 while the link has shown no failures, more gently towards the
// optimum once it has), and lets it down towards the optimum when the
// optimum has fallen below it. Growth starts from the b bytes the request
// carried when the record bound stopped the batch (the byte budget was not
// what it proved), and from the budget when the byte bound did (so a caller
// that slices by uncompressed bytes but reports compressed ones still
// grows).
func (s *Sizer) adjustAfterSuccessLocked(b float64, full, recordBound bool) {
	if s.cfg.Fixed > 0 {
		return
	}
	target := s.targetLocked()
	switch {
	case full && s.budget < target:
		base := s.budget
		if recordBound {
			base = b
		}
		grown := base * 2
		if s.hz.Resets+s.hz.Hangs > 0 {
			grown = base * max(1, min(2, math.Sqrt(target/s.budget)))
		} else if s.fit.Seen && s.fit.PerByte > 0 {
			// A clean link: double the time a request is exposed, not its
			// bytes (failures strike per second of exposure), so a link
			// where the round trip dominates grows faster; at most ×4 on
			// what a fit of few requests says.
			grown = min(base*maxGrowth, max(grown, (2*s.fit.seconds(base)-s.fit.RTT)/s.fit.PerByte))
		}
		s.budget = max(s.budget, min(target, grown))
	case s.budget > target:
		s.budget = max(target, s.budget/2)
	case b > s.budget:
		// A request larger than the budget went through (a cold first push
		// bounded by its gzipped size, a queue's tail taken whole): that
		// size is proven, so the other direction and the next request
		// start from it rather than split the same volume in two.
		s.budget = min(target, b)
	}
}

// StartFrom starts an auto sizer that has not carried a batch yet where o,
// the other direction over the same link, has got to: o's budget, within
// this sizer's bounds, and o's bytes per record if this one has none.
// Without it a cycle's pull would start from scratch right after the push
// had learned the link: ramp up again on a good one, fail its way down
// again on a bad one. A sizer that has carried a batch, seen a failure or a
// 413 of its own, or a fixed one, is left alone.
func (s *Sizer) StartFrom(o *Sizer) {
	if s == o {
		return
	}
	o.mu.Lock()
	budget, perRecord, oFixed := o.budget, o.perRecord, o.cfg.Fixed > 0
	o.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	learned := s.maxOK >= smallRequestBytes || s.allHz.Resets+s.allHz.Hangs > 0 || s.ceiling > 0
	if s.cfg.Fixed > 0 || oFixed || learned {
		return
	}
	if s.perRecord == 0 {
		s.perRecord = perRecord // the same tables both ways: a better guess than assumedRecordBytes
	}
	s.budget = s.clampLocked(budget)
}

// cutLocked re-slices after a failed batch: at most half its records, and
// a byte bound of at most limit: the auto budget drops to it (and stays, as
// learned), a fixed size keeps it as a cap until the next success. A
// failure with no record count (a pull that broke before any record
// arrived) is taken to have asked for the whole current limit.
func (s *Sizer) cutLocked(o Observation, limit float64) {
	n := o.Records
	if n <= 0 { // a pull that broke before any record arrived asked for the limit
		n, _ = s.limitLocked()
	}
	s.reslice = max(1, n/2)
	if s.cfg.Fixed == 0 {
		s.reslice = max(s.cfg.MinRecords, s.reslice)
	}
	if s.cfg.Fixed > 0 {
		s.resliceB = max(1, limit)
		return
	}
	s.budget = min(s.budget, limit)
}

// failedSizeLocked is the size of the batch a failure belongs to.
func (s *Sizer) failedSizeLocked(o Observation) float64 {
	if o.Records > 0 && o.Bytes > 0 {
		return float64(o.Bytes)
	}
	if s.cfg.Fixed > 0 {
		_, b := s.limitLocked()
		return float64(b)
	}
	return s.budget
}

func (s *Sizer) clampLocked(budget float64) float64 {
	lo, hi := s.boundsLocked()
	if math.IsNaN(budget) {
		return lo
	}
	return max(lo, min(hi, budget))
}

// SetAside reports whether a batch of ONE record that has now failed
// consecutiveSingleFailures times in a row should be set aside (kept out of
// the queue with a clear error) rather than block it. Yes at once after a
// 413 for that one record; otherwise only after SetAsideAfter failures, and
// only if the link's own failure rate makes such a run unlikely (under 1%).
// It says yes at most once between two successful requests, so a server that
// fails everything costs at most one record set aside, not the queue.
//
// The satellite no longer asks: a failure on the link never sets a record
// aside, only the primary's refusal of it does (issue 10). It stays for the
// link simulation in this package's tests.
func (s *Sizer) SetAside(consecutiveSingleFailures int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := consecutiveSingleFailures
	if s.setAside || n < 1 {
		return false
	}
	if s.singleLarge {
		s.setAside = true
		return true
	}
	if n < SetAsideAfter {
		return false
	}
	t := s.fit.seconds(s.perRecord)
	if s.runCount > 0 {
		t = max(t, s.runExposure/float64(s.runCount))
	}
	linkFails := 1 - math.Exp(-s.allHz.perSecond()*t)
	if math.Pow(linkFails, float64(n)) >= setAsideChance {
		return false
	}
	s.setAside = true
	return true
}

// Cold reports whether an auto sizer has learned nothing yet: no request
// observed (nor restored from a saved state), no failure, no 413. Its Limit
// is then what the slowest link carries in half the deadline, and a caller
// that compresses its bodies may apply that byte bound to the compressed
// body, which is what the link carries (agent/satellite's first push).
func (s *Sizer) Cold() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.Fixed == 0 && !s.fit.Seen && s.maxOK == 0 && s.allHz.Resets+s.allHz.Hangs == 0 && s.ceiling == 0 && s.reslice == 0
}
