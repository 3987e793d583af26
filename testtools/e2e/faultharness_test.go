package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/rs/zerolog"

	"syncagent/agent/adapt"
	"syncagent/agent/primary"
	"syncagent/agent/satellite"
	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// Network faults: a real primary (its own BuntDB file and HTTP server on a
// fixed loopback port, so it can be restarted) behind an in-process
// toxiproxy, and satellites that reach it only through the proxy.

// livePrimary is a primary that can be stopped and started again on the
// same address and datafile.
type livePrimary struct {
	t       *testing.T
	path    string
	addr    string
	rows    []primary.SiteRow
	central *queue.Central
	prim    *primary.Server
	srv     *http.Server
	done    chan struct{}
}

func newLivePrimary(t *testing.T, stores map[int][]string) *livePrimary {
	t.Helper()
	p := &livePrimary{t: t, path: filepath.Join(t.TempDir(), "central.db"), rows: siteRows(t, stores)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = l.Addr().String()
	p.start(l)
	t.Cleanup(p.stop)
	return p
}

// start opens the datafile and serves on l (nil: listen on p.addr again).
func (p *livePrimary) start(l net.Listener) {
	p.t.Helper()
	var err error
	if l == nil {
		for i := 0; ; i++ { // the old socket may linger a moment
			if l, err = net.Listen("tcp", p.addr); err == nil || i == 50 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			p.t.Fatal(err)
		}
	}
	if p.central, err = queue.OpenCentral(p.path, queue.CentralOptions{Logger: quiet}); err != nil {
		p.t.Fatal(err)
	}
	if p.prim, err = primary.New(p.central, primary.Config{Sites: p.rows}, quiet, nil); err != nil {
		p.t.Fatal(err)
	}
	p.srv = primary.NewHTTPServer(p.addr, p.prim.Handler(), quiet)
	p.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) { srv.Serve(l); close(done) }(p.srv, p.done)
}

// stop closes every connection at once (no graceful shutdown: a crash as
// the satellites see it) and closes the datafile.
func (p *livePrimary) stop() {
	if p.srv == nil {
		return
	}
	p.srv.Close()
	<-p.done
	p.central.Close()
	p.srv = nil
}

// newProxy puts an in-process toxiproxy in front of upstream.
func newProxy(t *testing.T, upstream string) *toxiproxy.Proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "primary", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

func addToxic(t *testing.T, p *toxiproxy.Proxy, name, kind, direction string, attrs map[string]any) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"name": name, "type": kind, "stream": direction, "toxicity": 1.0, "attributes": attrs})
	if _, err := p.Toxics.AddToxicJson(bytes.NewReader(b)); err != nil {
		t.Fatalf("add toxic %s: %v", name, err)
	}
}

func removeToxic(t *testing.T, p *toxiproxy.Proxy, name string) {
	t.Helper()
	if err := p.Toxics.RemoveToxic(context.Background(), name); err != nil {
		t.Fatalf("remove toxic %s: %v", name, err)
	}
}

// A cut is a pair of toxics that loses the response of chosen requests
// after the primary has handled them: "sa_watch" (upstream) spots the
// request line, "sa_cut" (downstream) then drops the response and closes
// the connection. Requests run one at a time in these tests, so the next
// response after a spotted request is its response.
type cut struct {
	match []byte
	left  atomic.Int32 // requests still to cut
	armed atomic.Int32 // spotted requests whose response is still to drop
	done  atomic.Int32 // responses dropped
}

var cuts sync.Map // name → *cut

type watchToxic struct {
	Cut  string `json:"cut"`
	Drop bool   `json:"drop"` // lose the spotted request itself, before the primary sees it
}

func (w *watchToxic) Pipe(stub *toxics.ToxicStub) {
	c, _ := cuts.Load(w.Cut)
	for {
		select {
		case <-stub.Interrupt:
			return
		case chunk := <-stub.Input:
			if chunk == nil {
				stub.Close()
				return
			}
			if c, ok := c.(*cut); ok && bytes.Contains(chunk.Data, c.match) && c.left.Add(-1) >= 0 {
				if w.Drop {
					c.done.Add(1)
					stub.Close()
					return
				}
				c.armed.Add(1)
			}
			stub.Output <- chunk
		}
	}
}

type cutToxic struct {
	Cut string `json:"cut"`
}

func (x *cutToxic) Pipe(stub *toxics.ToxicStub) {
	c, _ := cuts.Load(x.Cut)
	for {
		select {
		case <-stub.Interrupt:
			return
		case chunk := <-stub.Input:
			if chunk == nil {
				stub.Close()
				return
			}
			if c, ok := c.(*cut); ok && c.armed.Load() > 0 {
				c.armed.Add(-1)
				c.done.Add(1)
				stub.Close() // the primary has answered; the answer is lost
				return
			}
			stub.Output <- chunk
		}
	}
}

func init() {
	zerolog.SetGlobalLevel(zerolog.Disabled) // toxiproxy's toxics log through the global logger
	toxics.Register("sa_watch", new(watchToxic))
	toxics.Register("sa_cut", new(cutToxic))
}

// cutAfterCommit loses the responses of the next n requests whose request
// line starts with method and endpoint (e.g. "POST", "queued_records"):
// the primary handles them, the satellite never hears back.
func cutAfterCommit(t *testing.T, p *toxiproxy.Proxy, method, endpoint string, n int) *cut {
	t.Helper()
	return addCut(t, p, method, endpoint, n, false)
}

// loseRequest loses the next n such requests before they reach the primary.
func loseRequest(t *testing.T, p *toxiproxy.Proxy, method, endpoint string, n int) *cut {
	t.Helper()
	return addCut(t, p, method, endpoint, n, true)
}

var cutSeq atomic.Int32

func addCut(t *testing.T, p *toxiproxy.Proxy, method, endpoint string, n int, drop bool) *cut {
	t.Helper()
	name := fmt.Sprintf("cut-%d", cutSeq.Add(1))
	c := &cut{match: []byte(method + " " + syncapi.PathPrefix + endpoint)}
	c.left.Store(int32(n))
	cuts.Store(name, c)
	addToxic(t, p, name+"-watch", "sa_watch", "upstream", map[string]any{"cut": name, "drop": drop})
	if !drop {
		addToxic(t, p, name+"-cut", "sa_cut", "downstream", map[string]any{"cut": name})
	}
	t.Cleanup(func() { cuts.Delete(name) })
	return c
}

// faultSite is a satellite that reaches the primary through url, with its
// own deadline per call and request size (0: adaptive).
func faultSite(t *testing.T, id int, stores []string, url string, size int, timeout time.Duration) *site {
	t.Helper()
	l, err := queue.OpenLocal(filepath.Join(t.TempDir(), fmt.Sprintf("site-%d.db", id)), queue.LocalOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	hc := &http.Client{Transport: &countingTransport{rt: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 2}}}
	t.Cleanup(hc.CloseIdleConnections)
	cl := &syncapi.Client{BaseURL: url, User: fmt.Sprintf("site-%d", id), PasswordSHA256: password(id),
		HardwareID: fmt.Sprintf("hw-%d", id), Timeout: timeout, HTTP: hc}
	s := &site{id: id, store: l, client: cl}
	s.sat = satellite.New(l, cl, satellite.Config{Stores: stores, RequestSize: size}, quiet, adapt.SystemClock{})
	return s
}

// putN writes n records of store on s: stock/<prefix>-<i> with qty i and
// pad bytes of random hex (gzip cannot shrink it away).
func putN(t *testing.T, s *site, prefix, store string, n int, pad int) {
	t.Helper()
	for i := 0; i < n; i++ {
		b := make([]byte, (pad+1)/2)
		rand.Read(b)
		s.put(t, "stock", fmt.Sprintf("%s-%03d", prefix, i), store, map[string]any{"qty": i, "pad": hex.EncodeToString(b)[:pad]})
	}
}

// syncUntilDrained runs cycles until one succeeds with an empty outbox.
func syncUntilDrained(t *testing.T, s *site, tries int) {
	t.Helper()
	var last error
	for i := 0; i < tries; i++ {
		res := s.sat.Cycle(context.Background())
		if res.Err == nil && s.store.OutboxLen() == 0 {
			return
		}
		last = res.Err
	}
	t.Fatalf("site %d: not drained after %d cycles (outbox %d): %v", s.id, tries, s.store.OutboxLen(), last)
}

// holdsExactly checks that s holds exactly the n records prefix-000… with
// their qty, and nothing else of that prefix.
func holdsExactly(t *testing.T, s *site, prefix string, n int) {
	t.Helper()
	recs, err := s.store.List("stock", "", 100000)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, r := range recs {
		if !strings.HasPrefix(r.ID, prefix+"-") {
			continue
		}
		got++
		var d struct{ Qty int }
		json.Unmarshal(r.Data, &d)
		if want := fmt.Sprintf("%s-%03d", prefix, d.Qty); r.ID != want {
			t.Errorf("site %d: %s holds qty %d", s.id, r.ID, d.Qty)
		}
	}
	if got != n {
		t.Errorf("site %d holds %d records %s-*, want %d", s.id, got, prefix, n)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// proxyURL is a proxy and the URL satellites use to reach the primary.
type proxyURL struct {
	*toxiproxy.Proxy
	url string
}

// countingTransport counts the calls that ran out of time.
type countingTransport struct {
	rt       *http.Transport
	timeouts atomic.Int32
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(r)
	if err != nil && isTimeout(err) {
		c.timeouts.Add(1)
	}
	return resp, err
}

func (c *countingTransport) CloseIdleConnections() { c.rt.CloseIdleConnections() }

// callTimeouts is how many of s's calls ran out of time.
func callTimeouts(s *site) int {
	return int(s.client.HTTP.Transport.(*countingTransport).timeouts.Load())
}
