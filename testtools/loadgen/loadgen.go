// Package loadgen plays many sites against a primary over real HTTP, each
// with its own user, password and hardware ID, running full v5 cycles
// (GET site, a push of a few records of its stores ending with the empty
// batch, site_status, central pull, queue pull, acknowledgement), at an
// open-loop rate, and measures what a central team would: cycles per
// second, latency per endpoint, records accepted and delivered, errors.
// Test tooling for `make bench-primary`; nothing that ships imports it.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Site is one simulated site.
type Site struct {
	ID       int
	User     string
	Password string // the password's SHA-256, as sent
	HWID     string
	Stores   []string
	seq      atomic.Uint64
	cursor   atomic.Uint64 // of central data: where its next pull starts
	busy     atomic.Bool
}

// Config is a run.
type Config struct {
	URLs     []string // primaries (nodes or a load balancer); sites are spread over them
	Sites    []*Site
	Rate     float64       // cycles started per second, over all sites
	Duration time.Duration // how long cycles are started
	Records  int           // records a push carries
	Workers  int           // cycles in flight at most
	Timeout  time.Duration // per request
	Payload  int           // bytes of each record's data
	PushOnly bool          // a cycle is one push, nothing else (ingest)
	Login    bool          // a cycle is a login (GET site), nothing else
	ToHead   bool          // with Login: the login also moves the site's central cursor to the head of the log
	Each     bool          // every site once, in order, instead of sites at random for Duration
	Distinct bool          // every record pushed is a new one (otherwise each site updates 50 records over and over)
	Limit    int64         // stop starting cycles once this many records were accepted (0: none)
	// Ledger, when set (with Distinct), keeps what was accepted and what
	// each site got, for Ledger.Check after Drain.
	Ledger *Ledger
}

// Result is what a run measured.
type Result struct {
	Cycles, Failed   int
	Took             time.Duration
	Accepted         int64 // records pushed and taken
	Delivered        int64 // records pulled
	Errors           map[string]int
	Latency          map[string][]time.Duration // per endpoint, sorted
	Skipped          int                        // cycles not started: the site's previous cycle still ran, or no worker was free
	Failovers        int                        // requests sent again to another node after the link to one failed
	FirstErrors      []string
	CyclesPerSecond  float64
	AcceptedPerSec   float64
	DeliveredPerSec  float64
	MaxLatency       time.Duration
	WorstEndpointP99 time.Duration
}

type run struct {
	cfg     Config
	client  *http.Client
	mu      sync.Mutex
	latency map[string][]time.Duration
	errors  map[string]int
	first   []string
	acc     atomic.Int64
	deliv   atomic.Int64
	fail    atomic.Int64 // failovers
}

// Run starts cycles at cfg.Rate for cfg.Duration, waits for them, and
// returns the figures.
func Run(ctx context.Context, cfg Config) Result {
	if cfg.Workers <= 0 {
		cfg.Workers = 256
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 25 * time.Second
	}
	r := &run{cfg: cfg, latency: map[string][]time.Duration{}, errors: map[string]int{},
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Workers, MaxConnsPerHost: cfg.Workers, IdleConnTimeout: time.Minute}}}
	sem := make(chan struct{}, cfg.Workers)
	var wg sync.WaitGroup
	var cycles, failed, skipped atomic.Int64
	start := time.Now()
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	next := start
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; time.Since(start) < cfg.Duration && ctx.Err() == nil && (cfg.Limit == 0 || r.acc.Load() < cfg.Limit); i++ {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		s := cfg.Sites[rng.IntN(len(cfg.Sites))]
		if cfg.Each {
			if i == len(cfg.Sites) {
				break
			}
			s = cfg.Sites[i]
			sem <- struct{}{} // every site gets its turn: wait for a worker
			s.busy.Store(true)
		} else {
			if !s.busy.CompareAndSwap(false, true) {
				skipped.Add(1)
				continue
			}
			select {
			case sem <- struct{}{}:
			default:
				s.busy.Store(false)
				skipped.Add(1)
				continue
			}
		}
		wg.Go(func() {
			defer func() { <-sem; s.busy.Store(false) }()
			if err := r.cycle(ctx, s); err != nil {
				failed.Add(1)
				r.noteError(err)
			}
			cycles.Add(1)
		})
	}
	wg.Wait()
	took := time.Since(start)
	res := Result{Cycles: int(cycles.Load()), Failed: int(failed.Load()), Skipped: int(skipped.Load()), Took: took,
		Accepted: r.acc.Load(), Delivered: r.deliv.Load(), Errors: r.errors, Latency: r.latency, FirstErrors: r.first, Failovers: int(r.fail.Load())}
	for ep, ds := range res.Latency {
		slices.Sort(ds)
		res.Latency[ep] = ds
		res.MaxLatency = max(res.MaxLatency, ds[len(ds)-1])
		res.WorstEndpointP99 = max(res.WorstEndpointP99, Percentile(ds, 0.99))
	}
	res.CyclesPerSecond = float64(res.Cycles) / took.Seconds()
	res.AcceptedPerSec = float64(res.Accepted) / took.Seconds()
	res.DeliveredPerSec = float64(res.Delivered) / took.Seconds()
	return res
}

// Percentile of sorted durations.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

func (r *run) noteError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := err.Error()
	if i := strings.Index(key, ":"); i > 0 {
		key = key[:i]
	}
	r.errors[key]++
	if len(r.first) < 5 {
		r.first = append(r.first, err.Error())
	}
}

// cycle is one site's full v5 cycle.
func (r *run) cycle(ctx context.Context, s *Site) error {
	if !r.cfg.PushOnly {
		if err := r.call(ctx, s, "GET", "site", "", nil, nil); err != nil {
			return err
		}
	}
	if r.cfg.Login && r.cfg.ToHead {
		return r.skipCentral(ctx, s)
	}
	if r.cfg.Login {
		return nil
	}
	batch := make([]map[string]any, r.cfg.Records)
	pad := strings.Repeat("x", max(0, r.cfg.Payload-60))
	ids, stores := make([]string, len(batch)), make([]string, len(batch))
	for i := range batch {
		n := s.seq.Add(1)
		store := s.Stores[int(n)%len(s.Stores)]
		id := fmt.Sprintf("%s-%d-%d", store, s.ID, n%50)
		if r.cfg.Distinct {
			id = fmt.Sprintf("%s-%d-%d", store, s.ID, n)
		}
		ids[i], stores[i] = id, store
		batch[i] = map[string]any{"syncOutId": fmt.Sprintf("%d-%d", s.ID, n), "tableName": "item_line", "recordId": id,
			"action": "Update", "recordData": map[string]any{"store_ID": store, "quantity": n, "note": pad}}
	}
	var pushed struct {
		IntegrationStarted bool `json:"integrationStarted"`
		Refused            []struct {
			SyncOutID string `json:"syncOutId"`
		} `json:"refused"`
	}
	if err := r.call(ctx, s, "POST", "queued_records", "", map[string]any{"queueLength": len(batch), "data": batch}, &pushed); err != nil {
		return err
	}
	r.acc.Add(int64(len(batch) - len(pushed.Refused)))
	if r.cfg.Ledger != nil {
		refused := map[string]bool{}
		for _, x := range pushed.Refused {
			refused[x.SyncOutID] = true
		}
		for i, id := range ids {
			if !refused[batch[i]["syncOutId"].(string)] {
				r.cfg.Ledger.noteAccepted(s.ID, stores[i], id)
			}
		}
	}
	if r.cfg.PushOnly {
		return nil
	}
	if err := r.call(ctx, s, "POST", "queued_records", "", map[string]any{"queueLength": 0, "data": []any{}}, nil); err != nil {
		return err
	}
	if err := r.call(ctx, s, "GET", "site_status", "", nil, nil); err != nil {
		return err
	}
	var central struct {
		MaxCursor uint64 `json:"maxCursor"`
		Data      []struct {
			ID uint64 `json:"ID"`
		} `json:"data"`
	}
	// From the site's cursor, which moves on as a satellite's does.
	if err := r.call(ctx, s, "GET", "central_records", fmt.Sprintf("cursor=%d&limit=100", s.cursor.Load()), nil, &central); err != nil {
		return err
	}
	if n := len(central.Data); n > 0 {
		s.cursor.Store(central.Data[n-1].ID)
	} else if central.MaxCursor > s.cursor.Load() {
		s.cursor.Store(central.MaxCursor)
	}
	_, err := r.pullQueue(ctx, s)
	return err
}

// skipCentral moves the site's central cursor to the head of the log, as a
// site that has been running for a while would have it.
func (r *run) skipCentral(ctx context.Context, s *Site) error {
	var central struct {
		MaxCursor uint64 `json:"maxCursor"`
	}
	if err := r.call(ctx, s, "GET", "central_records", "cursor=0&limit=1", nil, &central); err != nil {
		return err
	}
	s.cursor.Store(central.MaxCursor)
	return nil
}

// pullQueue pulls one page of the site's queue and acknowledges it; it
// returns how many entries came.
func (r *run) pullQueue(ctx context.Context, s *Site) (int, error) {
	var queued struct {
		QueueLength int `json:"queueLength"`
		Data        []struct {
			SyncOutID string `json:"syncOutId"`
			RecordID  string `json:"recordId"`
		} `json:"data"`
	}
	if err := r.call(ctx, s, "GET", "queued_records", "limit=500", nil, &queued); err != nil {
		return 0, err
	}
	if len(queued.Data) == 0 {
		return 0, nil
	}
	ids := make([]string, len(queued.Data))
	for i, q := range queued.Data {
		ids[i] = q.SyncOutID
	}
	r.deliv.Add(int64(len(ids)))
	if err := r.call(ctx, s, "POST", "acknowledged_records", "", map[string]any{"syncIDs": ids}, nil); err != nil {
		return 0, err
	}
	if r.cfg.Ledger != nil {
		for _, q := range queued.Data {
			r.cfg.Ledger.noteAcked(s, q.RecordID)
		}
	}
	return len(ids), nil
}

// call sends one request to the site's node; when the link to it fails
// (refused, reset, cut mid-answer: a node down) it sends the same request
// to the next node, as a load balancer would, so a site of a dead node goes
// on. An HTTP error answer is not sent again.
func (r *run) call(ctx context.Context, s *Site, method, endpoint, query string, in, out any) error {
	var body []byte
	if in != nil {
		body, _ = json.Marshal(in)
	}
	first := s.ID % len(r.cfg.URLs)
	var err error
	for i := range len(r.cfg.URLs) {
		if i > 0 {
			r.fail.Add(1)
		}
		var linkFailed bool
		linkFailed, err = r.callOne(ctx, s, r.cfg.URLs[(first+i)%len(r.cfg.URLs)], method, endpoint, query, body, out)
		if !linkFailed || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func (r *run) callOne(ctx context.Context, s *Site, base, method, endpoint, query string, in []byte, out any) (linkFailed bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	u := base + "/sync/v5/" + endpoint
	if query != "" {
		u += "?" + query
	}
	var body io.Reader
	if in != nil {
		body = bytes.NewReader(in)
	}
	req, _ := http.NewRequestWithContext(ctx, method, u, body)
	req.SetBasicAuth(s.User, s.Password)
	req.Header.Set("msupply-site-uuid", s.HWID)
	req.Header.Set("version", "14")
	req.Header.Set("app-name", "loadgen")
	start := time.Now()
	resp, err := r.client.Do(req)
	key := method + " " + endpoint
	if err != nil {
		return true, fmt.Errorf("%s: %w", key, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if err != nil {
		return true, fmt.Errorf("%s: %w", key, err)
	}
	r.mu.Lock()
	r.latency[key] = append(r.latency[key], took)
	r.mu.Unlock()
	if resp.StatusCode >= 300 {
		return false, fmt.Errorf("%s %d: %.200s", key, resp.StatusCode, b)
	}
	if out != nil {
		return false, json.Unmarshal(b, out)
	}
	return false, nil
}

// Endpoints lists the endpoints measured, in a stable order.
func (res Result) Endpoints() []string {
	var out []string
	for ep := range res.Latency {
		out = append(out, ep)
	}
	sort.Strings(out)
	return out
}

// ParseRate reads "133" or "133/s".
func ParseRate(s string) (float64, error) {
	return strconv.ParseFloat(strings.TrimSuffix(s, "/s"), 64)
}
