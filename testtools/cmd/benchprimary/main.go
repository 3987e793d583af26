// Command benchprimary is `make bench-primary`: N simulated sites speaking
// v5 over real HTTP (testtools/loadgen: distinct users and hardware IDs,
// full cycles, each store on two sites for fan-out) against a primary
// running as its own process, at rising rates, and an ingest run (50 sites
// pushing 500-record batches back to back) beside a baseline HTTP server
// that decodes each batch as JSON, appends it to a file and fsyncs. It
// prints, per setup and rate, cycles/s, p50/p99/max per endpoint, records
// accepted and delivered per second, errors and the node's memory, and the
// saturation point: the highest rate served with no error and every
// endpoint's p99 under 200 ms.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"syncagent/agent/passwd"
	"syncagent/agent/primary"
	"syncagent/queue"
	"syncagent/testtools/loadgen"
)

func main() {
	serve := flag.String("serve", "", "run a primary (bunt) or the baseline (raw) on -addr; used by the bench itself")
	addr := flag.String("addr", "127.0.0.1:0", "listen address of -serve")
	dir := flag.String("dir", "", "state directory of -serve")
	sites := flag.Int("sites", 1000, "simulated sites")
	rates := flag.String("rates", "50,133,300,600", "cycles per second to try, in order")
	step := flag.Duration("step", 20*time.Second, "how long each rate runs")
	records := flag.Int("records", 10, "records a push carries")
	payload := flag.Int("payload", 300, "bytes of each record")
	ingest := flag.Duration("ingest", 15*time.Second, "how long the ingest run lasts (0: none)")
	flag.Parse()
	if *serve != "" {
		if err := serveOne(*serve, *addr, *dir, *sites); err != nil {
			fmt.Fprintln(os.Stderr, "benchprimary:", err)
			os.Exit(1)
		}
		return
	}
	if err := bench(*sites, *rates, *step, *records, *payload, *ingest); err != nil {
		fmt.Fprintln(os.Stderr, "benchprimary:", err)
		os.Exit(2)
	}
}

// Sites 2..n+1; store k is active on sites 2k and 2k+1 (each store on two
// sites). Passwords are distinct; their hashes use 1,000 iterations (the
// hash records its count), so setting up 40,000 sites does not take hours.
func siteRows(n int) ([]primary.SiteRow, []*loadgen.Site, error) {
	passwd.Iterations = 1000
	var rows []primary.SiteRow
	var sites []*loadgen.Site
	for id := 2; id < n+2; id++ {
		pw := passwd.SHA256Hex(fmt.Sprintf("password of site %d", id))
		h, err := passwd.Hash(pw)
		if err != nil {
			return nil, nil, err
		}
		stores := []string{fmt.Sprintf("store-%d", id/2)}
		rows = append(rows, primary.SiteRow{SyncID: id, User: fmt.Sprintf("site-%d", id), PasswordHash: h, Stores: stores})
		sites = append(sites, &loadgen.Site{ID: id, User: fmt.Sprintf("site-%d", id), Password: pw, HWID: fmt.Sprintf("hw-%d", id), Stores: stores})
	}
	return rows, sites, nil
}

func serveOne(kind, addr, dir string, n int) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	var h http.Handler
	switch kind {
	case "bunt":
		c, err := queue.OpenCentral(filepath.Join(dir, "central.db"), queue.CentralOptions{})
		if err != nil {
			return err
		}
		defer c.Close()
		rows, _, err := siteRows(n)
		if err != nil {
			return err
		}
		p, err := primary.New(c, primary.Config{Sites: rows}, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			return err
		}
		h = p.Handler()
	case "raw":
		h, err = rawBaseline(filepath.Join(dir, "raw.log"))
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown -serve %q", kind)
	}
	fmt.Printf("ready %s\n", l.Addr())
	return primary.NewHTTPServer(addr, h, slog.New(slog.DiscardHandler)).Serve(l)
}

// rawBaseline is what the simplest durable server would do with a push:
// decode the JSON, append it, fsync, answer. It answers every other
// endpoint with an empty page.
func rawBaseline(path string) (http.Handler, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	var mu = make(chan struct{}, 1)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "queued_records") {
			var push struct {
				QueueLength int               `json:"queueLength"`
				Data        []json.RawMessage `json:"data"`
			}
			b, _ := io.ReadAll(io.LimitReader(r.Body, 32<<20))
			if json.Unmarshal(b, &push) != nil {
				http.Error(w, "bad json", 400)
				return
			}
			mu <- struct{}{}
			f.Write(append(b, '\n'))
			f.Sync()
			<-mu
			io.WriteString(w, `{"integrationStarted":true}`)
			return
		}
		switch {
		case strings.HasSuffix(r.URL.Path, "/site"):
			io.WriteString(w, `{"id":"x","siteId":2,"initialisationStatus":"completed"}`)
		case strings.HasSuffix(r.URL.Path, "site_status"):
			io.WriteString(w, `{"code":"idle","message":"","data":null}`)
		case strings.HasSuffix(r.URL.Path, "central_records"):
			io.WriteString(w, `{"maxCursor":0,"data":[]}`)
		case strings.HasSuffix(r.URL.Path, "queued_records"):
			io.WriteString(w, `{"queueLength":0,"data":[]}`)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}), nil
}

// node is a -serve child.
type node struct {
	cmd  *exec.Cmd
	url  string
	dir  string
	cpu0 time.Duration
}

func start(kind string, sites int) (*node, error) {
	dir, err := os.MkdirTemp("", "benchprimary-")
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-serve", kind, "-dir", dir, "-sites", strconv.Itoa(sites))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		cmd.Process.Kill()
		return nil, fmt.Errorf("the %s node did not start: %q %v", kind, line, err)
	}
	return &node{cmd: cmd, url: "http://" + strings.TrimSpace(strings.TrimPrefix(line, "ready ")), dir: dir}, nil
}

func (n *node) stop() {
	n.cmd.Process.Signal(syscall.SIGTERM)
	n.cmd.Wait()
	os.RemoveAll(n.dir)
}

// memory is the node's peak and current resident set (MiB).
func (n *node) memory() (peak, now int) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid))
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "VmHWM:" || f[0] == "VmRSS:") {
			kb, _ := strconv.Atoi(f[1])
			if f[0] == "VmHWM:" {
				peak = kb >> 10
			} else {
				now = kb >> 10
			}
		}
	}
	return peak, now
}

// cpu is the node's user+system CPU so far.
func (n *node) cpu() time.Duration {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.cmd.Process.Pid))
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * (time.Second / 100)
}

func bench(sites int, rates string, step time.Duration, records, payload int, ingest time.Duration) error {
	_, simulated, err := siteRows(sites)
	if err != nil {
		return err
	}
	ctx := context.Background()
	fmt.Printf("bench-primary: %d sites (each store on 2 sites), %d records of %d B a push, %s a rate; %s\n\n",
		sites, records, payload, step, time.Now().UTC().Format(time.RFC3339))
	n, err := start("bunt", sites)
	if err != nil {
		return err
	}
	defer n.stop()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "setup\trate\tcycles/s\terrors\tskipped\tendpoint\tp50\tp99\tmax\taccepted/s\tdelivered/s\tnode RSS MiB\tnode CPU\t")
	saturation := 0.0
	for _, rs := range strings.Split(rates, ",") {
		rate, err := loadgen.ParseRate(rs)
		if err != nil {
			return err
		}
		cpu0 := n.cpu()
		res := loadgen.Run(ctx, loadgen.Config{URLs: []string{n.url}, Sites: simulated, Rate: rate, Duration: step, Records: records, Payload: payload})
		cpu := n.cpu() - cpu0
		_, rss := n.memory()
		for i, ep := range res.Endpoints() {
			ds := res.Latency[ep]
			if i == 0 {
				fmt.Fprintf(tw, "bunt, 1 node\t%.0f\t%.1f\t%d\t%d\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%d\t%s\t\n", rate, res.CyclesPerSecond, res.Failed, res.Skipped, ep,
					ms(loadgen.Percentile(ds, .5)), ms(loadgen.Percentile(ds, .99)), ms(ds[len(ds)-1]), res.AcceptedPerSec, res.DeliveredPerSec, rss, cpu.Round(10*time.Millisecond))
			} else {
				fmt.Fprintf(tw, "\t\t\t\t\t%s\t%s\t%s\t%s\t\t\t\t\t\n", ep, ms(loadgen.Percentile(ds, .5)), ms(loadgen.Percentile(ds, .99)), ms(ds[len(ds)-1]))
			}
		}
		for _, e := range res.FirstErrors {
			fmt.Fprintf(tw, "\t\t\t\t\terror: %.100s\t\t\t\t\t\t\t\t\n", e)
		}
		if res.Failed == 0 && res.WorstEndpointP99 < 200*time.Millisecond && res.CyclesPerSecond >= 0.9*rate {
			saturation = rate
		}
	}
	tw.Flush()
	fmt.Printf("\nsaturation (no error, every p99 < 200 ms, >= 90%% of the rate): %.0f cycles/s\n", saturation)
	if ingest > 0 {
		if err := ingestRun(ctx, n, ingest); err != nil {
			return err
		}
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

// ingestRun pushes 500-record batches from 50 sites as fast as they are
// answered, at the primary and at the raw baseline, in the same run.
func ingestRun(ctx context.Context, n *node, d time.Duration) error {
	raw, err := start("raw", 50)
	if err != nil {
		return err
	}
	defer raw.stop()
	_, simulated, err := siteRows(50)
	if err != nil {
		return err
	}
	fmt.Printf("\ningest: 50 sites pushing 500-record batches of 300 B records back to back for %s\n", d)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\trecords/s\tpush p50\tpush p99\tCPU µs/record\tratio to baseline\t")
	var base float64
	for _, s := range []struct {
		name string
		n    *node
	}{{"raw JSON + append + fsync", raw}, {"primary (bunt)", n}} {
		cpu0 := s.n.cpu()
		res := loadgen.Run(ctx, loadgen.Config{URLs: []string{s.n.url}, Sites: simulated, Rate: 2000, Duration: d, Records: 500, Payload: 300, Workers: 50, PushOnly: true})
		cpu := s.n.cpu() - cpu0
		push := res.Latency["POST queued_records"]
		per := 0.0
		if res.Accepted > 0 {
			per = float64(cpu.Microseconds()) / float64(res.Accepted)
		}
		if base == 0 {
			base = res.AcceptedPerSec
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%.1f\t%.2f\t\n", s.name, res.AcceptedPerSec, ms(loadgen.Percentile(push, .5)), ms(loadgen.Percentile(push, .99)), per, res.AcceptedPerSec/base)
	}
	return tw.Flush()
}
