// Command linkbench measures how fast a satellite drains its queues over
// emulated links, with the adaptive request size and with fixed ones (issue
// 4). A real primary and a real satellite run in this process, each with
// its own BuntDB files in a temporary directory and real HTTP on loopback;
// the satellite's traffic passes through an in-process toxiproxy that adds
// latency, jitter, a bandwidth limit, connection resets and hung requests.
//
// For each profile and each request size it pushes N records from the
// satellite's outbox and then pulls N records queued for it, running sync
// cycles until both are empty (a failed cycle is retried after a short
// pause, as the daemon would), and prints a table. The last line is
// "auto/best = X.XX": the worst ratio, over the profiles, of auto's time to
// the best fixed size's.
//
//	go run ./testtools/cmd/linkbench                      # every built-in profile
//	go run ./testtools/cmd/linkbench --profile 3g --sizes auto,50,200
//	go run ./testtools/cmd/linkbench --latency 600ms --kbps 20 --reset-after 30000
//
// This is the only package that imports toxiproxy; nothing of it reaches
// the syncagent binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"sync"
	"time"

	"syncagent/agent/passwd"
	"syncagent/agent/satellite"
	"syncagent/agent/syncapi"
	"syncagent/testtools/linkbench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	profiles []linkbench.Profile
	sizes    []int
	timeout  time.Duration
	pause    time.Duration
	stall    time.Duration
	seed     uint64
	keep     bool
	verbose  bool
	trace    bool
	warm     bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("linkbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: linkbench [flags]\n\nDrains the same queues over emulated links with request_size auto and fixed sizes, and compares them.\nBuilt-in profiles:")
		for _, p := range linkbench.Builtin() {
			fmt.Fprintln(stderr, "  "+p.Describe())
		}
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	var (
		profile     = fs.String("profile", "", "profiles to run, comma-separated (default: all built-in); with link flags, the one profile they modify")
		latency     = fs.Duration("latency", 0, "round trip added by the link (custom profile)")
		jitter      = fs.Duration("jitter", 0, "± variation of the latency (custom profile)")
		kbps        = fs.Int("kbps", 0, "bandwidth each way in kB/s, 0 unlimited (custom profile)")
		resetAfter  = fs.Int("reset-after", 0, "reset each connection after about this many bytes each way, uniform in [½, 1½]×; 0 never (custom profile)")
		timeoutProb = fs.Float64("timeout-prob", 0, "chance that a request hangs until the client's deadline (custom profile)")
		records     = fs.Int("records", 0, "records pushed, and as many pulled (default: per profile)")
		recordBytes = fs.Int("record-bytes", linkbench.DefaultRecordBytes, "bytes of JSON data per record")
		repeat      = fs.Int("repeat", 1, "runs of each size, in fresh state each, the median counting (default: 3 on lan, 1 elsewhere)")
		sizes       = fs.String("sizes", "auto,10,50,200,1000,5000", "request sizes to compare: auto and numbers of records")
		o           options
	)
	fs.DurationVar(&o.timeout, "timeout", syncapi.DefaultTimeout, "deadline of each request, the daemon's (once the link is known a request gets a few times its expected time, at least 5s, within this; the sizer plans requests within half of it)")
	fs.DurationVar(&o.pause, "pause", 500*time.Millisecond, "pause after a failed cycle before the next (the daemon's first backoff averages this)")
	fs.DurationVar(&o.stall, "stall", 60*time.Second, "a run that drains nothing for this long is stopped and reported as stalled")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the data and of the link's random resets and hangs (toxiproxy's jitter has its own)")
	fs.BoolVar(&o.keep, "keep", false, "keep the state directories")
	fs.BoolVar(&o.warm, "warm", true, "after auto's drain, drain a second round in the same state: auto (warm), for information, not in auto/best")
	fs.BoolVar(&o.verbose, "v", false, "log the primary and the satellite to stderr")
	fs.BoolVar(&o.trace, "trace", false, "print every request of the timed drains to stderr")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var ov linkbench.Overrides
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "latency":
			ov.Latency = latency
		case "jitter":
			ov.Jitter = jitter
		case "kbps":
			ov.KBps = kbps
		case "reset-after":
			ov.ResetAfter = resetAfter
		case "timeout-prob":
			ov.TimeoutProb = timeoutProb
		case "records":
			ov.Records = records
		case "record-bytes":
			ov.RecordBytes = recordBytes
		case "repeat":
			ov.Repeat = repeat
		}
	})
	var err error
	if o.profiles, err = linkbench.Select(*profile, ov); err != nil {
		return o, err
	}
	if o.sizes, err = linkbench.ParseSizes(*sizes); err != nil {
		return o, err
	}
	if o.timeout < 100*time.Millisecond || o.pause < 0 || o.stall < o.timeout {
		return o, errors.New("--timeout must be at least 100ms, --pause not negative, and --stall at least --timeout")
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "linkbench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	passwd.Iterations = 1000 // the format is the same; setting up each run stays fast
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	base, err := os.MkdirTemp("", "linkbench-")
	if err != nil {
		fmt.Fprintln(stderr, "linkbench:", err)
		return 1
	}
	if o.keep {
		fmt.Fprintln(stderr, "linkbench: state in", base)
	} else {
		defer os.RemoveAll(base)
	}

	var runs []linkbench.Run
	for _, p := range o.profiles {
		fmt.Fprintf(stderr, "linkbench: %s\n", p.Describe())
		var fastest time.Duration // of the finished runs of this profile so far
		for _, size := range o.sizes {
			var cutoff time.Duration
			// The flaky baseline runs to the end: the target is that it does
			// not stall.
			if fastest > 0 && (p.Name != linkbench.FlakyProfile || size != linkbench.FlakyBaseline) {
				cutoff = linkbench.CutoffFactor * fastest
			}
			var cold, warm []linkbench.Run
			for range p.Repeat {
				rs, err := runSize(ctx, o, p, size, base, cutoff, log, stderr)
				if err != nil {
					fmt.Fprintf(stderr, "linkbench: %s size %s: %v\n", p.Name, linkbench.SizeName(size), err)
					return 1
				}
				for _, r := range rs {
					if r.Finished() && (fastest == 0 || r.Elapsed < fastest) {
						fastest = r.Elapsed
					}
					if r.Warm {
						warm = append(warm, r)
					} else {
						cold = append(cold, r)
					}
				}
			}
			runs = append(runs, linkbench.Median(cold))
			if len(warm) > 0 {
				runs = append(runs, linkbench.Median(warm))
			}
		}
	}
	fmt.Fprintf(stdout, "# linkbench: time to push N records and pull N back, per request size; request deadline %s, %s pause after a failed cycle, fresh state per run\n", o.timeout, o.pause)
	linkbench.WriteReport(stdout, o.profiles, runs)
	return 0
}

// runSize drains one profile at one request size in a fresh world. With
// --warm, auto drains a second round in the same world: its sizers start
// from what the first round taught them.
func runSize(ctx context.Context, o options, p linkbench.Profile, size int, base string, cutoff time.Duration, log *slog.Logger, stderr io.Writer) ([]linkbench.Run, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	label := fmt.Sprintf("%s size %s", p.Name, linkbench.SizeName(size))
	dir, err := os.MkdirTemp(base, p.Name+"-"+linkbench.SizeName(size)+"-")
	if err != nil {
		return nil, err
	}
	// Every size of a profile meets the same data and the same random
	// resets and hangs.
	seed := profileSeed(o.seed, p.Name)
	w, err := newWorld(worldConfig{dir: dir, name: label, profile: p, size: size, timeout: o.timeout, seed: seed, log: log})
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if err := w.introduce(ctx); err != nil {
		return nil, err
	}
	if err := w.check(ctx, o.pause); err != nil {
		return nil, err
	}
	rounds := 1
	if size == linkbench.Auto && o.warm {
		rounds = 2
	}
	var runs []linkbench.Run
	for round := range rounds {
		if round > 0 {
			label = fmt.Sprintf("%s size auto (warm)", p.Name)
		}
		r, err := drain(ctx, o, w, p, round, label, cutoff, stderr)
		if err != nil {
			return nil, err
		}
		r.Size, r.Warm = size, round > 0
		runs = append(runs, r)
		if !r.Finished() {
			break
		}
	}
	return runs, nil
}

// drain fills the world with one round of records and times their drain.
func drain(ctx context.Context, o options, w *world, p linkbench.Profile, round int, label string, cutoff time.Duration, stderr io.Writer) (linkbench.Run, error) {
	gz, err := w.fill(p, profileSeed(o.seed, p.Name), round)
	if err != nil {
		return linkbench.Run{}, err
	}
	if p.Initial {
		// The timed drain is a first sync: initialise, then pull
		// everything the primary queues for the site.
		if _, err := w.sat.Generate(ctx, true); err != nil {
			return linkbench.Run{}, err
		}
	}
	w.stats.reset()
	w.link.state.delivered.Store(0)
	total := w.remaining()
	start := time.Now()
	w.trace = nil
	if o.trace {
		w.trace = func(ex syncapi.Exchange) {
			outcome := "ok"
			if ex.Err != nil {
				outcome = ex.Err.Error()
			}
			fmt.Fprintf(stderr, "linkbench: %s %7.2fs %-20s sent %7d recv %7d  %6.2fs  %s\n", label,
				time.Since(start).Seconds(), ex.Endpoint, ex.Sent, ex.Received, ex.Elapsed.Seconds(), outcome)
		}
	}

	setAside := 0
	d := linkbench.Drainer{
		Cycle: func(ctx context.Context) error {
			res := w.sat.Cycle(ctx)
			setAside += res.SetAside
			return res.Err
		},
		Remaining:  w.remaining,
		Pause:      o.pause,
		StallAfter: o.stall,
		Cutoff:     cutoff,
		Progress: func(left int, elapsed time.Duration) {
			fmt.Fprintf(stderr, "linkbench: %-24s %5d/%d left  %4d requests  %3d failed  %5.1fs\n",
				label, left, total, w.stats.requests.Load(), w.stats.failed.Load(), elapsed.Seconds())
		},
		ProgressEvery: 5 * time.Second,
	}
	var eta etaReadings
	stopETA := func() {}
	if p.Initial {
		stopETA = eta.watch(w.sat)
	}
	res := d.Run(ctx)
	stopETA()
	if ctx.Err() != nil {
		return linkbench.Run{}, ctx.Err()
	}
	if res.Stalled {
		fmt.Fprintf(stderr, "linkbench: %s stalled: nothing drained for %s; last error: %v\n", label, o.stall, res.LastErr)
	}
	if res.Cut {
		fmt.Fprintf(stderr, "linkbench: %s cut at %s (%d× the fastest run so far), %d left\n", label, cutoff, linkbench.CutoffFactor, res.Remaining)
	}
	return linkbench.Run{
		Profile: p.Name, Elapsed: res.Elapsed,
		Requests: int(w.stats.requests.Load()), WireBytes: w.link.state.delivered.Load(),
		FailedRequests: int(w.stats.failed.Load()), Hung: int(w.stats.hung.Load()),
		FailedCycles: res.FailedCycles, SetAside: setAside, Stalled: res.Stalled, Cut: res.Cut, Remaining: res.Remaining,
		Floor: floor(p, gz), GzBytes: gz, ETAWorst: eta.worst(start.Add(res.Elapsed), label, stderr), ETAReadings: len(eta.at),
	}, nil
}

// etaReadings are the time left a first sync's progress said, read twice
// a second once a tenth of it was done.
type etaReadings struct {
	mu   sync.Mutex
	at   []time.Time
	left []time.Duration
}

func (e *etaReadings) watch(sat *satellite.Satellite) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if fs := sat.Status().FirstSync; fs != nil && fs.Total > 0 && fs.Left > 0 && fs.Done*10 >= fs.Total {
				e.mu.Lock()
				e.at, e.left = append(e.at, time.Now()), append(e.left, fs.Left)
				e.mu.Unlock()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// worst is the largest error of a reading against the time the drain
// really took from then (end), of the readings with at least 10 s to go.
// Every tenth reading goes to stderr: shown, and really left.
func (e *etaReadings) worst(end time.Time, label string, stderr io.Writer) float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := math.NaN()
	for i, at := range e.at {
		actual := end.Sub(at)
		if i%10 == 0 {
			fmt.Fprintf(stderr, "linkbench: %s time left shown %v, really %v\n", label, e.left[i], actual.Round(time.Second))
		}
		if actual < 10*time.Second {
			continue
		}
		x := math.Abs(e.left[i].Seconds()-actual.Seconds()) / actual.Seconds()
		if math.IsNaN(w) || x > w {
			w = x
		}
	}
	return w
}

// floor is the link floor of an Initial profile's pull (0 otherwise).
func floor(p linkbench.Profile, gz int64) time.Duration {
	if !p.Initial {
		return 0
	}
	return p.Floor(gz)
}

func profileSeed(seed uint64, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return seed ^ h.Sum64()
}
