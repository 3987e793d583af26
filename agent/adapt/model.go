package adapt

import "math"

// The link model: what a request costs and how likely it is to fail.
//
// A request carrying b bytes (both directions) takes T(b) = RTT + b/throughput.
// RTT and throughput come from linkFit, a least-squares line through recent
// successful requests. Failures are a hazard per second of exposure (time
// spent in requests): a request survives with probability exp(-h·T(b)). A
// reset wastes T(b); a request that hangs wastes the whole deadline.

const (
	// fitDecay weights the previous successful requests in linkFit: the
	// line follows about the last 1/(1-fitDecay) requests.
	fitDecay = 0.9
	// fitRidge pulls the fit towards its previous answer, relative to the
	// data. It resolves the direction the data cannot see (all requests of
	// one size pin RTT + b/throughput but not the split) and is otherwise
	// negligible.
	fitRidge = 0.02
	// minSecondsPerByte bounds throughput at 10 GB/s.
	minSecondsPerByte = 1e-10

	// hazardWindow is the exposure, in seconds, over which failure evidence
	// fades by a factor e.
	hazardWindow = 600.0
	// hazardPriorExposure is clean exposure assumed before any evidence, so a
	// first failure after a few short requests reads as a modest hazard, not
	// an enormous one.
	hazardPriorExposure = 30.0
)

// linkFit fits elapsed = RTT + bytes·perByte by exponentially weighted
// least squares over successful requests. Fields are exported for the saved
// state.
type linkFit struct {
	W, B, T, BB, BT float64 // decayed sums of 1, b, t, b², b·t
	RTT             float64 // seconds
	PerByte         float64 // seconds per byte
	Seen            bool    // at least one request fitted
}

// add fits one successful request of b bytes that took t seconds.
func (f *linkFit) add(b, t float64) {
	f.W, f.B, f.T, f.BB, f.BT = f.W*fitDecay+1, f.B*fitDecay+b, f.T*fitDecay+t, f.BB*fitDecay+b*b, f.BT*fitDecay+b*t
	if !f.Seen {
		// One request cannot split RTT from transfer time: start halfway.
		f.Seen = true
		f.RTT = t / 2
		if b > 0 {
			f.PerByte = t / 2 / b
		} else {
			f.RTT = t
		}
	}
	if f.BB == 0 { // only empty requests so far: all of it is round trip
		f.RTT = f.T / f.W
		return
	}
	a11, a12, a22 := f.W*(1+fitRidge), f.B, f.BB*(1+fitRidge)
	r1, r2 := f.T+fitRidge*f.W*f.RTT, f.BT+fitRidge*f.BB*f.PerByte
	det := a11*a22 - a12*a12
	if det <= 0 || math.IsNaN(det) {
		return
	}
	rtt, perByte := (r1*a22-a12*r2)/det, (a11*r2-a12*r1)/det
	if perByte < minSecondsPerByte {
		perByte = minSecondsPerByte
		rtt = (f.T - perByte*f.B) / f.W
	}
	if rtt < 0 {
		rtt = 0
		perByte = max(minSecondsPerByte, f.BT/f.BB)
	}
	f.RTT, f.PerByte = rtt, perByte
}

// seconds is the expected duration of a successful request of b bytes.
func (f *linkFit) seconds(b float64) float64 { return f.RTT + b*f.PerByte }

// hazard counts failures per second of exposure, fading with exposure.
type hazard struct {
	Exposure float64 // decayed seconds spent in requests
	Resets   float64 // decayed count of broken requests (reset, bad body, 5xx)
	Hangs    float64 // decayed count of requests that ran out the deadline
}

// add records exposure seconds of one request; failed/hung say how it ended.
func (h *hazard) add(exposure float64, failed, hung bool) {
	d := math.Exp(-exposure / hazardWindow)
	h.Exposure, h.Resets, h.Hangs = h.Exposure*d+exposure, h.Resets*d, h.Hangs*d
	switch {
	case hung:
		h.Hangs++
	case failed:
		h.Resets++
	}
}

// rates returns the reset and hang hazards per second of exposure.
func (h *hazard) rates() (resets, hangs float64) {
	e := h.Exposure + hazardPriorExposure
	return h.Resets / e, h.Hangs / e
}

func (h *hazard) perSecond() float64 {
	r, g := h.rates()
	return r + g
}

// goodput is the expected useful bytes per second when sending b-byte
// requests until they succeed; deadline is what a hang costs.
func goodput(f *linkFit, resets, hangs, deadline, b float64) float64 {
	t := f.seconds(b)
	if t <= 0 {
		return b
	}
	survive := math.Exp(-(resets + hangs) * t)
	hang := 1 - math.Exp(-hangs*t)
	cost := hang*max(deadline, t) + (1-hang)*t
	return b * survive / cost
}

// bestBytes returns the request size in [lo, hi] that maximises goodput.
// With no failures goodput only grows with size, so that is hi.
func bestBytes(f *linkFit, h *hazard, deadline, lo, hi float64) float64 {
	resets, hangs := h.rates()
	if resets+hangs == 0 || hi <= lo {
		return hi
	}
	// goodput is unimodal in b: scan a log grid, then refine the best cell by
	// golden-section search.
	const steps = 64
	ratio := math.Pow(hi/lo, 1.0/steps)
	best, bestG := lo, -1.0
	for i := 0; i <= steps; i++ {
		b := lo * math.Pow(ratio, float64(i))
		if g := goodput(f, resets, hangs, deadline, b); g > bestG {
			best, bestG = b, g
		}
	}
	a, c := max(lo, best/ratio), min(hi, best*ratio)
	const phi = 0.6180339887498949
	for range 30 {
		x1, x2 := c-phi*(c-a), a+phi*(c-a)
		if goodput(f, resets, hangs, deadline, x1) >= goodput(f, resets, hangs, deadline, x2) {
			c = x2
		} else {
			a = x1
		}
	}
	return (a + c) / 2
}
