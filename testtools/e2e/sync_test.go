package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// TestSync_routesByStore protects routing: a record reaches exactly the sites
// where its store is active, never a third site; central data reaches all.
func TestSync_routesByStore(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"a", "shared"}, 3: {"b", "shared"}, 4: {"c"}})
	a, b, c := w.sats[2], w.sats[3], w.sats[4]
	for _, s := range []*site{a, b, c} {
		s.sync(t) // initialise each site
	}
	a.put(t, "stock", "s1", "shared", map[string]any{"qty": 5})
	a.put(t, "stock", "s2", "a", map[string]any{"qty": 7})
	if _, err := w.prim.Write(queue.Record{Table: "item", ID: "i1", Action: queue.Insert, Data: json.RawMessage(`{"name":"amoxicillin"}`)}); err != nil {
		t.Fatal(err)
	}
	if res := a.sync(t); res.Pushed != 2 {
		t.Fatalf("pushed %d, want 2", res.Pushed)
	}
	b.sync(t)
	c.sync(t)

	if got, ok := b.has(t, "stock", "s1"); !ok || got["qty"] != 5.0 {
		t.Errorf("B: shared record = %v %v, want qty 5", got, ok)
	}
	if _, ok := b.has(t, "stock", "s2"); ok {
		t.Error("B holds a record of store a, which is not active on B")
	}
	if _, ok := c.has(t, "stock", "s1"); ok {
		t.Error("C holds a record of store shared, which is not active on C")
	}
	for _, s := range []*site{a, b, c} {
		if _, ok := s.has(t, "item", "i1"); !ok {
			t.Errorf("site %d lacks the central record", s.id)
		}
	}
	if n := w.central.QueueLen(2); n != 0 {
		t.Errorf("A's own record was queued back to it: queue %d", n)
	}
	// An update and a delete travel the same way.
	a.put(t, "stock", "s1", "shared", map[string]any{"qty": 6})
	a.sync(t)
	b.sync(t)
	if got, _ := b.has(t, "stock", "s1"); got["qty"] != 6.0 {
		t.Errorf("B: after update qty = %v, want 6", got["qty"])
	}
	if _, err := a.store.Write(queue.Record{Table: "stock", ID: "s1", Action: queue.Delete}); err != nil {
		t.Fatal(err)
	}
	a.sync(t)
	b.sync(t)
	if _, ok := b.has(t, "stock", "s1"); ok {
		t.Error("B still holds a record deleted on A")
	}
}

// TestSync_hardwarePin protects pinning: another box presenting a pinned
// site's credentials is refused until the pin is cleared on the primary.
func TestSync_hardwarePin(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"a"}})
	w.sats[2].sync(t) // pins hw-2
	impostor := w.newSite(2, []string{"a"}, w.srv.URL)
	impostor.client.HardwareID = "hw-other"
	res := impostor.sat.Cycle(context.Background())
	if e, ok := syncapi.AsError(res.Err); !ok || e.Status != 401 || e.Code != syncapi.CodeSiteIncorrectHWID {
		t.Fatalf("impostor: err = %v, want 401 %s", res.Err, syncapi.CodeSiteIncorrectHWID)
	}
	if err := w.prim.ClearPin(2); err != nil {
		t.Fatal(err)
	}
	impostor.sync(t) // the replacement box is pinned now
	res = w.sats[2].sat.Cycle(context.Background())
	if e, ok := syncapi.AsError(res.Err); !ok || e.Code != syncapi.CodeSiteIncorrectHWID {
		t.Errorf("old box after re-pin: err = %v, want %s", res.Err, syncapi.CodeSiteIncorrectHWID)
	}
}

// TestSync_wrongPassword protects authentication.
func TestSync_wrongPassword(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"a"}})
	s := w.sats[2]
	s.client.PasswordSHA256 = strings.Repeat("0", 64)
	res := s.sat.Cycle(context.Background())
	if e, ok := syncapi.AsError(res.Err); !ok || e.Status != 401 || e.Code != syncapi.CodeSiteIncorrectPassword {
		t.Fatalf("err = %v, want 401 %s", res.Err, syncapi.CodeSiteIncorrectPassword)
	}
	status, body := w.raw("GET", "/sync/v5/site", 99, "hw", "")
	if status != 401 || !strings.Contains(string(body), syncapi.CodeSiteNameNotFound) {
		t.Errorf("unknown user: %d %s", status, body)
	}
}

// TestSync_passwordGuessing protects the per-site lockout.
func TestSync_passwordGuessing(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"a"}, 3: {"b"}})
	bad := &syncapi.Client{BaseURL: w.srv.URL, User: "site-2", PasswordSHA256: strings.Repeat("1", 64), HardwareID: "hw-2"}
	var last error
	for i := 0; i < 6; i++ {
		_, last = bad.Site(context.Background())
	}
	if e, ok := syncapi.AsError(last); !ok || e.Code != syncapi.CodeSiteAuthTimeout {
		t.Fatalf("after 6 wrong passwords: %v, want %s", last, syncapi.CodeSiteAuthTimeout)
	}
	// The right password is refused too while locked; other sites are served.
	if _, err := w.sats[2].client.Site(context.Background()); err == nil {
		t.Error("locked site let in")
	}
	if _, err := w.sats[3].client.Site(context.Background()); err != nil {
		t.Errorf("another site refused during a lockout: %v", err)
	}
}

// TestSync_foreignStoreRefused protects store checks: a site pushing a store
// not active on it is refused, the rest of the batch applies, and the refused
// record is set aside on the satellite instead of blocking the outbox.
func TestSync_foreignStoreRefused(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"a"}, 3: {"b"}})
	a := w.sats[2]
	a.put(t, "stock", "mine", "a", nil)
	a.put(t, "stock", "theirs", "b", nil)
	res := a.sync(t)
	if res.Pushed != 1 || res.SetAside != 1 {
		t.Fatalf("pushed %d set aside %d, want 1 and 1", res.Pushed, res.SetAside)
	}
	if a.store.OutboxLen() != 0 {
		t.Error("refused record still blocks the outbox")
	}
	aside, err := a.store.Aside()
	if err != nil || len(aside) != 1 || aside[0].Record.ID != "theirs" || !strings.Contains(aside[0].Reason, syncapi.CodeStoreNotActive) {
		t.Fatalf("aside = %+v, %v", aside, err)
	}
	// A technician can put it back; it is refused again (nothing else moved).
	if err := a.store.RetryAside("stock", "theirs"); err != nil || a.store.OutboxLen() != 1 {
		t.Fatalf("retry: %v, outbox %d", err, a.store.OutboxLen())
	}
	if res := a.sync(t); res.SetAside != 1 {
		t.Errorf("retried foreign record: set aside %d, want 1", res.SetAside)
	}
	if _, ok, _ := w.central.Get("stock", "theirs"); ok {
		t.Error("the primary stored a record of a foreign store")
	}
	w.sats[3].sync(t)
	if _, ok := w.sats[3].has(t, "stock", "theirs"); ok {
		t.Error("a foreign-store record was routed")
	}
	// A batch whose every record is refused still answers 200 (a v5 client
	// that does not read "refused" would otherwise push it for ever), lists
	// the refusal, and the site is sent a delete of what it must not hold.
	body := `{"queueLength":0,"data":[{"syncOutId":"x1","tableName":"stock","recordId":"z","action":"insert","recordData":{"store_ID":"b"}}]}`
	status, b := w.raw("POST", "/sync/v5/queued_records", 2, "hw-2", body)
	if status != 200 || !strings.Contains(string(b), syncapi.CodeStoreNotActive) {
		t.Errorf("batch of refused records: %d %s", status, b)
	}
	if q, _, _ := w.central.Queued(2, 10); len(q) != 1 || q[0].Record.ID != "z" || q[0].Record.Action != queue.Delete {
		t.Errorf("site 2 was not answered with a delete: %+v", q)
	}
}

// TestSync_duplicatePushChangesNothing protects the primary against a batch
// sent twice (the response was lost after it committed).
func TestSync_duplicatePushChangesNothing(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"s"}, 3: {"s"}})
	w.sats[3].sync(t)
	body := `{"queueLength":0,"data":[{"syncOutId":"e-1","tableName":"stock","recordId":"r","action":"insert","recordData":{"store_ID":"s","qty":1}}]}`
	for i := 0; i < 2; i++ {
		if status, b := w.raw("POST", "/sync/v5/queued_records", 2, "hw-2", body); status != 200 {
			t.Fatalf("push %d: %d %s", i, status, b)
		}
	}
	if n := w.central.QueueLen(3); n != 1 {
		t.Errorf("site 3 queue = %d after a duplicated push, want 1", n)
	}
}

// dropper is a reverse proxy that breaks the connection of the first n
// requests to one endpoint: after the primary answered (afterCommit: the
// response is lost) or before the request reaches it (the request is lost).
func dropper(t *testing.T, target, method, endpoint string, n int32, afterCommit bool) *httptest.Server {
	u, _ := url.Parse(target)
	proxy := httputil.NewSingleHostReverseProxy(u)
	var left atomic.Int32
	left.Store(n)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == method && strings.HasSuffix(r.URL.Path, endpoint) && left.Add(-1) >= 0 {
			if afterCommit {
				proxy.ServeHTTP(httptest.NewRecorder(), r) // the primary commits...
			}
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			conn.Close() // ...and the answer is lost
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestSync_lostResponses protects at-least-once delivery with idempotent
// apply: a lost push response and a lost acknowledgement change nothing.
func TestSync_lostResponses(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"s"}, 3: {"s"}})
	a, b := w.sats[2], w.sats[3]
	a.sync(t)
	b.sync(t)
	lossy := dropper(t, w.srv.URL, "POST", "queued_records", 1, true)
	a.client.BaseURL = lossy.URL
	a.put(t, "stock", "r1", "s", map[string]any{"qty": 1})
	a.put(t, "stock", "r2", "s", map[string]any{"qty": 2})
	a.sat.Cycle(context.Background()) // first push answer lost, retried in the cycle
	if a.store.OutboxLen() != 0 {
		a.sync(t)
	}
	if n := w.central.QueueLen(3); n != 2 {
		t.Fatalf("site 3 queue = %d after a lost push response, want 2", n)
	}
	// Every try of the acknowledgement in the cycle is lost (it is retried
	// at once, maxConsecutiveFailures = 4 times).
	lossyAck := dropper(t, w.srv.URL, "POST", "acknowledged_records", 4, false)
	b.client.BaseURL = lossyAck.URL
	res := b.sat.Cycle(context.Background())
	if res.Err == nil {
		t.Fatal("every acknowledgement was dropped, the cycle should report it")
	}
	if got, ok := b.has(t, "stock", "r2"); !ok || got["qty"] != 2.0 {
		t.Fatalf("records not applied before the acknowledgement: %v", got)
	}
	if n := w.central.QueueLen(3); n != 2 {
		t.Fatalf("queue = %d: records left the queue without an acknowledgement", n)
	}
	res = b.sync(t) // delivered again, applied again: no change
	if res.Pulled != 2 {
		t.Errorf("redelivered %d, want 2", res.Pulled)
	}
	if n := w.central.QueueLen(3); n != 0 {
		t.Errorf("queue = %d after the acknowledgement, want 0", n)
	}
	// An acknowledgement whose answer is lost after the primary committed it
	// is not a loss either: the records are durable on the site.
	a.client.BaseURL = w.srv.URL
	a.put(t, "stock", "r3", "s", map[string]any{"qty": 3})
	a.sync(t)
	b.client.BaseURL = dropper(t, w.srv.URL, "POST", "acknowledged_records", 1, true).URL
	if res := b.sat.Cycle(context.Background()); res.Err != nil {
		t.Errorf("a lost acknowledgement answer is retried at once; the cycle failed: %v", res.Err)
	}
	if got, ok := b.has(t, "stock", "r3"); !ok || got["qty"] != 3.0 || w.central.QueueLen(3) != 0 {
		t.Errorf("after a lost ack answer: r3 = %v %v, queue %d", got, ok, w.central.QueueLen(3))
	}
	recs, _ := b.store.List("stock", "", 10)
	if len(recs) != 3 {
		t.Errorf("site 3 holds %d records, want 3 (r1, r2, r3 once each)", len(recs))
	}
}

// TestProtocol_endpointsMatchExamples protects the JSON of every endpoint
// of the real primary against the examples of PROTOCOL.md, field for field.
func TestProtocol_endpointsMatchExamples(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"s"}, 3: {"s"}})
	w.prim.Write(queue.Record{Table: "item", ID: "i1", Action: queue.Insert, Data: json.RawMessage(`{"n":1}`)})
	w.prim.Write(queue.Record{Table: "item", ID: "i0", Action: queue.Insert, Data: json.RawMessage(`{"n":1}`)})
	w.prim.Write(queue.Record{Table: "item", ID: "i0", Action: queue.Delete})
	push := `{"queueLength":0,"data":[{"syncOutId":"p1","tableName":"stock","recordId":"r","action":"Insert","recordData":{"store_ID":"s"}}]}`
	cases := []struct {
		method, path, body, example string
		status                      int
		site                        int
	}{
		{"GET", "/sync/v5/site", "", "site.json", 200, 3},
		{"GET", "/sync/v5/site_status", "", "site_status.json", 200, 3},
		{"POST", "/sync/v5/queued_records", push, "push_response.json", 200, 2},
		{"POST", "/sync/v5/initialise", "", "initialise.json", 200, 3},
		{"GET", "/sync/v5/central_records?cursor=0&limit=10", "", "central_records.json", 200, 3},
		{"GET", "/sync/v5/queued_records?limit=10", "", "queued_records.json", 200, 3},
		{"POST", "/sync/v5/acknowledged_records", `{"syncIDs":["nope"]}`, "", 204, 3},
		{"GET", "/sync/v5/site", "", "error.json", 401, 2}, // wrong hardware ID below
	}
	for _, c := range cases {
		hwid := "hw-" + string(rune('0'+c.site))
		if c.example == "error.json" {
			hwid = "someone-else"
		}
		status, body := w.raw(c.method, c.path, c.site, hwid, c.body)
		if status != c.status {
			t.Errorf("%s %s: status %d, want %d (%s)", c.method, c.path, status, c.status, body)
			continue
		}
		if c.example == "" {
			if len(body) != 0 {
				t.Errorf("%s: 204 with a body %s", c.path, body)
			}
			continue
		}
		want, err := os.ReadFile(filepath.Join("..", "..", "agent", "syncapi", "testdata", c.example))
		if err != nil {
			t.Fatal(err)
		}
		if got, wantShape := fields(t, body), fields(t, want); !reflect.DeepEqual(got, wantShape) {
			t.Errorf("%s %s fields:\n got %v\nwant %v\nbody %s", c.method, c.path, got, wantShape, body)
		}
	}
}

// fields lists the dotted field paths of a JSON document; optional extras the
// protocol allows (code, name on site) are dropped.
func fields(t *testing.T, raw []byte) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("not JSON: %s", raw)
	}
	set := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				if prefix == "" && (k == "code" || k == "name") && x["siteId"] != nil {
					continue
				}
				set[prefix+k] = true
				walk(prefix+k+".", val)
			}
		case []any:
			for _, e := range x {
				if m, ok := e.(map[string]any); ok {
					walk(prefix+"[].", m)
				}
			}
		}
	}
	walk("", v)
	var out []string
	for k := range set {
		if strings.Contains(k, "recordData.") {
			continue // record contents are the app's, not the protocol's
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
