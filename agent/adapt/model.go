package adapt

import "math"

// The link model: what a request costs and how likely it is to fail.
//
// A request carrying b bytes (both directions) takes T(b) = RTT + b/throughput.
// RTT and throughput come from linkFit, a least-squares line through recent
// successful requests. Failures are a hazard per second of exposure (time
// spent in requests): a request survives with probability exp(-h·T(b)). A
// reset wastes T(b); a request that hangs wastes its timeout (Sizer.Timeout).

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

// smallRequestBytes is the size under which a first request is taken to be
// all round trip.
const smallRequestBytes = 4096

// add fits one successful request of b bytes that took t seconds.
func (f *linkFit) add(b, t float64) {
	f.W, f.B, f.T, f.BB, f.BT = f.W*fitDecay+1, f.B*fitDecay+b, f.T*fitDecay+t, f.BB*fitDecay+b*b, f.BT*fitDecay+b*t
	if !f.Seen {
		// One request cannot split RTT from transfer time. A small one (an
		// empty page, a status call) is nearly all round trip: taking half
		// of it as transfer would teach a crawl of a link and cap the next
		// batches at a few hundred bytes. A larger one starts halfway.
		f.Seen = true
		f.RTT, f.PerByte = t, minSecondsPerByte
		if b >= smallRequestBytes {
			f.RTT, f.PerByte = t/2, t/2/b
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

// sizeStats keeps, per band of request sizes (√2 apart), how many requests
// of that size succeeded and failed lately. The hazard model assumes
// failures strike at a steady rate; a link whose connections break after
// some 30 KB does not, and the bands show it: sizes below the break never
// fail. Each band's survival blends its record with the model's prediction
// (so a size never tried is judged by the model), and survival is then made
// to fall with size, as it must on one link: a larger request is never
// safer than a smaller one.
type sizeStats struct {
	OK, Failed [sizeBands]float64 // decayed counts
}

const (
	sizeBands = 48   // up to 2^24 B = 16 MiB; larger sizes share the top band
	sizeDecay = 0.98 // per observation: a band's record fades over ~50 requests
	sizePrior = 3    // the model's prediction counts as this many requests
)

func bandOf(b float64) int {
	if b < 1 {
		return 0
	}
	return min(sizeBands-1, int(2*math.Log2(b)))
}

// bandMid is the geometric middle of band i.
func bandMid(i int) float64 { return math.Pow(2, (float64(i)+0.5)/2) }

// bandTop is the largest size in band i.
func bandTop(i int) float64 { return math.Floor(math.Pow(2, float64(i+1)/2)) - 1 }

func (z *sizeStats) add(b float64, ok bool) {
	for i := range sizeBands {
		z.OK[i] *= sizeDecay
		z.Failed[i] *= sizeDecay
	}
	if ok {
		z.OK[bandOf(b)]++
	} else {
		z.Failed[bandOf(b)]++
	}
}

// bandSurvival is the survival chance of each band, non-increasing in size.
type bandSurvival struct {
	p     [sizeBands]float64 // fitted survival at the band's middle
	model func(b float64) float64
}

// fit blends each band's record with the model and makes the result fall
// with size (pool-adjacent-violators, weighted by the requests behind each
// band).
func (z *sizeStats) fit(model func(b float64) float64) *bandSurvival {
	s := &bandSurvival{model: model}
	type block struct{ p, w float64 }
	var blocks []block
	var sizes []int // bands per block
	for i := range sizeBands {
		m := model(bandMid(i))
		n := z.OK[i] + z.Failed[i]
		blocks = append(blocks, block{(z.OK[i] + sizePrior*m) / (n + sizePrior), n + sizePrior})
		sizes = append(sizes, 1)
		for k := len(blocks) - 1; k > 0 && blocks[k].p > blocks[k-1].p; k-- {
			a, b := blocks[k-1], blocks[k]
			blocks[k-1] = block{(a.p*a.w + b.p*b.w) / (a.w + b.w), a.w + b.w}
			sizes[k-1] += sizes[k]
			blocks, sizes = blocks[:k], sizes[:k]
		}
	}
	i := 0
	for k, b := range blocks {
		for range sizes[k] {
			s.p[i] = b.p
			i++
		}
	}
	return s
}

// survival is the band's fitted chance, shaded within the band as the model
// shades it.
func (s *bandSurvival) survival(b float64) float64 {
	i := bandOf(b)
	m := s.model(bandMid(i))
	if m <= 0 {
		return s.p[i]
	}
	return min(1, s.p[i]*s.model(b)/m)
}

// planner computes expected goodput from the fitted link, the hazard and,
// when set, the size bands.
type planner struct {
	fit           *linkFit
	bands         *bandSurvival           // nil: the model alone
	resets, hangs float64                 // per second of exposure
	timeout       func(b float64) float64 // seconds a hung b-byte request costs
}

// modelSurvival is the hazard model's chance that a b-byte request survives.
func (p planner) modelSurvival(b float64) float64 {
	return math.Exp(-(p.resets + p.hangs) * p.fit.seconds(b))
}

// goodput is the expected useful bytes per second when sending b-byte
// requests until they succeed. A reset wastes the request's time, a hang
// its timeout.
func (p planner) goodput(b float64) float64 {
	t := p.fit.seconds(b)
	if t <= 0 {
		return b
	}
	survive := p.modelSurvival(b)
	if p.bands != nil {
		survive = p.bands.survival(b)
	}
	hang := 1 - math.Exp(-p.hangs*t)
	cost := hang*max(p.timeout(b), t) + (1-hang)*t
	return b * survive / cost
}

// bestBytes returns the request size in [lo, hi] that maximises goodput.
// With no failures goodput only grows with size, so that is hi.
func bestBytes(f *linkFit, h *hazard, z *sizeStats, timeout func(b float64) float64, lo, hi float64) float64 {
	resets, hangs := h.rates()
	if resets+hangs == 0 || hi <= lo {
		return hi
	}
	model := planner{fit: f, resets: resets, hangs: hangs, timeout: timeout}
	p := model
	p.bands = z.fit(model.modelSurvival)
	// Candidates: a log grid, the top of every band (survival steps down
	// between bands), and the model's own optimum.
	best, bestG := hi, p.goodput(hi)
	try := func(b float64) {
		if b >= lo && b <= hi {
			if g := p.goodput(b); g > bestG {
				best, bestG = b, g
			}
		}
	}
	const steps = 48
	ratio := math.Pow(hi/lo, 1.0/steps)
	for i := 0; i <= steps; i++ {
		try(lo * math.Pow(ratio, float64(i)))
	}
	for i := bandOf(lo); i <= bandOf(hi); i++ {
		try(bandTop(i))
	}
	try(modelBest(model, lo, hi))
	return best
}

// modelBest maximises the pure model's goodput, which is unimodal in b, by
// golden-section search on a log scale.
func modelBest(p planner, lo, hi float64) float64 {
	a, c := math.Log(lo), math.Log(hi)
	const phi = 0.6180339887498949
	for range 30 {
		x1, x2 := c-phi*(c-a), a+phi*(c-a)
		if p.goodput(math.Exp(x1)) >= p.goodput(math.Exp(x2)) {
			c = x2
		} else {
			a = x1
		}
	}
	return math.Exp((a + c) / 2)
}
