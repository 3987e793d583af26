package adapt

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// simLink is a simulated link: a round trip, a bandwidth, connections that
// reset after a random amount of data, requests that hang, a server limit.
type simLink struct {
	name        string
	rtt         time.Duration
	jitter      float64 // the round trip varies uniformly by ± this fraction
	bytesPerSec float64
	resetAfter  float64 // bytes before a reset, on average; 0: never
	resetExp    bool    // reset point exponential (memoryless); else uniform in [½, 1½]·resetAfter
	hangProb    float64 // chance a request hangs until its deadline
	maxBody     int     // the server answers 413 above this; 0: no limit
}

var simProfiles = []simLink{
	{name: "lan", rtt: 2 * time.Millisecond, jitter: 0.2, bytesPerSec: 12.5e6},
	{name: "3g", rtt: 300 * time.Millisecond, jitter: 0.2, bytesPerSec: 100e3},
	{name: "2g", rtt: 800 * time.Millisecond, jitter: 0.2, bytesPerSec: 10e3},
	{name: "flaky", rtt: 300 * time.Millisecond, jitter: 0.2, bytesPerSec: 50e3, resetAfter: 32e3, hangProb: 0.01},
	{name: "flakyx", rtt: 300 * time.Millisecond, jitter: 0.2, bytesPerSec: 50e3, resetAfter: 64e3, resetExp: true, hangProb: 0.02},
}

// simRequestOverhead is what every request carries besides its records.
const simRequestOverhead = 400

// request simulates one request of b bytes with the given deadline.
func (l simLink) request(rng *rand.Rand, b int, deadline time.Duration) (Outcome, time.Duration) {
	rtt := time.Duration(float64(l.rtt) * (1 + l.jitter*(2*rng.Float64()-1)))
	transfer := func(n float64) time.Duration { return time.Duration(n / l.bytesPerSec * float64(time.Second)) }
	if l.maxBody > 0 && b > l.maxBody {
		return TooLarge, rtt + transfer(float64(l.maxBody))
	}
	if rng.Float64() < l.hangProb {
		return TimedOut, deadline
	}
	if l.resetAfter > 0 {
		x := l.resetAfter * (0.5 + rng.Float64())
		if l.resetExp {
			x = rng.ExpFloat64() * l.resetAfter
		}
		if x < float64(b) {
			return Failed, min(deadline, rtt/2+transfer(x))
		}
	}
	if t := rtt + transfer(float64(b)); t < deadline {
		return OK, t
	}
	return TimedOut, deadline
}

// drainResult is what draining a queue over a simulated link took.
type drainResult struct {
	took      time.Duration
	requests  int
	failures  int
	setAside  int
	maxBytes  int // largest request sent
	finalRecs int // the last Limit
	finalB    int
}

func (r drainResult) String() string {
	return fmt.Sprintf("%v in %d requests (%d failed, %d set aside), largest %dB, final limit %d rec/%dB",
		r.took.Round(time.Second), r.requests, r.failures, r.setAside, r.maxBytes, r.finalRecs, r.finalB)
}

// drain pushes records of recordBytes each through link the way the
// satellite does (see the package doc), on the sizer's fake clock, and
// returns how long it took. It gives up after maxRequests.
func drain(link simLink, s *Sizer, clock *FakeClock, records, recordBytes int, seed uint64) drainResult {
	const maxRequests = 200000
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	backoff := NewBackoff(clock, 0, 0)
	backoff.rnd = rand.New(rand.NewPCG(seed, 1))
	start := clock.Now()
	var res drainResult
	batchOf := func() (n int, full bool) {
		recs, lim := s.Limit()
		bound := min(recs, max(1, lim/recordBytes))
		return min(bound, records), bound <= records
	}
	singles := 0
	for records > 0 && res.requests < maxRequests {
		n, full := batchOf()
		b := n*recordBytes + simRequestOverhead
		outcome, took := link.request(rng, b, s.Timeout(b))
		clock.Advance(took)
		res.requests++
		res.maxBytes = max(res.maxBytes, b)
		s.Observe(Observation{Records: n, Bytes: b, Elapsed: took, Outcome: outcome, Full: full})
		if outcome == OK {
			records -= n
			singles = 0
			backoff.Reset()
			continue
		}
		res.failures++
		if n == 1 {
			singles++
			if s.SetAside(singles) {
				records--
				res.setAside++
				singles = 0
				continue
			}
		}
		if next, _ := batchOf(); next < n {
			continue // re-slice at once
		}
		clock.Advance(backoff.Next())
	}
	res.took = clock.Now().Sub(start)
	if records > 0 {
		res.took = stalled
	}
	res.finalRecs, res.finalB = s.Limit()
	return res
}
