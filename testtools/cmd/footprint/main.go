// Command footprint measures what syncagent costs a small clinic box and
// prints a table (`make footprint`):
//
//   - the stripped static binary per architecture (amd64, arm64, armv7);
//   - resident memory (VmRSS, VmHWM) of a satellite after an idle run against
//     a primary on loopback;
//   - wake-ups while idle: voluntary context switches of all its threads per
//     minute;
//   - time from exec to READY=1 (read from a NOTIFY_SOCKET it owns, as
//     systemd would) with an empty outbox and with a 100,000-record one.
//
// Both agents run as plain processes on loopback, in a temporary directory;
// the satellite gets NOTIFY_SOCKET and WATCHDOG_USEC=60s, so its watchdog
// pings are part of what is measured. It imports the queue package only to
// pre-fill the outbox quickly (one commit per 5,000 records).
package main

import (
	"bufio"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/prefs"
	"syncagent/queue"
	"syncagent/testtools/agentproc"
	"syncagent/testtools/benchtable"
)

// Targets from the packaging issue.
const (
	sizeTarget = 15 << 20
	rssTarget  = 20 << 20
)

func main() {
	idle := flag.Duration("idle", 3*time.Minute, "how long the satellite idles before memory is read")
	window := flag.Duration("wake-window", time.Minute, "the last part of the idle run over which wake-ups are counted")
	records := flag.Int("records", 100_000, "records in the outbox for the READY=1 measurement")
	runs := flag.Int("runs", 3, "starts to time for each READY=1 measurement (the median is shown)")
	held := flag.String("held", "10000,100000,300000", "records of about 300 bytes a satellite holds for the memory and restart measurement (comma-separated; empty: skip it)")
	only := flag.String("only", "", `"held": only the memory and restart measurement`)
	flag.Parse()
	if *window > *idle {
		*window = *idle
	}
	counts, err := parseCounts(*held)
	if err != nil {
		fmt.Fprintln(os.Stderr, "footprint: -held:", err)
		os.Exit(2)
	}
	if *only == "held" {
		err = runHeld(counts)
	} else {
		err = run(*idle, *window, *records, *runs, counts)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "footprint:", err)
		os.Exit(1)
	}
}

func run(idle, window time.Duration, records, runs int, held []int) error {
	dir, err := os.MkdirTemp("", "sa-fp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var rows []benchtable.Row

	// 1. Binary size per architecture.
	host := ""
	for _, a := range []struct{ name, goarch, goarm string }{{"amd64", "amd64", ""}, {"arm64", "arm64", ""}, {"armv7", "arm", "7"}} {
		out := filepath.Join(dir, "syncagent-"+a.name)
		if err := build(out, a.goarch, a.goarm); err != nil {
			return err
		}
		fi, err := os.Stat(out)
		if err != nil {
			return err
		}
		static, err := staticAndStripped(out)
		if err != nil {
			return err
		}
		kind := "static, stripped"
		if !static {
			kind = "NOT static+stripped"
		}
		rows = append(rows, benchtable.Measure("binary size, linux/"+a.name, fmt.Sprintf("%.1f MiB (%s)", mb(fi.Size()), kind), "≤ 15 MB", benchtable.Verdict(fi.Size() <= sizeTarget && static)))
		if a.goarch == runtime.GOARCH {
			host = out
		}
	}
	if host == "" {
		return fmt.Errorf("no build for this machine's architecture %s", runtime.GOARCH)
	}
	fmt.Fprintf(os.Stderr, "footprint: binaries built; starting a primary and a satellite on loopback (idle %v)\n", idle)

	// 2. A primary and a satellite on loopback.
	port, err := freePort()
	if err != nil {
		return err
	}
	sha, hash, err := passwords(host)
	if err != nil {
		return err
	}
	prim := filepath.Join(dir, "primary")
	if err := writePrefs(prim, primaryPrefs(prim, port, hash)); err != nil {
		return err
	}
	primary, err := startAgent(host, prim, nil)
	if err != nil {
		return err
	}
	defer primary.stop()
	if err := primary.waitReady(30 * time.Second); err != nil {
		return fmt.Errorf("primary: %w", err)
	}

	sat := filepath.Join(dir, "sat")
	if err := writePrefs(sat, satellitePrefs(sat, fmt.Sprintf("http://127.0.0.1:%d", port), sha)); err != nil {
		return err
	}
	satellite, err := startAgent(host, sat, watchdogEnv)
	if err != nil {
		return err
	}
	defer satellite.stop()
	if err := satellite.waitReady(30 * time.Second); err != nil {
		return fmt.Errorf("satellite: %w", err)
	}
	// Some real work first: 1,000 records written through the local API and
	// pushed, so the idle figures are those of an agent that has synced.
	for i := range 1000 {
		body := fmt.Sprintf(`{"store_ID":"store-a","item":"item-%d","qty":%d}`, i, i)
		if err := satellite.call("PUT", fmt.Sprintf("/v1/records/stock_line/r%04d", i), body, nil); err != nil {
			return fmt.Errorf("writing through the local API: %w", err)
		}
	}
	var cycle struct {
		Error string `json:"error"`
	}
	var st struct {
		Outbox  int `json:"outbox_length"`
		Records int `json:"records"`
	}
	if err := satellite.call("POST", "/v1/sync", "", &cycle); err != nil || cycle.Error != "" {
		return fmt.Errorf("the first sync: error %q, %v", cycle.Error, err)
	}
	if err := satellite.call("GET", "/v1/status", "", &st); err != nil || st.Outbox != 0 || st.Records != 1000 {
		return fmt.Errorf("after the first sync: outbox %d, records %d (want 0 and 1000), %v", st.Outbox, st.Records, err)
	}

	time.Sleep(idle - window)
	before, err := ctxSwitches(satellite.Pid())
	if err != nil {
		return err
	}
	primBefore, _ := ctxSwitches(primary.Pid())
	pingsBefore := satellite.watchdogPings()
	time.Sleep(window)
	after, err := ctxSwitches(satellite.Pid())
	if err != nil {
		return err
	}
	primAfter, _ := ctxSwitches(primary.Pid())
	pings := satellite.watchdogPings() - pingsBefore
	rss, hwm, threads, err := memory(satellite.Pid())
	if err != nil {
		return err
	}
	prss, phwm, _, _ := memory(primary.Pid())
	perMin := float64(after-before) / window.Minutes()
	rows = append(rows,
		benchtable.Measure(fmt.Sprintf("satellite RSS after %v idle (VmRSS / VmHWM)", idle), fmt.Sprintf("%.1f MiB / %.1f MiB", mb(rss), mb(hwm)), "≤ 20 MB", benchtable.Verdict(rss <= rssTarget)),
		benchtable.Measure(fmt.Sprintf("satellite wake-ups while idle (voluntary context switches, %d threads)", threads), fmt.Sprintf("%.0f /min (%d watchdog pings)", perMin, pings), "no busy loop (< 600 /min)", benchtable.Verdict(perMin < 600)),
		benchtable.Measure("primary RSS, 1 site, idle (VmRSS / VmHWM)", fmt.Sprintf("%.1f MiB / %.1f MiB", mb(prss), mb(phwm)), "", ""),
		benchtable.Measure("primary wake-ups while idle", fmt.Sprintf("%.0f /min", float64(primAfter-primBefore)/window.Minutes()), "", ""),
	)
	satellite.stop()
	primary.stop()

	// 3. Time to READY=1, with an empty outbox and with a full one. The
	// satellite points at a closed port so nothing drains the outbox.
	for _, n := range []int{0, records} {
		d := filepath.Join(dir, fmt.Sprintf("ready-%d", n))
		if err := writePrefs(d, satellitePrefs(d, "http://127.0.0.1:9", sha)); err != nil {
			return err
		}
		if n > 0 {
			fmt.Fprintf(os.Stderr, "footprint: writing %d records into a satellite outbox\n", n)
			if err := prefill(filepath.Join(d, "state", "satellite.db"), n); err != nil {
				return err
			}
		}
		var readies, socks []time.Duration
		var hwm int64
		var outbox int
		for range runs {
			a, err := startAgent(host, d, watchdogEnv)
			if err != nil {
				return err
			}
			if err := a.waitReady(5 * time.Minute); err != nil {
				a.stop()
				return err
			}
			var st struct {
				Outbox int `json:"outbox_length"`
			}
			if err := a.waitSocket(time.Minute); err != nil {
				a.stop()
				return err
			}
			sock := time.Since(a.Started)
			if err := a.call("GET", "/v1/status", "", &st); err != nil {
				a.stop()
				return err
			}
			_, h, _, _ := memory(a.Pid())
			hwm = max(hwm, h)
			outbox = st.Outbox
			readies = append(readies, a.readyAfter())
			socks = append(socks, sock)
			a.stop()
		}
		if outbox != n {
			return fmt.Errorf("the outbox held %d records at start, want %d", outbox, n)
		}
		rows = append(rows, benchtable.Measure(fmt.Sprintf("time to READY=1, outbox %d (median of %d)", n, runs),
			fmt.Sprintf("%v (control socket answers %v; VmHWM %.1f MiB)", median(readies).Round(time.Millisecond), median(socks).Round(time.Millisecond), mb(hwm)), "", ""))
	}

	// 4. Memory and restart time with many records held.
	hrows, err := heldRows(host, dir, sha, held)
	if err != nil {
		return err
	}
	rows = append(rows, hrows...)
	printRows(rows)
	return nil
}

func printRows(rows []benchtable.Row) {
	benchtable.Print(os.Stdout, rows)
	fmt.Printf("\n%s, %d CPUs, %s; %s; load average %s\n", runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), kernel(), goVersion(), benchtable.LoadAvg())
}

var watchdogEnv = []string{"WATCHDOG_USEC=60000000"}

func primaryPrefs(dir string, port int, hash string) string {
	return string(prefs.Encode(&prefs.Prefs{
		Site:     prefs.Site{SyncID: 1, IntervalMinutes: 10, Stores: []string{"central"}},
		Paths:    prefs.Paths{StateDir: dir + "/state", ControlSocket: dir + "/ctl.sock"},
		Listen:   prefs.Listen{Address: fmt.Sprintf("127.0.0.1:%d", port)},
		SyncWith: []prefs.Peer{{SyncID: 12, User: "clinic-12", PasswordHash: hash, Stores: []string{"store-a"}}},
	}))
}

func satellitePrefs(dir, url, sha string) string {
	return string(prefs.Encode(&prefs.Prefs{
		Site:     prefs.Site{SyncID: 12, IntervalMinutes: 10, Stores: []string{"store-a"}},
		Paths:    prefs.Paths{StateDir: dir + "/state", ControlSocket: dir + "/ctl.sock"},
		SyncWith: []prefs.Peer{{SyncID: 1, User: "clinic-12", URL: url, PasswordSHA256: sha}},
	}))
}

func writePrefs(dir, text string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "prefs.toml"), []byte(text), 0o600)
}

func build(out, goarch, goarm string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -buildid=", "-o", out, "./agent/cmd/syncagent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build for %s: %w", goarch, err)
	}
	return nil
}

// staticAndStripped: no program interpreter, no dynamic section, no symbol table.
func staticAndStripped(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			return false, nil
		}
	}
	return f.Section(".symtab") == nil, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func passwords(bin string) (sha, hash string, err error) {
	cmd := exec.Command(bin, "passwd")
	cmd.Stdin = strings.NewReader("footprint password\n")
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("syncagent passwd: %w", err)
	}
	get := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + ` = "([^"]+)"`).FindSubmatch(out)
		if m == nil {
			return ""
		}
		return string(m[1])
	}
	sha, hash = get("password_sha256"), get("password_hash")
	if sha == "" || hash == "" {
		return "", "", fmt.Errorf("unexpected passwd output %q", out)
	}
	return sha, hash, nil
}

// agent is a syncagent process with its own notify socket.
// agent is a syncagent process (testtools/agentproc) whose sd_notify
// messages footprint reads itself, from a NOTIFY_SOCKET it owns: READY=1 and
// the watchdog's pings are what it measures.
type agent struct {
	*agentproc.Proc
	dir    string
	notify *net.UnixConn
	http   *http.Client
	client *control.Client

	mu    sync.Mutex
	ready time.Duration // 0 until READY=1
	pings int
}

func startAgent(bin, dir string, env []string) (*agent, error) {
	sock := filepath.Join(dir, "notify.sock")
	os.Remove(sock)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	ctl := filepath.Join(dir, "ctl.sock")
	a := &agent{dir: dir, notify: conn, client: control.NewClient(ctl)}
	a.http = &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", ctl)
		}}}
	p, err := agentproc.Start(bin, []string{"run", "--prefs", filepath.Join(dir, "prefs.toml")},
		filepath.Join(dir, "agent.log"), append([]string{"NOTIFY_SOCKET=" + sock}, env...)...)
	if err != nil {
		conn.Close()
		return nil, err
	}
	a.Proc = p
	go a.readNotify()
	return a, nil
}

func (a *agent) readNotify() {
	buf := make([]byte, 4096)
	for {
		n, err := a.notify.Read(buf)
		if err != nil {
			return
		}
		at := time.Since(a.Started)
		a.mu.Lock()
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			switch line {
			case "READY=1":
				if a.ready == 0 {
					a.ready = at
				}
			case "WATCHDOG=1":
				a.pings++
			}
		}
		a.mu.Unlock()
	}
}

func (a *agent) readyAfter() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ready
}

func (a *agent) watchdogPings() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pings
}

func (a *agent) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for a.readyAfter() == 0 {
		select {
		case <-a.Done():
			return fmt.Errorf("the agent exited before READY=1; see %s:\n%s", a.Log, agentproc.Tail(a.Log, 20))
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no READY=1 within %v", limit)
		}
	}
	return nil
}

// waitSocket waits until the control socket answers status (which it
// does while the datafile is still opening).
func (a *agent) waitSocket(limit time.Duration) error {
	return a.WaitAnswer(context.Background(), limit, time.Millisecond, func(ctx context.Context) error {
		_, err := a.client.Status(ctx)
		return err
	})
}

// call speaks the local API: JSON over the control socket.
func (a *agent) call(method, path, body string, out any) error {
	req, err := http.NewRequest(method, "http://agent"+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// stop ends the agent with SIGTERM, as systemctl stop does.
func (a *agent) stop() {
	a.Stop(syscall.SIGTERM, 30*time.Second)
	a.notify.Close()
}

// prefill writes n pending records into a fresh satellite datafile.
func prefill(path string, n int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	l, err := queue.OpenLocal(path, queue.LocalOptions{})
	if err != nil {
		return err
	}
	const batch = 5000
	for i := 0; i < n; i += batch {
		rs := make([]queue.Record, 0, batch)
		for j := i; j < min(i+batch, n); j++ {
			rs = append(rs, queue.Record{Table: "stock_line", ID: fmt.Sprintf("r%06d", j), Action: queue.Insert,
				Data: json.RawMessage(fmt.Sprintf(`{"store_ID":"store-a","item":"item-%d","qty":%d,"batch":"B-2026-%05d"}`, j%997, j%500, j))})
		}
		if _, err := l.WriteMany(rs); err != nil {
			l.Close()
			return err
		}
	}
	return l.Close()
}

// ctxSwitches sums the voluntary context switches over every thread of pid:
// a thread switches out voluntarily each time it goes to sleep, so this
// counts its wake-ups. Involuntary switches (preemption by other processes
// on a busy machine) are left out.
func ctxSwitches(pid int) (int64, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var total int64
	for _, t := range tasks {
		f, err := os.Open(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread ended
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && k == "voluntary_ctxt_switches" {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				total += n
			}
		}
		f.Close()
	}
	return total, nil
}

// memory reads VmRSS, VmHWM (bytes) and the thread count of pid.
func memory(pid int) (rss, hwm int64, threads int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			hwm = n << 10
		case "Threads":
			threads = int(n)
		}
	}
	if rss == 0 {
		return 0, 0, 0, errors.New("no VmRSS in /proc status")
	}
	return rss, hwm, threads, nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return "Linux " + strings.TrimSpace(string(b))
}

func goVersion() string {
	out, _ := exec.Command("go", "version").Output()
	return strings.TrimSpace(string(out))
}
