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
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	flag.Parse()
	if err := run(*bin, *dir, *dur, *writers, *batches); err != nil {
		fmt.Fprintln(os.Stderr, "localbench:", err)
		os.Exit(1)
	}
}

func run(bin, dir string, dur time.Duration, writerList string, batches int) error {
	if dir == "" {
		d, err := os.MkdirTemp(".", ".localbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	dir, _ = filepath.Abs(dir)
	a, err := startAgent(bin, dir)
	if err != nil {
		return err
	}
	defer a.stop()
	fmt.Fprintf(os.Stderr, "localbench: satellite running in %s; %v per measurement\n", dir, dur)

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
		rows = append(rows, benchtable.Measure(fmt.Sprintf("puts, %d writers", n), fmt.Sprintf("%.0f/s (p50 %v, p99 %v; %d puts)", res.rate, res.p50, res.p99, res.n), target, v))
	}

	for _, writers := range []int{1, 2} {
		rate, err := batch(a, batches, writers)
		if err != nil {
			return err
		}
		target, v := "", ""
		if writers == 1 {
			target, v = fmt.Sprintf("≥ %d/s", batchTarget), benchtable.Verdict(rate >= batchTarget)
		}
		rows = append(rows, benchtable.Measure(fmt.Sprintf("batch writes (%d × %d records, %d writer(s))", batches, batchRecords, writers), fmt.Sprintf("%.0f records/s", rate), target, v))
	}
	a.stop()

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
	fmt.Printf("\n%s/%s, %d CPUs, load average %s; %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), benchtable.LoadAvg(), runtime.Version())
	return nil
}

// data is a record of about 300 bytes of store data.
func data(w, i int) string {
	return fmt.Sprintf(`{"store_ID":"store-a","item_ID":"item-%06d","batch":"B%08d","expiry_date":"2027-03-31","pack_size":10,"cost_price":12.5,"sell_price":15.75,"available":%d,"total":%d,"location_ID":"","note":"localbench writer %d record %d, padded to about three hundred bytes of data..........."}`,
		i%5000, i, i%97, i%89, w, i)
}

type putResult struct {
	n        int
	rate     float64
	p50, p99 time.Duration
}

// puts runs n writers, each with its own connection, for dur.
func puts(a *agent, n int, dur time.Duration) (putResult, error) {
	var wg sync.WaitGroup
	lat := make([][]time.Duration, n)
	var failed atomic.Value
	stop := time.Now().Add(dur)
	start := time.Now()
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := a.client()
			for i := 0; time.Now().Before(stop); i++ {
				t := time.Now()
				path := fmt.Sprintf("/v1/records/stock_line/w%d-%d-%d", n, w, i)
				if err := a.do(c, http.MethodPut, path, data(w, i), nil); err != nil {
					failed.Store(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
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
	return putResult{n: len(all), rate: float64(len(all)) / elapsed.Seconds(), p50: q(0.50), p99: q(0.99)}, nil
}

// batch writes k requests of batchRecords records from writers apps at
// once, each on its own connection, and returns records/s (the bodies are
// built before the clock starts).
func batch(a *agent, k, writers int) (float64, error) {
	bodies := make([][]byte, k)
	for b := range k {
		var buf bytes.Buffer
		for i := range batchRecords {
			fmt.Fprintf(&buf, `{"table":"stock_line","id":"b%d-%d-%d","data":%s}`+"\n", writers, b, i, data(b, i))
		}
		bodies[b] = buf.Bytes()
	}
	next := make(chan []byte, k)
	for _, b := range bodies {
		next <- b
	}
	close(next)
	errs := make(chan error, writers)
	start := time.Now()
	for range writers {
		go func() {
			c := a.client()
			for body := range next {
				var res struct{ Written int }
				if err := a.do(c, http.MethodPost, "/v1/records", string(body), &res); err != nil {
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
			return 0, err
		}
	}
	return float64(k*batchRecords) / time.Since(start).Seconds(), nil
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
		if _, err := f.WriteString(data(0, n) + "\n"); err != nil {
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

type agent struct {
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startAgent(bin, dir string) (*agent, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%w (build it first: make build)", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "prefs.toml"), []byte(fmt.Sprintf(prefsText, dir, dir)), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return nil, err
	}
	a := &agent{dir: dir, done: make(chan struct{})}
	a.cmd = exec.Command(bin, "run", "--prefs", filepath.Join(dir, "prefs.toml"))
	a.cmd.Env = append(os.Environ(), "STATE_DIRECTORY=", "RUNTIME_DIRECTORY=", "NOTIFY_SOCKET=")
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() { a.cmd.Wait(); logf.Close(); close(a.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := a.do(a.client(), http.MethodGet, "/v1/status", "", nil); err == nil {
			return a, nil
		} else if time.Now().After(deadline) {
			a.stop()
			return nil, fmt.Errorf("the agent did not answer on its control socket in 30 s (see %s/agent.log): %w", dir, err)
		}
		select {
		case <-a.done:
			return nil, fmt.Errorf("the agent exited at start; see %s/agent.log", dir)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// client is one app's connection to the control socket (kept alive).
func (a *agent) client() *http.Client {
	sock := filepath.Join(a.dir, "ctl.sock")
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		MaxIdleConnsPerHost: 1,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
}

func (a *agent) do(c *http.Client, method, path, body string, out any) error {
	req, err := http.NewRequest(method, "http://agent"+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		return jsonUnmarshal(b, out)
	}
	return nil
}

func (a *agent) stop() {
	if a.cmd.Process == nil {
		return
	}
	select {
	case <-a.done:
		return
	default:
	}
	a.cmd.Process.Signal(os.Interrupt)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
