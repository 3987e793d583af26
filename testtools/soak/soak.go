// Package soak is the crash soak behind `make soak`: a primary and two
// satellites run as real `syncagent run` processes on loopback, apps write
// continuously through each site's local API, random processes are killed
// with SIGKILL at random moments and restarted, and once everything has
// settled every site is compared with a ledger of the writes the local API
// acknowledged.
//
// Imported only by testtools/cmd/soak.
package soak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"syncagent/agent/control"
	"syncagent/testtools/agentproc"
)

// Sites and stores of the soak cluster.
const (
	SitePrimary = "primary"
	SiteA       = "sat-a" // stores a and shared
	SiteB       = "sat-b" // stores b and shared

	StoreA      = "a"      // active on sat-a only
	StoreB      = "b"      // active on sat-b only
	StoreShared = "shared" // active on both satellites
)

// Sites lists every site of the cluster, primary first.
var Sites = []string{SitePrimary, SiteA, SiteB}

// Tables the writers use: store records and central data.
const (
	tableStock = "stock_line"
	tableItem  = "item"
)

// Config bounds a soak run.
type Config struct {
	Bin         string        // the syncagent binary
	Dir         string        // state and logs; empty: a temporary directory, removed unless the run fails
	Rounds      int           // kill rounds
	MinGap      time.Duration // between kills
	MaxGap      time.Duration
	Keys        int           // records per writer
	WritePause  time.Duration // upper bound of the random pause between two writes of one writer
	DeleteRatio float64       // share of writes that delete a record
	Settle      time.Duration // how long the final drain may take
	Seed        uint64        // 0: random
	Out         io.Writer     // progress lines
}

// Result is what a run did and found.
type Result struct {
	Dir          string
	Seed         uint64
	Rounds       int
	Kills        int
	KillsBy      map[string]int
	MidSync      int // kills sent while a sync cycle had just been asked for
	Writes       int // calls made by the writers
	Acked        int // writes the local API acknowledged
	Unanswered   int // calls cut by a kill (may or may not have been committed)
	Down         int // calls that found no agent on the socket (nothing written)
	TimedOut     int
	Refused      int // the agent answered with an error
	OriginLost   int // a delete found its own acknowledged record missing on the origin
	Syncs        int
	SyncFailures int
	SetAside     int // records the satellites set aside after settling
	SettleTook   time.Duration
	Took         time.Duration
	Report
}

// writerSpec is one app writing one kind of record on one site. Writers
// that share a key space write the same records from different sites
// (contention): the records of the shared store are written by both
// satellites, and store a's by sat-a and the primary.
type writerSpec struct {
	site    string
	table   string
	store   string   // "" for central data
	keys    string   // the key space: writers with the same one write the same records
	holders []string // the sites that must hold its records
}

var writers = []writerSpec{
	{SiteA, tableStock, StoreA, "a", []string{SitePrimary, SiteA}},
	{SiteA, tableStock, StoreShared, "shared", Sites},
	{SiteB, tableStock, StoreB, "b", []string{SitePrimary, SiteB}},
	{SiteB, tableStock, StoreShared, "shared", Sites},
	{SitePrimary, tableItem, "", "central", Sites},                       // central data reaches every site
	{SitePrimary, tableStock, StoreA, "a", []string{SitePrimary, SiteA}}, // the primary and sat-a both change store a's records
}

func (w writerSpec) id(i int) string { return fmt.Sprintf("%s-%04d", w.keys, i) }

// name tells writers apart in the ledger and in the records they write.
func (w writerSpec) name() string { return w.site + "/" + orCentral(w.store) }

// contended reports whether another writer writes the same records.
func (w writerSpec) contended() bool {
	n := 0
	for _, o := range writers {
		if o.keys == w.keys {
			n++
		}
	}
	return n > 1
}

type run struct {
	cfg     Config
	cl      *cluster
	ledger  *Ledger
	version atomic.Int64
	stop    chan struct{}

	mu  sync.Mutex
	res Result
}

// Run runs the soak and returns its result; err is a failure to run it
// (not a failed check, which is in the result's Report).
func Run(ctx context.Context, cfg Config) (res Result, err error) {
	start := time.Now()
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	removeDir := false
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "syncagent-soak-"); err != nil {
			return res, err
		}
		removeDir = true
	}
	r := &run{cfg: cfg, ledger: NewLedger(), stop: make(chan struct{})}
	r.res.Dir, r.res.Seed, r.res.KillsBy = cfg.Dir, cfg.Seed, map[string]int{}
	if r.cl, err = newCluster(cfg.Bin, cfg.Dir); err != nil {
		return r.res, err
	}
	defer func() {
		r.cl.stopAll()
		res.Took = time.Since(start)
		if removeDir && err == nil && !res.Failed() {
			os.RemoveAll(cfg.Dir)
		}
	}()
	fmt.Fprintf(cfg.Out, "soak: seed %d, state and logs in %s, primary on %s\n", cfg.Seed, cfg.Dir, r.cl.addr)
	for _, n := range r.cl.nodes {
		if err := r.cl.start(ctx, n); err != nil {
			return r.res, err
		}
	}

	var wg sync.WaitGroup
	for i, w := range writers {
		wg.Add(1)
		go func() { defer wg.Done(); r.write(w, rand.New(rand.NewPCG(cfg.Seed, uint64(i)+1))) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); r.syncer(rand.New(rand.NewPCG(cfg.Seed, 100))) }()

	err = r.kills(ctx, rand.New(rand.NewPCG(cfg.Seed, 200)))
	close(r.stop)
	wg.Wait()
	if err != nil {
		return r.result(), err
	}
	if err := r.settle(ctx); err != nil {
		return r.result(), err
	}
	obs, err := r.observe(ctx)
	if err != nil {
		return r.result(), err
	}
	res = r.result()
	res.Report = r.ledger.Compare(Sites, obs)
	return res, nil
}

func (r *run) result() Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.res
}

func (r *run) count(f func(*Result)) {
	r.mu.Lock()
	f(&r.res)
	r.mu.Unlock()
}

func (r *run) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// syncer asks a random satellite for a cycle now and then, so cycles are
// frequent (the interval is a minute) and kills often land inside one.
func (r *run) syncer(rng *rand.Rand) {
	sats := []string{SiteA, SiteB}
	for !r.stopped() {
		n := r.cl.node(sats[rng.IntN(len(sats))])
		r.syncOnce(n)
		time.Sleep(time.Duration(100+rng.IntN(500)) * time.Millisecond)
	}
}

func (r *run) syncOnce(n *node) (control.Cycle, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := n.client.Sync(ctx, false)
	if err == nil && c.Error != "" {
		err = errors.New(c.Error)
	}
	r.count(func(res *Result) {
		res.Syncs++
		if err != nil {
			res.SyncFailures++
		}
	})
	return c, err
}

// kills runs the rounds: wait a random moment, SIGKILL one or two random
// processes (sometimes just after asking a satellite for a cycle), restart
// them.
func (r *run) kills(ctx context.Context, rng *rand.Rand) error {
	for round := 1; round <= r.cfg.Rounds; round++ {
		gap := r.cfg.MinGap + time.Duration(rng.Int64N(int64(r.cfg.MaxGap-r.cfg.MinGap)+1))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(gap):
		}
		for _, n := range r.cl.nodes {
			if n.exited() {
				return fmt.Errorf("%s exited by itself before round %d; log:\n%s", n.name, round, agentproc.Tail(n.log, 30))
			}
		}
		victims := []*node{r.cl.nodes[rng.IntN(len(r.cl.nodes))]}
		if rng.IntN(4) == 0 {
			other := r.cl.nodes[rng.IntN(len(r.cl.nodes))]
			if other != victims[0] {
				victims = append(victims, other)
			}
		}
		how := ""
		if rng.IntN(2) == 0 {
			sat := r.cl.node([]string{SiteA, SiteB}[rng.IntN(2)])
			go r.syncOnce(sat)
			time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
			how = fmt.Sprintf(" (%s was asked to sync)", sat.name)
			r.count(func(res *Result) { res.MidSync++ })
		}
		var names []string
		for _, v := range victims {
			if err := r.cl.kill(v); err != nil {
				return err
			}
			names = append(names, v.name)
			r.count(func(res *Result) { res.Kills++; res.KillsBy[v.name]++ })
		}
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		t0 := time.Now()
		for _, v := range victims {
			if err := r.cl.start(ctx, v); err != nil {
				return err
			}
		}
		r.count(func(res *Result) { res.Rounds = round })
		st := r.result()
		fmt.Fprintf(r.cfg.Out, "round %d/%d: SIGKILL %s%s, back in %s; writes %d, acknowledged %d\n",
			round, r.cfg.Rounds, strings.Join(names, " and "), how, time.Since(t0).Round(time.Millisecond), st.Writes, st.Acked)
	}
	return nil
}

// settle drains everything: cycles on each satellite until outboxes and the
// primary's queues are empty twice in a row, with no cycle failing.
func (r *run) settle(ctx context.Context) error {
	t0 := time.Now()
	deadline := t0.Add(r.cfg.Settle)
	clean := 0
	var last string
	for clean < 2 {
		if time.Now().After(deadline) {
			return fmt.Errorf("did not settle within %s: %s", r.cfg.Settle, last)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var dirty []string
		for _, name := range []string{SiteA, SiteB} {
			if _, err := r.syncOnce(r.cl.node(name)); err != nil {
				dirty = append(dirty, fmt.Sprintf("%s sync: %v", name, err))
			}
		}
		aside := 0
		for _, n := range r.cl.nodes {
			qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			st, err := n.client.Status(qctx)
			cancel()
			if err != nil {
				dirty = append(dirty, fmt.Sprintf("%s status: %v", n.name, err))
				continue
			}
			if n.name != SitePrimary && st.OutboxLength > 0 {
				dirty = append(dirty, fmt.Sprintf("%s outbox %d", n.name, st.OutboxLength))
			}
			aside += st.SetAside
			for _, q := range st.Queues {
				if q.QueueLength > 0 {
					dirty = append(dirty, fmt.Sprintf("primary queue of %s: %d", q.User, q.QueueLength))
				}
			}
		}
		r.count(func(res *Result) { res.SetAside = aside })
		if len(dirty) == 0 {
			clean++
		} else {
			clean, last = 0, strings.Join(dirty, "; ")
			time.Sleep(200 * time.Millisecond)
		}
	}
	r.count(func(res *Result) { res.SettleTook = time.Since(t0) })
	return nil
}

// observe lists every record of every table on every site.
func (r *run) observe(ctx context.Context) (Observation, error) {
	obs := Observation{}
	for _, n := range r.cl.nodes {
		for _, table := range []string{tableStock, tableItem} {
			after := ""
			for {
				qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				recs, err := n.client.ListRecords(qctx, table, after, 1000)
				cancel()
				if err != nil {
					return nil, fmt.Errorf("list %s on %s: %w", table, n.name, err)
				}
				for _, rec := range recs {
					obs.Add(n.name, Key{table, rec.ID}, observed(rec.Data))
				}
				if len(recs) < 1000 {
					break
				}
				after = recs[len(recs)-1].ID
			}
		}
	}
	return obs, nil
}

// observed reads the version out of a record's data; data that does not
// carry one reads as version -1, which no write allows.
func observed(data json.RawMessage) State {
	var d struct {
		V *int64 `json:"v"`
	}
	if json.Unmarshal(data, &d) != nil || d.V == nil {
		return State{Present: true, V: -1}
	}
	return State{Present: true, V: *d.V}
}
