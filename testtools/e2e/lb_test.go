package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	pushing     atomic.Int64 // pushes in flight from the sites
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
	t.Cleanup(func() { os.RemoveAll(base) })
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
		_, err := client.Status(ctx)
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

// cutRequest returns the request of the last entry of HAProxy's log for
// node that the server side ended (termination state S…, or 502), "" if
// there is none.
func (c *pgCluster) cutRequest(t *testing.T, node string) string {
	t.Helper()
	b, err := os.ReadFile(c.haproxyLog)
	if err != nil {
		t.Fatal(err)
	}
	last := ""
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, "primaries/"+node+" ") {
			continue
		}
		if strings.Contains(line, " 502 ") || strings.Contains(line, " SH") || strings.Contains(line, " SD") {
			if i := strings.IndexByte(line, '"'); i >= 0 {
				last = line[i:]
			}
		}
	}
	return last
}

// pushCounter counts a site's pushes in flight.
type pushCounter struct {
	n    *atomic.Int64
	next http.RoundTripper
}

func (p pushCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, syncapi.EndpointQueued) {
		p.n.Add(1)
		defer p.n.Add(-1)
	}
	return p.next.RoundTrip(r)
}

// killWhenBusy SIGKILLs nd the moment the sites have pushes in flight and
// HAProxy counts a session on nd (polling its stats socket), or after 30 s.
func (c *pgCluster) killWhenBusy(t *testing.T, nd *primaryNode) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c.pushing.Load() >= 2 && c.sessions(t, nd.name) > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	nd.kill(syscall.SIGKILL)
}

// sessions is HAProxy's count of current sessions on server (show stat).
func (c *pgCluster) sessions(t *testing.T, server string) int {
	conn, err := net.DialTimeout("unix", c.haproxySock, time.Second)
	if err != nil {
		t.Fatalf("haproxy stats socket: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(conn, "show stat\n")
	b, _ := io.ReadAll(conn)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ",")
		if len(f) > 4 && f[0] == "primaries" && f[1] == server {
			n, _ := strconv.Atoi(f[4]) // scur
			return n
		}
	}
	return 0
}

func (c *pgCluster) openSite(path string, id int, stores []string) *lbSite {
	c.t.Helper()
	l, err := queue.OpenLocal(path, queue.LocalOptions{Logger: quiet})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { l.Close() })
	cl := &syncapi.Client{BaseURL: c.lb, User: fmt.Sprintf("site-%d", id), PasswordSHA256: lbPassword(id), HardwareID: fmt.Sprintf("hw-%d", id),
		HTTP: &http.Client{Transport: pushCounter{&c.pushing, http.DefaultTransport}}}
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
	// Every record changes again and node 2 is SIGKILLed the moment it has
	// a request in flight (pushes of 100 records, four sites at once); the
	// balancer's log says which request the kill cut. Until that was a
	// push, node 2 comes back and it is done again.
	var cut string
	for attempt := 1; attempt <= 5 && cut == ""; attempt++ {
		if attempt > 1 {
			c.start(c.nodes[1])
		}
		writeAll(attempt)
		done := make(chan []satellite.Result, 1)
		go func() { done <- c.syncRound() }()
		c.killWhenBusy(t, c.nodes[1])
		res := <-done
		failedNow := 0
		for _, r := range res {
			if r.Err != nil {
				failedNow++
			}
		}
		failed := c.syncAllUntilQuiet(t, 20)
		cut = c.cutRequest(t, "node2")
		t.Logf("attempt %d: node 2 killed with %q in flight; cycles failed: %d in that round, %d after", attempt, cut, failedNow, failed)
		if !strings.Contains(cut, "POST /sync/v5/queued_records") {
			cut = ""
		}
		if attempt == 5 && cut == "" {
			t.Fatal("in 5 attempts the kill never cut a push in flight")
		}
		c.checkConverged(t, perSite, storeOf, attempt)
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
