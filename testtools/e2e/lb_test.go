package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"syncagent/agent/adapt"
	"syncagent/agent/control"
	"syncagent/agent/loopback"
	"syncagent/agent/passwd"
	"syncagent/agent/prefs"
	"syncagent/agent/satellite"
	"syncagent/agent/syncapi"
	"syncagent/queue"
	"syncagent/testtools/pgtest"
)

// Several primary processes on one PostgreSQL database behind a real load
// balancer (HAProxy, Debian's package): the deployment docs/postgres.md
// describes, run on loopback.

// EnvLBRequired set to 1 (CI sets it) makes a missing HAProxy fail these
// tests instead of skipping them.
const EnvLBRequired = "SYNCAGENT_LB_REQUIRED"

// findHAProxy returns the haproxy program, or skips (fails under
// EnvLBRequired) saying how to install it.
func findHAProxy(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"haproxy", "/usr/sbin/haproxy"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv(EnvLBRequired) == "1" {
		t.Fatal("haproxy is not installed and " + EnvLBRequired + "=1: apt-get install haproxy")
	}
	t.Skip("skipped: haproxy is not installed (Debian: apt-get install haproxy)")
	return ""
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// syncagentBinary builds the syncagent program once per test binary.
func syncagentBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "e2e-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "syncagent")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", binPath, "syncagent/agent/cmd/syncagent").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// primaryNode is one `syncagent run` primary process.
type primaryNode struct {
	name, dir, prefs, addr, socket, log string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// lbSite is a satellite in this process, syncing through the balancer.
type lbSite struct {
	id     int
	stores []string
	store  *queue.Local
	sat    *satellite.Satellite
}

// pgCluster is N primary nodes on one database, behind HAProxy, and the
// sites they serve.
type pgCluster struct {
	t           *testing.T
	bin         string
	nodes       []*primaryNode
	lb          string // the balancer's URL
	haproxyLog  string
	haproxySock string
	dsn         string
	sites       []*lbSite
}

// newPGCluster starts n primary processes on a fresh database and HAProxy
// in front of them, and opens satellites for sites (sync_id → stores),
// pointed at the balancer.
func newPGCluster(t *testing.T, n int, sites map[int][]string) *pgCluster {
	t.Helper()
	haproxy := findHAProxy(t)
	c := &pgCluster{t: t, bin: syncagentBinary(t), dsn: pgtest.DSN(t)}
	base, err := os.MkdirTemp("", "lb-") // short: sockets live under it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if os.Getenv("LB_KEEP") == "" { // LB_KEEP=1 keeps the logs and datafiles
			os.RemoveAll(base)
		}
	})
	key := filepath.Join(base, "auth.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("k", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	var rows []prefs.Peer
	for _, id := range sortedIDs(sites) {
		h, err := passwd.Hash(lbPassword(id))
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, prefs.Peer{SyncID: id, User: fmt.Sprintf("site-%d", id), PasswordHash: h, Stores: sites[id]})
	}
	for i := range n {
		addr, err := loopback.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		nd := &primaryNode{name: fmt.Sprintf("node%d", i+1), dir: filepath.Join(base, fmt.Sprintf("n%d", i+1)), addr: addr}
		nd.prefs, nd.socket, nd.log = filepath.Join(nd.dir, "prefs.toml"), filepath.Join(nd.dir, "ctl.sock"), filepath.Join(base, nd.name+".log")
		p := &prefs.Prefs{
			Site:     prefs.Site{SyncID: 1, IntervalMinutes: 60},
			Paths:    prefs.Paths{StateDir: nd.dir, ControlSocket: nd.socket},
			Listen:   prefs.Listen{Address: addr, TrustedProxies: []string{"127.0.0.1/32"}},
			Central:  prefs.Central{Database: c.dsn, MaxConnections: 4, AuthKeyFile: key},
			SyncWith: rows,
		}
		if err := os.MkdirAll(nd.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(nd.prefs, prefs.Encode(p), 0o600); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, nd)
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.kill(syscall.SIGTERM)
		}
		if t.Failed() {
			for _, nd := range c.nodes {
				b, _ := os.ReadFile(nd.log)
				t.Logf("log of %s (last 3000 bytes):\n%s", nd.name, tailBytes(b, 3000))
			}
		}
	})
	for _, nd := range c.nodes {
		c.start(nd) // one at a time: the first applies the schema
	}
	c.lb = startHAProxy(t, haproxy, base, c.nodes)
	c.haproxyLog, c.haproxySock = filepath.Join(base, "haproxy.log"), filepath.Join(base, "haproxy.sock")
	for _, id := range sortedIDs(sites) {
		c.sites = append(c.sites, c.openSite(filepath.Join(base, fmt.Sprintf("site-%d.db", id)), id, sites[id]))
	}
	return c
}

func sortedIDs(m map[int][]string) []int {
	var ids []int
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func lbPassword(id int) string { return passwd.SHA256Hex(fmt.Sprintf("lb-pw-%d", id)) }

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// start runs nd and waits until its control socket answers.
func (c *pgCluster) start(nd *primaryNode) {
	c.t.Helper()
	logf, err := os.OpenFile(nd.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.bin, "--prefs", nd.prefs, "run")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=", "STATE_DIRECTORY=", "RUNTIME_DIRECTORY=")
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	nd.mu.Lock()
	nd.cmd, nd.done = cmd, done
	nd.mu.Unlock()
	client := control.NewClient(nd.socket)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := client.Ready(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-done:
			b, _ := os.ReadFile(nd.log)
			c.t.Fatalf("%s exited at start:\n%s", nd.name, tailBytes(b, 3000))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s did not answer within 60s: %v", nd.name, err)
		}
	}
}

// rss is the node process's resident memory (/proc: VmRSS), "" when it
// is not running.
func (nd *primaryNode) rss() string {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd == nil {
		return ""
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", nd.cmd.Process.Pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// kill signals nd and waits for it to be gone.
func (nd *primaryNode) kill(sig syscall.Signal) {
	nd.mu.Lock()
	cmd, done := nd.cmd, nd.done
	nd.cmd = nil
	nd.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// startHAProxy runs HAProxy in the foreground, balancing round robin over
// the nodes with a health check every 200 ms, and returns its URL.
func startHAProxy(t *testing.T, bin, dir string, nodes []*primaryNode) string {
	t.Helper()
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	var servers strings.Builder
	for _, nd := range nodes {
		fmt.Fprintf(&servers, "    server %s %s check inter 200ms fall 1 rise 2\n", nd.name, nd.addr)
	}
	cfg := fmt.Sprintf(haproxyConfig, filepath.Join(dir, "haproxy.sock"), addr, servers.String())
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	logf, err := os.Create(filepath.Join(dir, "haproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("haproxy log:\n%s", tailBytes(b, 3000))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy does not listen on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// haproxyConfig is docs/haproxy.cfg's shape, on loopback, with a stats
// socket and the log on stdout: the socket's path, the frontend address,
// the server lines.
const haproxyConfig = `global
    maxconn 512
    log stdout format raw local0
    stats socket %s mode 600 level admin

defaults
    mode http
    log global
    option httplog
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 2
    option redispatch
    option forwardfor

frontend sync
    bind %s
    default_backend primaries

backend primaries
    balance roundrobin
    option httpchk
    http-check send meth GET uri /
    http-check expect status 404
%s`

// waitBalanced waits until HAProxy's health checks have every node up
// (show stat: status UP).
func (c *pgCluster) waitBalanced(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("unix", c.haproxySock, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(conn, "show stat\n")
		b, _ := io.ReadAll(conn)
		conn.Close()
		up := 0
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Split(line, ","); len(f) > 17 && f[0] == "primaries" && f[1] != "BACKEND" && f[17] == "UP" {
				up++
			}
		}
		if up == len(c.nodes) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("HAProxy has %d of %d nodes up after 30s", up, len(c.nodes))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logged returns HAProxy's log lines of requests to node ("": any) that
// contain what.
func (c *pgCluster) logged(t *testing.T, node, what string) []string {
	t.Helper()
	b, err := os.ReadFile(c.haproxyLog)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "primaries/"+node) && strings.Contains(line, what) {
			out = append(out, line)
		}
	}
	return out
}

// killWhenBusy SIGKILLs nd the moment HAProxy shows it working on a push
// (polling its stats socket), or after 30 s; it reports whether it saw
// the push.
func (c *pgCluster) killWhenBusy(t *testing.T, nd *primaryNode) bool {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	seen := false
	for time.Now().Before(deadline) && !seen {
		seen = c.pushOnServer(t, nd.name)
	}
	// nd has a push in flight now (or the deadline passed: seen is false).
	nd.kill(syscall.SIGKILL)
	return seen
}

// pushOnServer reports whether HAProxy has a stream on server whose POST
// was sent whole and awaits its answer (show sess all: meth=3 is POST,
// rsp.st=MSG_RPBEFORE no answer yet): the node is working on a push.
func (c *pgCluster) pushOnServer(t *testing.T, server string) bool {
	conn, err := net.DialTimeout("unix", c.haproxySock, time.Second)
	if err != nil {
		t.Fatalf("haproxy stats socket: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(conn, "show sess all\n")
	b, _ := io.ReadAll(conn)
	for _, stream := range strings.Split(string(b), "\n0x") {
		if strings.Contains(stream, "server="+server+" (") && strings.Contains(stream, " meth=3 ") && strings.Contains(stream, "rsp.st=MSG_RPBEFORE") {
			return true
		}
	}
	return false
}

func (c *pgCluster) openSite(path string, id int, stores []string) *lbSite {
	c.t.Helper()
	l, err := queue.OpenLocal(path, queue.LocalOptions{Logger: quiet})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { l.Close() })
	cl := &syncapi.Client{BaseURL: c.lb, User: fmt.Sprintf("site-%d", id), PasswordSHA256: lbPassword(id), HardwareID: fmt.Sprintf("hw-%d", id)}
	sat := satellite.New(l, cl, satellite.Config{SyncID: id, Stores: stores, RequestSize: 100}, quiet, adapt.SystemClock{})
	return &lbSite{id: id, stores: stores, store: l, sat: sat}
}

func (s *lbSite) write(t *testing.T, table, id, store string, n int) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{queue.StoreField: store, "n": n})
	if _, err := s.store.Write(queue.Record{Table: table, ID: id, Action: queue.Update, Data: b}); err != nil {
		t.Fatal(err)
	}
}

// syncAllUntilQuiet runs cycles of every site, all at once, until a round
// in which every cycle succeeded and nothing moved; failed cycles (a node
// killed under them) are retried, as a box's next cycle would.
func (c *pgCluster) syncAllUntilQuiet(t *testing.T, maxRounds int) (failed int) {
	t.Helper()
	for round := 0; round < maxRounds; round++ {
		res := c.syncRound()
		quiet := true
		for _, r := range res {
			if r.Err != nil {
				failed++
				quiet = false
			} else if r.Pushed+r.Pulled > 0 || r.Truncated {
				quiet = false
			}
			if r.Rewound || r.CentralReread {
				t.Errorf("a cycle saw a rewind (rewound %v, central reread %v)", r.Rewound, r.CentralReread)
			}
		}
		if quiet {
			return failed
		}
	}
	t.Fatalf("the sites are still syncing after %d rounds", maxRounds)
	return failed
}

// syncRound runs one cycle of every site at once.
func (c *pgCluster) syncRound() []satellite.Result {
	out := make([]satellite.Result, len(c.sites))
	var wg sync.WaitGroup
	for i, s := range c.sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			out[i] = s.sat.Cycle(ctx)
		}()
	}
	wg.Wait()
	return out
}

// records lists table on a site: id → data.
func (s *lbSite) records(t *testing.T, table string) map[string]string {
	t.Helper()
	out := map[string]string{}
	after := ""
	for {
		rs, err := s.store.List(table, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			out[r.ID] = string(r.Data)
		}
		if len(rs) < 1000 {
			return out
		}
		after = rs[len(rs)-1].ID
	}
}

// TestLB_threeNodesOneKilledMidPush protects stateless primary nodes: three
// syncagent processes on one database behind HAProxy serve four sites
// whose stores overlap (so every push fans out). While every site pushes
// through the balancer, one node is SIGKILLed; the sites' failed cycles are
// retried through the others. In the end every record is on every site
// that must hold it, with its last value, once; no queue holds anything;
// no outbox keeps anything or set anything aside; no site was told it
// rewound or re-read central data. The node then comes back and serves.
func TestLB_threeNodesOneKilledMidPush(t *testing.T) {
	sites := map[int][]string{12: {"a", "shared"}, 13: {"b", "shared"}, 14: {"shared"}, 15: {"a"}}
	c := newPGCluster(t, 3, sites)
	c.syncAllUntilQuiet(t, 10) // initialise every site

	const perSite = 300
	storeOf := func(s *lbSite, i int) string { return s.stores[i%len(s.stores)] }
	writeAll := func(n int) {
		for _, s := range c.sites {
			for i := range perSite {
				s.write(t, "stock", fmt.Sprintf("s%d-%d", s.id, i), storeOf(s, i), n)
			}
		}
	}
	// Every record changes again and node 2 is SIGKILLed the moment
	// HAProxy shows it working on a push (sent whole, not answered), four
	// sites pushing 100 records at a time. If the round ends before a push
	// reaches node 2, it comes back and the round is done again.
	killedMidPush := false
	for attempt := 1; attempt <= 3 && !killedMidPush; attempt++ {
		if attempt > 1 {
			c.start(c.nodes[1])
		}
		writeAll(attempt)
		done := make(chan []satellite.Result, 1)
		go func() { done <- c.syncRound() }()
		killedMidPush = c.killWhenBusy(t, c.nodes[1])
		res := <-done
		failedNow := 0
		for _, r := range res {
			if r.Err != nil {
				failedNow++
			}
		}
		failed := c.syncAllUntilQuiet(t, 20)
		// What the balancer did with the cut push: answered 502 (the site
		// pushes again), or replayed it on another node (retries and
		// redispatch); either way the push may have committed on node 2.
		t.Logf("attempt %d: killed mid-push %v; cycles failed: %d in that round, %d after; HAProxy: %d requests cut, %d redispatched to another node",
			attempt, killedMidPush, failedNow, failed, len(c.logged(t, "node2", " SH")), len(c.logged(t, "", "/+")))
		c.checkConverged(t, perSite, storeOf, attempt)
	}
	if !killedMidPush {
		t.Fatal("in 3 rounds no push reached node 2 before the round ended")
	}

	for _, nd := range c.nodes {
		if rss := nd.rss(); rss != "" {
			t.Logf("%s: VmRSS %s after serving %d sites", nd.name, rss, len(c.sites))
		}
	}

	// The node comes back and serves again; one more write goes through.
	c.start(c.nodes[1])
	c.sites[0].write(t, "stock", "after-restart", "shared", 9)
	c.syncAllUntilQuiet(t, 10)
	for _, s := range c.sites {
		if _, ok, _ := s.store.Get("stock", "after-restart"); ok != slices.Contains(s.stores, "shared") {
			t.Errorf("site %d: after-restart present = %v", s.id, ok)
		}
	}
}

// checkConverged checks that each site holds exactly the stock records of
// its stores, each with its last value (n = last), and that nothing waits.
func (c *pgCluster) checkConverged(t *testing.T, perSite int, storeOf func(*lbSite, int) string, last int) {
	t.Helper()
	want := map[int]map[string]string{}
	for _, s := range c.sites {
		want[s.id] = map[string]string{}
	}
	for _, w := range c.sites {
		for i := range perSite {
			store := storeOf(w, i)
			data := fmt.Sprintf(`{"n":%d,"store_ID":%q}`, last, store)
			for _, s := range c.sites {
				if slices.Contains(s.stores, store) {
					want[s.id][fmt.Sprintf("s%d-%d", w.id, i)] = data
				}
			}
		}
	}
	for _, s := range c.sites {
		got := s.records(t, "stock")
		missing, extra, wrong := 0, 0, 0
		for id, d := range want[s.id] {
			switch g, ok := got[id]; {
			case !ok:
				missing++
			case !sameJSON(g, d):
				wrong++
				if wrong == 1 {
					t.Errorf("site %d: %s = %s, want %s", s.id, id, g, d)
				}
			}
		}
		for id := range got {
			if _, ok := want[s.id][id]; !ok {
				extra++
			}
		}
		if missing+extra+wrong > 0 {
			t.Errorf("site %d: %d records missing, %d not its own, %d with an old value (holds %d, want %d)", s.id, missing, extra, wrong, len(got), len(want[s.id]))
		}
		if n := s.store.OutboxLen(); n != 0 {
			t.Errorf("site %d: %d changes still in the outbox", s.id, n)
		}
		if aside, _ := s.store.Aside(); len(aside) > 0 {
			t.Errorf("site %d: %d records set aside, first %+v", s.id, len(aside), aside[0])
		}
	}
	// Every queue is empty, as each live node sees it.
	for _, nd := range c.nodes {
		nd.mu.Lock()
		alive := nd.cmd != nil
		nd.mu.Unlock()
		if !alive {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := control.NewClient(nd.socket).Status(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: status: %v", nd.name, err)
		}
		for _, q := range st.Queues {
			if q.QueueLength != 0 {
				t.Errorf("%s: site %d still has %d queued", nd.name, q.SyncID, q.QueueLength)
			}
		}
	}
}

func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return a == b
	}
	return fmt.Sprint(x) == fmt.Sprint(y)
}

// pgTool runs one of PostgreSQL's client programs (pg_dump, pg_restore).
func pgTool(t *testing.T, name string, args ...string) {
	t.Helper()
	bin, err := pgtest.FindBin()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, filepath.Join(bin, name), args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

// TestLB_restoreFromDump protects what docs/postgres.md says a restore
// means: the database is dumped (pg_dump), the sites sync on (their
// changes and central data after the dump), the nodes are stopped and the
// dump restored. The sites notice the primary went back (its central log
// ends before their cursors) and read central data again; `generate --new`
// on each site (re-queue its own store data, refill its queue, remove
// what the primary no longer has) brings every site and the primary back
// in step: the sites' changes after the dump are on the primary again and
// everywhere they belong, and central data written after the dump is gone
// everywhere, as it is from the primary.
func TestLB_restoreFromDump(t *testing.T) {
	sites := map[int][]string{12: {"a", "shared"}, 13: {"b", "shared"}, 14: {"shared"}}
	c := newPGCluster(t, 2, sites)
	c.syncAllUntilQuiet(t, 10)
	const perSite = 40
	storeOf := func(s *lbSite, i int) string { return s.stores[i%len(s.stores)] }
	writeAll := func(n int) {
		for _, s := range c.sites {
			for i := range perSite {
				s.write(t, "stock", fmt.Sprintf("s%d-%d", s.id, i), storeOf(s, i), n)
			}
		}
	}
	node1 := control.NewClient(c.nodes[0].socket)
	putCentral := func(id, name string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := node1.PutRecord(ctx, "item", id, json.RawMessage(fmt.Sprintf(`{"name":%q}`, name))); err != nil {
			t.Fatal(err)
		}
	}
	writeAll(1)
	putCentral("I1", "aspirin")
	c.syncAllUntilQuiet(t, 10)

	dump := filepath.Join(t.TempDir(), "primary.dump")
	pgTool(t, "pg_dump", "--format=custom", "--file="+dump, "--dbname="+c.dsn)

	writeAll(2) // after the backup: lost by the restore, kept by the sites
	putCentral("I2", "quinine")
	c.syncAllUntilQuiet(t, 10)

	for _, nd := range c.nodes {
		nd.kill(syscall.SIGTERM)
	}
	db := strings.TrimPrefix(strings.SplitN(c.dsn[strings.LastIndex(c.dsn, "/"):], "?", 2)[0], "/")
	cl := pgtest.Shared(t)
	if err := cl.DropDatabase(db); err != nil {
		t.Fatal(err)
	}
	if err := cl.Exec("postgres", "CREATE DATABASE "+db+" TEMPLATE template0"); err != nil {
		t.Fatal(err)
	}
	pgTool(t, "pg_restore", "--no-owner", "--dbname="+c.dsn, dump)
	for _, nd := range c.nodes {
		c.start(nd)
	}
	c.waitBalanced(t)

	reread := 0
	for _, r := range c.syncRound() {
		if r.Err != nil {
			t.Fatalf("the first cycle after the restore: %v", r.Err)
		}
		if r.CentralReread {
			reread++
		}
	}
	if reread != len(c.sites) {
		t.Errorf("%d of %d sites noticed the primary's central log went back", reread, len(c.sites))
	}
	if _, after := primaryStock(t, node1); after != 0 {
		t.Fatalf("the restored primary holds %d changes made after the backup", after)
	}
	for _, s := range c.sites {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		n, err := s.sat.Generate(ctx, true)
		cancel()
		if err != nil || n == 0 {
			t.Fatalf("site %d: generate --new: %d, %v", s.id, n, err)
		}
	}
	c.syncAllUntilQuiet(t, 20)
	c.checkConverged(t, perSite, storeOf, 2)
	for _, s := range c.sites {
		items := s.records(t, "item")
		if _, ok := items["I1"]; !ok {
			t.Errorf("site %d lost I1 (before the backup)", s.id)
		}
		if _, ok := items["I2"]; ok {
			t.Errorf("site %d still holds I2, which the restored primary does not have", s.id)
		}
	}
	if all, back := primaryStock(t, node1); all != perSite*len(c.sites) || back != all {
		t.Errorf("the primary holds %d stock records, %d with the sites' changes after the backup; want %d", all, back, perSite*len(c.sites))
	}
}

// primaryStock counts the primary's stock records, and those holding the
// sites' changes after the backup (n = 2).
func primaryStock(t *testing.T, node *control.Client) (all, after int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := node.ListRecords(ctx, "stock", "", 10000)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if strings.Contains(string(r.Data), `"n":2`) {
			after++
		}
	}
	return len(recs), after
}

// TestLB_sampleConfigIsValid protects docs/haproxy.cfg: HAProxy accepts it
// (haproxy -c), with the TLS bind and the stats socket moved to what this
// machine has.
func TestLB_sampleConfigIsValid(t *testing.T) {
	bin := findHAProxy(t)
	b, err := os.ReadFile("../../docs/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "bind :443 ssl crt /etc/haproxy/central.pem", "bind :443", 1)
	cfg = strings.ReplaceAll(cfg, "/run/haproxy/admin.sock", filepath.Join(t.TempDir(), "admin.sock"))
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c docs/haproxy.cfg: %v\n%s", err, out)
	}
}
