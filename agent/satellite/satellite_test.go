package satellite

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"syncagent/agent/adapt"
	"syncagent/agent/syncapi"
	"syncagent/queue"
)

var quiet = slog.New(slog.DiscardHandler)

// primary is a scripted primary: initialised sites, empty pulls, and pushes
// answered by answer (nil: all taken).
type primary struct {
	mu      sync.Mutex
	answer  func(p syncapi.Push) (status int, body string)
	pushes  []syncapi.Push // with data
	closing int            // empty closing batches
	hang    chan struct{}  // when set, pushes with data wait for it or the request's end
	srv     *httptest.Server
}

func newPrimary(t *testing.T) *primary {
	p := &primary{}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *primary) serve(w http.ResponseWriter, r *http.Request) {
	ep := strings.TrimPrefix(r.URL.Path, syncapi.PathPrefix)
	reply := func(status int, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
	switch {
	case ep == syncapi.EndpointSite:
		reply(200, `{"id":"x","siteId":2,"initialisationStatus":"completed","isOmSupplyCentralServer":false,"omSupplyCentralServerUrl":"","mSupplyCentralSiteId":1}`)
	case ep == syncapi.EndpointSiteStatus:
		reply(200, `{"code":"idle","message":"idle","data":null}`)
	case ep == syncapi.EndpointInitialise:
		reply(200, `{"queueLength":0}`)
	case ep == syncapi.EndpointCentral:
		reply(200, `{"maxCursor":0,"data":[]}`)
	case ep == syncapi.EndpointQueued && r.Method == http.MethodGet:
		reply(200, `{"queueLength":0,"data":[]}`)
	case ep == syncapi.EndpointQueued:
		var push syncapi.Push
		if err := json.NewDecoder(r.Body).Decode(&push); err != nil {
			reply(400, `{"error":{"code":"bad_request","message":"bad","data":null}}`)
			return
		}
		p.mu.Lock()
		if len(push.Data) == 0 {
			p.closing++
			p.mu.Unlock()
			reply(200, `{"integrationStarted":true}`)
			return
		}
		p.pushes = append(p.pushes, push)
		answer, hang := p.answer, p.hang
		p.mu.Unlock()
		if hang != nil {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		if answer != nil {
			if status, body := answer(push); status != 0 {
				if status < 0 { // the connection dies
					conn, _, _ := w.(http.Hijacker).Hijack()
					conn.Close()
					return
				}
				reply(status, body)
				return
			}
		}
		reply(200, `{"integrationStarted":false}`)
	default:
		reply(404, `{"error":{"code":"not_found","message":"no","data":null}}`)
	}
}

func (p *primary) set(answer func(syncapi.Push) (int, string)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answer, p.pushes = answer, nil
}

func (p *primary) batches() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n []int
	for _, b := range p.pushes {
		n = append(n, len(b.Data))
	}
	return n
}

type box struct {
	store *queue.Local
	sat   *Satellite
	cl    *syncapi.Client
}

func newBox(t *testing.T, url string, cfg Config) *box {
	t.Helper()
	l, err := queue.OpenLocal(filepath.Join(t.TempDir(), "satellite.db"), queue.LocalOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	cl := &syncapi.Client{BaseURL: url, User: "u", PasswordSHA256: "p", HardwareID: "hw", Timeout: 2 * time.Second}
	if cfg.Stores == nil {
		cfg.Stores = []string{"s"}
	}
	return &box{store: l, cl: cl, sat: New(l, cl, cfg, quiet, adapt.NewFakeClock(time.Unix(1e9, 0)))}
}

func (b *box) put(t *testing.T, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, err := b.store.Write(queue.Record{Table: "stock", ID: id, Action: queue.Update, Data: json.RawMessage(`{"store_ID":"s"}`)}); err != nil {
			t.Fatal(err)
		}
	}
}

func (b *box) aside(t *testing.T) []string {
	t.Helper()
	as, err := b.store.Aside()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range as {
		ids = append(ids, a.Record.ID)
	}
	return ids
}

const nginx502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"

func v5(code string, data string) string {
	if data == "" {
		data = "null"
	}
	return fmt.Sprintf(`{"error":{"code":%q,"message":"%s refused","data":%s}}`, code, code, data)
}

// refuseAll lists every record of a push as refused with code.
func refuseAll(p syncapi.Push, code string) string {
	var rs []string
	for _, q := range p.Data {
		rs = append(rs, fmt.Sprintf(`{"syncOutId":%q,"error":{"code":%q,"message":"no"}}`, q.SyncOutID, code))
	}
	return "[" + strings.Join(rs, ",") + "]"
}

// TestPush_refusalVersusLink protects issue 10 item 6: only the primary's
// refusal of a record sets it aside. A lone record whose pushes meet the
// link (proxy pages, empty 5xx, resets, timeouts, 429), a v5 5xx, or a
// refusal of the whole site (401, 403, 409 without per-record reasons)
// stays in the outbox, however often it fails.
func TestPush_refusalVersusLink(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		aside  bool
	}{
		{"nginx 502", 502, nginx502, false},
		{"nginx 504", 504, strings.ReplaceAll(nginx502, "502 Bad Gateway", "504 Gateway Time-out"), false},
		{"empty 503", 503, "", false},
		{"plain 500", 500, "Internal Server Error", false},
		{"connection reset", -1, "", false},
		{"v5 500", 500, v5(syncapi.CodeIntegrationError, ""), false},
		{"v5 503 storage", 503, v5(syncapi.CodeStorage, ""), false},
		{"v5 429", 429, v5(syncapi.CodeSiteAuthTimeout, ""), false},
		{"plain 429", 429, "Too Many Requests", false},
		{"proxy 413", 413, "<html>413 Request Entity Too Large</html>", false},
		{"proxy 400", 400, "<html><h1>400 Request Header Or Cookie Too Large</h1></html>", false},
		{"v5 401", 401, v5(syncapi.CodeSiteIncorrectPassword, ""), false},
		{"v5 403 no store", 403, v5(syncapi.CodeSiteHasNoStore, ""), false},
		{"v5 409", 409, v5(syncapi.CodeAPIVersion, `{"major":1,"minor":1}`), false},
		// Per-record reasons that name no record of the batch say nothing about it.
		{"v5 403 others' records", 403, v5(syncapi.CodeStoreNotActive, `[{"syncOutId":"elsewhere-1","error":{"code":"store_not_active","message":"no"}}]`), false},
		{"v5 400 invalid", 400, v5(syncapi.CodeInvalidRecord, ""), true},
		{"v5 413 too large", 413, v5(syncapi.CodeBodyTooLarge, ""), true},
		{"v5 422", 422, v5("unprocessable", ""), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPrimary(t)
			b := newBox(t, p.srv.URL, Config{})
			b.sat.Cycle(context.Background())
			b.put(t, "r1")
			p.set(func(syncapi.Push) (int, string) { return tc.status, tc.body })
			for range 5 {
				if res := b.sat.Cycle(context.Background()); res.Err == nil && !tc.aside {
					t.Fatalf("cycle succeeded against %s", tc.name)
				}
			}
			if got := len(b.aside(t)) == 1; got != tc.aside {
				t.Fatalf("set aside = %v (%v), want %v", got, b.aside(t), tc.aside)
			}
			if !tc.aside && b.store.OutboxLen() != 1 {
				t.Fatalf("outbox = %d, want the record still waiting", b.store.OutboxLen())
			}
		})
	}
}

// TestPush_timeoutNeverSetsAside: a push the link swallows (no answer
// before the deadline), over and over, leaves the lone record waiting.
func TestPush_timeoutNeverSetsAside(t *testing.T) {
	p := newPrimary(t)
	b := newBox(t, p.srv.URL, Config{})
	b.cl.Timeout = 100 * time.Millisecond
	b.sat.Cycle(context.Background())
	b.put(t, "r1")
	p.mu.Lock()
	p.hang = make(chan struct{})
	p.mu.Unlock()
	defer close(p.hang)
	for range 2 {
		b.sat.Cycle(context.Background())
	}
	if len(b.aside(t)) != 0 || b.store.OutboxLen() != 1 {
		t.Fatalf("aside %v outbox %d after timeouts", b.aside(t), b.store.OutboxLen())
	}
}

// TestPush_dialErrorNeverSetsAside: no primary at all (connection refused)
// is the link.
func TestPush_dialErrorNeverSetsAside(t *testing.T) {
	p := newPrimary(t)
	b := newBox(t, p.srv.URL, Config{})
	b.sat.Cycle(context.Background())
	b.put(t, "r1")
	p.srv.Close()
	for range 3 {
		if res := b.sat.Cycle(context.Background()); res.Err == nil {
			t.Fatal("cycle succeeded with no primary")
		}
	}
	if len(b.aside(t)) != 0 || b.store.OutboxLen() != 1 {
		t.Fatalf("aside %v outbox %d with no primary", b.aside(t), b.store.OutboxLen())
	}
}

// TestPush_refusalsKeepFixedSize protects a fixed request_size from the
// primary's answers: after refusals of every kind (site-level 401/403/409,
// busy, per-record), the next push batches are exactly request_size.
func TestPush_refusalsKeepFixedSize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(p syncapi.Push) (int, string)
	}{
		{"401", func(syncapi.Push) (int, string) { return 401, v5(syncapi.CodeSiteIncorrectPassword, "") }},
		{"403", func(syncapi.Push) (int, string) { return 403, v5(syncapi.CodeSiteHasNoStore, "") }},
		{"409", func(syncapi.Push) (int, string) { return 409, v5(syncapi.CodeAPIVersion, "") }},
		{"429", func(syncapi.Push) (int, string) { return 429, v5(syncapi.CodeSiteAuthTimeout, "") }},
		{"403 per record", func(p syncapi.Push) (int, string) {
			return 403, v5(syncapi.CodeStoreNotActive, refuseAll(syncapi.Push{Data: p.Data[:1]}, syncapi.CodeStoreNotActive))
		}},
		{"200 refused", func(p syncapi.Push) (int, string) {
			return 200, `{"integrationStarted":false,"refused":` + refuseAll(syncapi.Push{Data: p.Data[:1]}, syncapi.CodeStoreNotActive) + `}`
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPrimary(t)
			b := newBox(t, p.srv.URL, Config{RequestSize: 5})
			b.sat.Cycle(context.Background())
			for i := range 13 {
				b.put(t, fmt.Sprintf("r%02d", i))
			}
			once := true
			p.set(func(push syncapi.Push) (int, string) {
				if once {
					once = false
					return tc.answer(push)
				}
				return 0, ""
			})
			b.sat.Cycle(context.Background())
			if b.store.OutboxLen() != 0 {
				b.sat.Cycle(context.Background())
			}
			got := p.batches()
			for i, n := range got[:len(got)-1] {
				if n != 5 {
					t.Errorf("batch %d of %v has %d records with request_size 5 after a %s", i, got, n, tc.name)
				}
			}
			if b.store.OutboxLen() != 0 {
				t.Errorf("outbox %d left", b.store.OutboxLen())
			}
		})
	}
}

// TestPush_batchRefusalNarrowed protects the rest of a batch the primary
// refuses as a whole without saying which record (v5 400): it is narrowed
// down until the one record is alone, and only that one is set aside.
func TestPush_batchRefusalNarrowed(t *testing.T) {
	p := newPrimary(t)
	b := newBox(t, p.srv.URL, Config{RequestSize: 8})
	b.sat.Cycle(context.Background())
	for i := range 8 {
		b.put(t, fmt.Sprintf("r%d", i))
	}
	p.set(func(push syncapi.Push) (int, string) {
		for _, q := range push.Data {
			if q.RecordID == "r5" {
				return 400, v5(syncapi.CodeInvalidRecord, "")
			}
		}
		return 0, ""
	})
	res := b.sat.Cycle(context.Background())
	if res.Err != nil || res.Pushed != 7 || res.SetAside != 1 || fmt.Sprint(b.aside(t)) != "[r5]" {
		t.Fatalf("err %v pushed %d set aside %d %v; want r5 alone set aside", res.Err, res.Pushed, res.SetAside, b.aside(t))
	}
	if as, _ := b.store.Aside(); !strings.Contains(as[0].Reason, syncapi.CodeInvalidRecord) {
		t.Errorf("reason %q", as[0].Reason)
	}
}

// TestCycle_fair protects issue 10 item 7: a box under continuous local
// writes pushes what waited when the cycle started, then pulls; the writes
// made meanwhile wait for the next cycle.
func TestCycle_fair(t *testing.T) {
	p := newPrimary(t)
	b := newBox(t, p.srv.URL, Config{RequestSize: 2})
	b.sat.Cycle(context.Background())
	b.put(t, "a", "b", "c", "d", "e")
	n := 0
	p.set(func(syncapi.Push) (int, string) {
		n++
		b.put(t, fmt.Sprintf("late%d", n), "a") // a new record, and a newer value of one waiting
		return 0, ""
	})
	res := b.sat.Cycle(context.Background())
	if res.Err != nil || res.Pushed != 5 || len(p.batches()) != 3 {
		t.Fatalf("err %v pushed %d in %v; want a..e in 3 batches", res.Err, res.Pushed, p.batches())
	}
	p.mu.Lock()
	closing := p.closing
	p.mu.Unlock()
	if closing != 2 {
		t.Errorf("%d closing batches, want one per cycle", closing)
	}
	if got := b.store.OutboxLen(); got != 4 {
		t.Errorf("outbox %d after the cycle, want a and late1..3", got)
	}
}

// TestCycle_truncated protects the round cap's report: a phase cut by it
// says so, and the next cycle goes on.
func TestCycle_truncated(t *testing.T) {
	p := newPrimary(t)
	b := newBox(t, p.srv.URL, Config{RequestSize: 2})
	b.sat.maxRounds = 3
	b.sat.Cycle(context.Background())
	for i := range 10 {
		b.put(t, fmt.Sprint(i))
	}
	res := b.sat.Cycle(context.Background())
	if !res.Truncated || res.Pushed != 6 || res.Err != nil || len(res.Notes) == 0 {
		t.Fatalf("truncated %v pushed %d err %v notes %v; want truncated after 6", res.Truncated, res.Pushed, res.Err, res.Notes)
	}
	if res := b.sat.Cycle(context.Background()); res.Truncated || res.Pushed != 4 {
		t.Errorf("next cycle: truncated %v pushed %d; want 4, not truncated", res.Truncated, res.Pushed)
	}
}

// TestPush_rewound protects the primary's "rewound" warning: it reaches the
// result, the notes and the status.
func TestPush_rewound(t *testing.T) {
	p := newPrimary(t)
	b := newBox(t, p.srv.URL, Config{})
	b.sat.Cycle(context.Background())
	b.put(t, "r1")
	p.set(func(syncapi.Push) (int, string) { return 200, `{"integrationStarted":false,"rewound":true}` })
	res := b.sat.Cycle(context.Background())
	if !res.Rewound || len(res.Notes) != 1 || b.sat.Status().Rewound.IsZero() || res.Pushed != 1 {
		t.Fatalf("rewound %v notes %v status %v pushed %d", res.Rewound, res.Notes, b.sat.Status().Rewound, res.Pushed)
	}
}

// TestInit_oldDatafile protects an upgrade: a datafile initialised before
// the initialisation state existed ("initialised" = "yes") is not
// initialised again, and adopts the configured sync_id.
func TestInit_oldDatafile(t *testing.T) {
	p := newPrimary(t)
	b := newBox(t, p.srv.URL, Config{SyncID: 4})
	if err := b.store.SetMeta(metaInitialised, []byte("yes")); err != nil {
		t.Fatal(err)
	}
	if res := b.sat.Cycle(context.Background()); res.Err != nil || res.Initialisation != "" {
		t.Fatalf("err %v initialisation %q; want nothing to do", res.Err, res.Initialisation)
	}
	if st := b.sat.Status(); st.Initialisation != "completed (sync_id 4)" {
		t.Errorf("status %q", st.Initialisation)
	}
}

// TestInit_generateNew protects `generate --new`: a clean re-initialisation
// (the queue refilled, leftovers removed), local records re-queued.
func TestInit_generateNew(t *testing.T) {
	p := newPrimary(t)
	b := newBox(t, p.srv.URL, Config{})
	b.sat.Cycle(context.Background())
	if _, err := b.store.Apply([]queue.Record{{Table: "item", ID: "stale", Action: queue.Update, Data: json.RawMessage(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	b.put(t, "mine")
	b.sat.Cycle(context.Background())
	if n, err := b.sat.Generate(context.Background(), true); err != nil || n != 1 {
		t.Fatalf("Generate = %d, %v", n, err)
	}
	res := b.sat.Cycle(context.Background())
	if res.Err != nil || res.Initialisation != "completed" || res.Removed != 1 || res.Pushed != 1 {
		t.Fatalf("err %v initialisation %q removed %d pushed %d", res.Err, res.Initialisation, res.Removed, res.Pushed)
	}
	if _, ok, _ := b.store.Get("stock", "mine"); !ok {
		t.Error("the box's own record was removed")
	}
}

// TestCycle_siteLinkFailure protects an initialised box on a flaky link: a
// GET site the link loses does not stop the push; a box never initialised
// cannot go on without it.
func TestCycle_siteLinkFailure(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	p := newPrimary(t)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() && strings.HasSuffix(r.URL.Path, "/"+syncapi.EndpointSite) {
			w.WriteHeader(502)
			io.WriteString(w, nginx502)
			return
		}
		p.serve(w, r)
	}))
	t.Cleanup(front.Close)
	b := newBox(t, front.URL, Config{})
	if res := b.sat.Cycle(context.Background()); res.Err == nil {
		t.Fatal("a box never initialised went on without GET site")
	}
	fail.Store(false)
	b.sat.Cycle(context.Background())
	fail.Store(true)
	b.put(t, "r1")
	if res := b.sat.Cycle(context.Background()); res.Err != nil || res.Pushed != 1 {
		t.Fatalf("err %v pushed %d; want the push through despite GET site", res.Err, res.Pushed)
	}
}
