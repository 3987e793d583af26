// Command localbench measures what an app on the box waits for when it
// writes (`make bench-local`) and prints a table:
//
//   - single-record puts (PUT /v1/records/{table}/{id}) from 1, 16 and 64
//     concurrent writers: puts/s, p50 and p99 latency;
//   - batch writes (POST /v1/records, 10,000 records a request) from one
//     app, and from two at once: records/s;
//   - in the same run and directory, the baseline a put without group
//     commit cannot beat: one append and one fsync per record, and the
//     ratio of the 16-writer figure to it.
//
// The agent is the real binary, run as a satellite in a temporary
// directory (its primary is a closed port, so nothing drains the outbox),
// spoken to over its control socket exactly as an app would. Records are
// about 300 bytes of store data.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"syncagent/testtools/agentproc"
	"syncagent/testtools/benchtable"
)

// Targets from issue 13.
const (
	putsTarget   = 30_000
	ratioTarget  = 5.0
	batchTarget  = 150_000
	p99Target    = 5 * time.Millisecond
	batchRecords = 10_000
)

func main() {
	bin := flag.String("bin", "bin/syncagent", "the syncagent binary to run")
	dir := flag.String("dir", "", "directory for the datafile and the baseline file (default: a temporary one; the same disk is what matters)")
	dur := flag.Duration("duration", 5*time.Second, "how long each measurement runs")
	writers := flag.String("writers", "1,16,64", "concurrent single-record writers, comma-separated")
	batches := flag.Int("batches", 20, "batch requests of 10,000 records to time")
	client := flag.String("client", "raw", "the apps' HTTP client: raw (a lean HTTP/1.1 client, as a C or Rust app has) or go (Go's net/http)")
	flag.Parse()
	if *client != "raw" && *client != "go" {
		fmt.Fprintln(os.Stderr, "localbench: -client must be raw or go")
		os.Exit(2)
	}
	if err := run(*bin, *dir, *dur, *writers, *batches, *client); err != nil {
		fmt.Fprintln(os.Stderr, "localbench:", err)
		os.Exit(1)
	}
}

func run(bin, dir string, dur time.Duration, writerList string, batches int, client string) error {
	if dir == "" {
		d, err := os.MkdirTemp(".", ".localbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	dir, _ = filepath.Abs(dir)
	a, err := startAgent(bin, dir, client)
	if err != nil {
		return err
	}
	defer a.stop()
	fmt.Fprintf(os.Stderr, "localbench: satellite running in %s; %v per measurement; %s client\n", dir, dur, client)

	var rows []benchtable.Row
	var at16 float64
	for _, w := range strings.Split(writerList, ",") {
		var n int
		if _, err := fmt.Sscan(w, &n); err != nil || n < 1 {
			return fmt.Errorf("-writers: %q is not a count", w)
		}
		res, err := puts(a, n, dur)
		if err != nil {
			return err
		}
		target, ok := "", true
		if n == 16 {
			at16 = res.rate
			target, ok = fmt.Sprintf("≥ %d/s, p99 ≤ %v", putsTarget, p99Target), res.rate >= putsTarget && res.p99 <= p99Target
		}
		v := ""
		if target != "" {
			v = benchtable.Verdict(ok)
		}
		rows = append(rows, benchtable.Measure(fmt.Sprintf("puts, %d writers", n), fmt.Sprintf("%.0f/s (p50 %v, p99 %v; %d puts; agent %.0f µs CPU a put)", res.rate, res.p50, res.p99, res.n, res.cpuPer.Seconds()*1e6), target, v))
	}

	for _, writers := range []int{1, 2} {
		rate, err := batch(a, batches, writers)
		if err != nil {
			return err
		}
		target, v := "", ""
		if writers == 1 {
			target, v = fmt.Sprintf("≥ %d/s", batchTarget), benchtable.Verdict(rate.rate >= batchTarget)
		}
		rows = append(rows, benchtable.Measure(fmt.Sprintf("batch writes (%d × %d records, %d writer(s))", batches, batchRecords, writers), fmt.Sprintf("%.0f records/s (agent %.1f µs CPU a record)", rate.rate, rate.cpuPer.Seconds()*1e6), target, v))
	}
	a.stop()

	if at16 > 0 {
		c, err := startCeiling(dir, client)
		if err != nil {
			return err
		}
		res, err := puts(c, 16, dur)
		c.stop()
		if err != nil {
			return fmt.Errorf("ceiling: %w", err)
		}
		rows = append(rows, benchtable.Measure("ceiling: an HTTP server that only answers, 16 writers, same client", fmt.Sprintf("%.0f/s (p50 %v, p99 %v); the agent's puts are %.0f%% of it", res.rate, res.p50, res.p99, 100*at16/res.rate), "", ""))
	}
	base, err := baseline(dir, dur)
	if err != nil {
		return err
	}
	rows = append(rows, benchtable.Measure("baseline: one append + fsync per record, same disk", fmt.Sprintf("%.0f/s", base), "", ""))
	if at16 > 0 {
		ratio := at16 / base
		rows = append(rows, benchtable.Measure("16 writers ÷ baseline", fmt.Sprintf("%.1f×", ratio), fmt.Sprintf("≥ %.0f×", ratioTarget), benchtable.Verdict(ratio >= ratioTarget)))
	}

	benchtable.Print(os.Stdout, rows)
	fmt.Printf("\n%s/%s, %d CPUs, load average %s; %s; %s client\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), benchtable.LoadAvg(), runtime.Version(), client)
	return nil
}

// appendData appends a record of about 300 bytes of store data.
func appendData(b []byte, w, i int) []byte {
	return fmt.Appendf(b, `{"store_ID":"store-a","item_ID":"item-%06d","batch":"B%08d","expiry_date":"2027-03-31","pack_size":10,"cost_price":12.5,"sell_price":15.75,"available":%d,"total":%d,"location_ID":"","note":"localbench writer %d record %d, padded to about three hundred bytes of data..........."}`,
		i%5000, i, i%97, i%89, w, i)
}

type putResult struct {
	n        int
	rate     float64
	p50, p99 time.Duration
	cpuPer   time.Duration // the agent's CPU (user + system) a put
}

// puts runs n writers, each with its own connection to a, for dur.
func puts(a target, n int, dur time.Duration) (putResult, error) {
	apps := make([]app, n)
	for w := range apps {
		c, err := a.app()
		if err != nil {
			return putResult{}, err
		}
		defer c.Close()
		apps[w] = c
	}
	var wg sync.WaitGroup
	lat := make([][]time.Duration, n)
	var failed atomic.Value
	cpu0 := a.cpu()
	stop := time.Now().Add(dur)
	start := time.Now()
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var path, body []byte
			for i := 0; time.Now().Before(stop); i++ {
				t := time.Now()
				path = fmt.Appendf(path[:0], "/v1/records/stock_line/w%d-%d-%d", n, w, i)
				body = appendData(body[:0], w, i)
				if err := call(apps[w], http.MethodPut, string(path), body, nil); err != nil {
					failed.Store(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := a.cpu() - cpu0
	if err, _ := failed.Load().(error); err != nil {
		return putResult{}, fmt.Errorf("%d writers: %w", n, err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return putResult{}, fmt.Errorf("%d writers: no put finished", n)
	}
	q := func(p float64) time.Duration {
		return all[min(len(all)-1, int(p*float64(len(all))))].Round(10 * time.Microsecond)
	}
	return putResult{n: len(all), rate: float64(len(all)) / elapsed.Seconds(), p50: q(0.50), p99: q(0.99),
		cpuPer: cpu / time.Duration(len(all))}, nil
}

// target is what the writers write to: the agent, or the ceiling.
type target interface {
	app() (app, error)
	cpu() time.Duration // the CPU it has used so far (0: not measured)
}

// ceiling is the most this machine's HTTP stack answers, measured in the
// same run: Go's HTTP server on a unix socket (as the agent's control
// socket is) whose handler reads the body and answers a record, nothing
// else, spoken to by the same client and writers.
type ceiling struct {
	sock, client string
	srv          *http.Server
}

func startCeiling(dir, client string) (*ceiling, error) {
	c := &ceiling{sock: filepath.Join(dir, "ceiling.sock"), client: client}
	l, err := net.Listen("unix", c.sock)
	if err != nil {
		return nil, err
	}
	answer := []byte(`{"table":"stock_line","id":"w16-0-0","action":"insert","data":` + string(appendData(nil, 0, 0)) + "}\n")
	c.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(answer)
	})}
	go c.srv.Serve(l)
	return c, nil
}

func (c *ceiling) app() (app, error)  { return dial(c.client, c.sock) }
func (c *ceiling) cpu() time.Duration { return 0 }
func (c *ceiling) stop()              { c.srv.Close() }

type batchResult struct {
	rate   float64       // records/s
	cpuPer time.Duration // the agent's CPU a record
}

// batch writes k requests of batchRecords records from writers apps at
// once, each on its own connection, and returns records/s (the bodies are
// built before the clock starts).
func batch(a *agent, k, writers int) (batchResult, error) {
	bodies := make([][]byte, k)
	for b := range k {
		var buf []byte
		for i := range batchRecords {
			buf = fmt.Appendf(buf, `{"table":"stock_line","id":"b%d-%d-%d","data":`, writers, b, i)
			buf = append(appendData(buf, b, i), "}\n"...)
		}
		bodies[b] = buf
	}
	next := make(chan []byte, k)
	for _, b := range bodies {
		next <- b
	}
	close(next)
	apps := make([]app, writers)
	for w := range apps {
		c, err := a.app()
		if err != nil {
			return batchResult{}, err
		}
		defer c.Close()
		apps[w] = c
	}
	errs := make(chan error, writers)
	cpu0 := a.cpu()
	start := time.Now()
	for _, c := range apps {
		go func() {
			for body := range next {
				var res struct{ Written int }
				if err := call(c, http.MethodPost, "/v1/records", body, &res); err != nil {
					errs <- fmt.Errorf("batch: %w", err)
					return
				}
				if res.Written != batchRecords {
					errs <- fmt.Errorf("batch: %d written, want %d", res.Written, batchRecords)
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			return batchResult{}, err
		}
	}
	elapsed, n := time.Since(start), k*batchRecords
	return batchResult{rate: float64(n) / elapsed.Seconds(), cpuPer: (a.cpu() - cpu0) / time.Duration(n)}, nil
}

// baseline appends a record and fsyncs, one at a time, for dur: what every
// put cost before group commit, and what a put without it cannot beat.
func baseline(dir string, dur time.Duration) (float64, error) {
	f, err := os.OpenFile(filepath.Join(dir, "baseline.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	stop := time.Now().Add(dur)
	start, n := time.Now(), 0
	for ; time.Now().Before(stop); n++ {
		if _, err := f.Write(append(appendData(nil, 0, n), '\n')); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

const prefsText = `version = 1
[site]
sync_id = 12
interval_minutes = 60
stores = ["store-a"]
[limits]
outbox_max_records = 100000000
[paths]
state_dir = "%s/state"
control_socket = "%s/ctl.sock"
[[sync_with]]
sync_id = 1
user = "clinic-12"
url = "http://127.0.0.1:9"
password_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
`

// agent is the real binary run as a satellite in dir.
type agent struct {
	dir    string
	client string // raw or go
	*agentproc.Proc
}

func startAgent(bin, dir, client string) (*agent, error) {
	if err := os.WriteFile(filepath.Join(dir, "prefs.toml"), []byte(fmt.Sprintf(prefsText, dir, dir)), 0o600); err != nil {
		return nil, err
	}
	p, err := agentproc.Start(bin, []string{"run", "--prefs", filepath.Join(dir, "prefs.toml")}, filepath.Join(dir, "agent.log"))
	if err != nil {
		return nil, err
	}
	a := &agent{dir: dir, client: client, Proc: p}
	if err := p.WaitAnswer(context.Background(), 30*time.Second, 50*time.Millisecond, func(context.Context) error { return a.ping() }); err != nil {
		a.stop()
		return nil, err
	}
	return a, nil
}

func (a *agent) ping() error {
	c, err := a.app()
	if err != nil {
		return err
	}
	defer c.Close()
	var st struct{ Opening string }
	if err := call(c, http.MethodGet, "/v1/status", nil, &st); err != nil {
		return err
	}
	if st.Opening != "" {
		return fmt.Errorf("the agent is starting: %s", st.Opening)
	}
	return nil
}

// app is one app's kept-alive connection to the control socket.
type app interface {
	do(method, path string, body []byte) (status int, answer []byte, err error)
	Close() error
}

func (a *agent) app() (app, error) { return dial(a.client, filepath.Join(a.dir, "ctl.sock")) }

// dial opens one app's connection to the socket sock with client.
func dial(client, sock string) (app, error) {
	if client == "raw" {
		return dialRaw(sock)
	}
	return &goClient{&http.Client{Timeout: time.Minute, Transport: &http.Transport{
		MaxIdleConnsPerHost: 1,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}}, nil
}

// goClient is an app written in Go, with net/http's client.
type goClient struct{ c *http.Client }

func (g *goClient) do(method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, "http://agent"+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := g.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

func (g *goClient) Close() error { g.c.CloseIdleConnections(); return nil }

// call makes one request and reads a 200 answer into out (when not nil).
func call(c app, method, path string, body []byte, out any) error {
	status, b, err := c.do(method, path, body)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (a *agent) cpu() time.Duration { return a.CPU() }
func (a *agent) stop()              { a.Stop(os.Interrupt, 30*time.Second) }
