package satellite

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"syncagent/agent/syncapi"
	"syncagent/queue"
)

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

// TestPush_coldFirstPushGzipped: a new box's first push is bounded, like
// any cold request, by what 2G carries in half the deadline (10 kB with the
// test client's 2 s), but counted in the gzipped bytes the link carries
// when the primary takes gzip: 60 compressible records of ~500 B (30 kB of
// JSON) go in one push; to a primary that takes only JSON they are split
// as before; and records that gzip badly are cut so that the gzipped body
// stays within the bound.
func TestPush_coldFirstPushGzipped(t *testing.T) {
	note := strings.Repeat("stock count ", 35)
	random := func(i int) string { // base64 of random bytes: gzip shrinks it by about a quarter
		b := make([]byte, 400)
		r := rand.New(rand.NewPCG(uint64(i), 7))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	for _, tc := range []struct {
		name   string
		gzip   bool
		data   func(i int) string
		pushes func(t *testing.T, p *primary)
	}{
		{"gzip, compressible", true, func(int) string { return note }, func(t *testing.T, p *primary) {
			if got := p.batches(); len(got) != 1 || got[0] != 60 {
				t.Fatalf("pushes = %v, want all 60 records in one", got)
			}
		}},
		{"plain JSON", false, func(int) string { return note }, func(t *testing.T, p *primary) {
			if got := p.batches(); len(got) < 2 || got[0] >= 30 {
				t.Fatalf("pushes = %v, want the first within the cold JSON bound (about 16 records)", got)
			}
		}},
		{"gzip, incompressible", true, random, func(t *testing.T, p *primary) {
			got := p.batches()
			if len(got) < 2 || got[0] >= 60 {
				t.Fatalf("pushes = %v, want the first cut", got)
			}
			p.mu.Lock()
			first := p.wire[0]
			p.mu.Unlock()
			if first > 10_000*5/4 { // the cold bound, and the quarter LimitFor may add for a queue's tail
				t.Fatalf("first push carried %d gzipped bytes, more than the cold bound of 10 kB (+25%%)", first)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPrimary(t)
			p.gzip = tc.gzip
			b := newBox(t, p.srv.URL, Config{})
			for i := range 60 {
				data := fmt.Sprintf(`{"store_ID":"s","note":%q}`, tc.data(i))
				if _, err := b.store.Write(queue.Record{Table: "stock", ID: fmt.Sprintf("r%02d", i), Action: queue.Update, Data: json.RawMessage(data)}); err != nil {
					t.Fatal(err)
				}
			}
			if res := b.sat.Cycle(context.Background()); res.Err != nil || res.Pushed != 60 {
				t.Fatalf("cycle: pushed %d, err %v", res.Pushed, res.Err)
			}
			tc.pushes(t, p)
		})
	}
}
