package primary

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"syncagent/agent/metrics"
	"syncagent/agent/passwd"
	"syncagent/agent/syncapi"
	"syncagent/queue"
)

func TestVerdict(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	unix := func(d time.Duration) int64 { return ago(d).Unix() }
	cases := []struct {
		name    string
		contact time.Time
		h       *syncapi.Health
		ref     RefusalView
		last    *CycleView
		want    string
	}{
		{"never seen", time.Time{}, nil, RefusalView{}, nil, VerdictNever},
		{"refused at the door, never in", time.Time{}, nil, RefusalView{At: ago(time.Minute), Code: "site_incorrect_password"}, nil, VerdictFailing},
		{"fresh and fine", ago(time.Minute), &syncapi.Health{Interval: 10, LastSuccess: unix(time.Minute)}, RefusalView{}, nil, VerdictOK},
		{"refused since its last good contact", ago(time.Hour), nil, RefusalView{At: ago(time.Minute)}, nil, VerdictFailing},
		{"an old refusal does not count", ago(time.Minute), nil, RefusalView{At: ago(time.Hour)}, nil, VerdictOK},
		{"its last cycle failed (by its own report)", ago(time.Minute), &syncapi.Health{LastSuccess: unix(time.Hour), LastErrorAt: unix(2 * time.Minute)}, RefusalView{}, nil, VerdictFailing},
		{"the primary answered its last cycle with errors", ago(time.Minute), nil, RefusalView{}, &CycleView{Last: ago(time.Minute), Errors: []string{"queued_records: storage_error"}}, VerdictFailing},
		{"the cycle it owed did not come", ago(14 * time.Minute), &syncapi.Health{Interval: 10}, RefusalView{}, nil, VerdictLate},
		{"its cycle is a little late", ago(12*time.Minute + 30*time.Second), &syncapi.Health{Interval: 10}, RefusalView{}, nil, VerdictOK},
		{"quiet, but its interval is long", ago(26 * time.Minute), &syncapi.Health{Interval: 60}, RefusalView{}, nil, VerdictOK},
		{"no health block: ten minutes assumed", ago(15 * time.Minute), nil, RefusalView{}, nil, VerdictLate},
		// The failure reported at the start of a cycle that then got through.
		{"recovered within the cycle", ago(time.Minute), &syncapi.Health{LastSuccess: unix(time.Hour), LastErrorAt: unix(5 * time.Minute)}, RefusalView{},
			&CycleView{Started: ago(2 * time.Minute), Last: ago(time.Minute), Reached: true}, VerdictOK},
		// Several nodes: another one served the site after this node's failed cycle.
		{"another node served it since", ago(time.Minute), nil, RefusalView{}, &CycleView{Last: ago(10 * time.Minute), Errors: []string{"queued_records: storage_error"}}, VerdictOK},
		{"a cycle reached its end before the report", ago(time.Minute), &syncapi.Health{LastSuccess: unix(time.Hour), LastErrorAt: unix(5 * time.Minute)}, RefusalView{},
			&CycleView{Started: ago(4 * time.Minute), Last: ago(3 * time.Minute), Reached: true}, VerdictFailing},
	}
	for _, tc := range cases {
		healthAt := ago(3 * time.Minute)
		if got := verdict(now, tc.contact, tc.h, healthAt, tc.ref, tc.last); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// The fleet view end to end: a satellite's health header is validated and
// kept, the primary records its cycles and the refusals it answered, and
// the metrics count them.
func TestFleet_healthCyclesAndMetrics(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	c, err := queue.OpenCentral(filepath.Join(t.TempDir(), "c.db"), queue.CentralOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, _ := passwd.Hash(passwd.SHA256Hex("pw"))
	s, err := New(c, Config{Sites: []SiteRow{{SyncID: 2, User: "two", PasswordHash: h, Stores: []string{"a"}},
		{SyncID: 3, User: "three", PasswordHash: h, Stores: []string{"b"}}}}, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	reg := metrics.New()
	s.UseMetrics(reg)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	call := func(method, endpoint, user, pw, health, body string) int {
		req, _ := http.NewRequest(method, srv.URL+syncapi.PathPrefix+endpoint, strings.NewReader(body))
		req.SetBasicAuth(user, passwd.SHA256Hex(pw))
		req.Header.Set(syncapi.HeaderSiteUUID, "hw-"+user)
		req.Header.Set(syncapi.HeaderVersion, "14")
		if health != "" {
			req.Header.Set(syncapi.HeaderHealth, health)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	block := syncapi.EncodeHealth(syncapi.Health{Version: "0.3.0", Outbox: 4, OutboxAge: 90, LastSuccess: now.Add(-time.Minute).Unix(),
		Clock: now.Add(3 * time.Second).UnixMilli(), Interval: 10})
	call("GET", "site", "two", "pw", block, "")
	call("POST", "queued_records", "two", "pw", "", `{"queueLength":0,"data":[{"syncOutId":"1","tableName":"transact","recordId":"T","action":"Update","recordData":{"store_ID":"a"}}]}`)
	call("GET", "queued_records?limit=10", "two", "pw", "", "")
	call("GET", "site", "three", "wrong", "", "")
	call("GET", "site", "two", "pw", `{"out":-1}`, "") // refused block: ignored, counted
	v, ok := s.SiteDetail(2)
	if !ok || v.Version != "0.3.0" || v.Outbox != 4 || v.OutboxAge != 90*time.Second || v.ClockSkew != 3*time.Second || v.Verdict != VerdictOK {
		t.Fatalf("site 2 = %+v", v)
	}
	if len(v.Cycles) != 2 || v.Cycles[0].Requests != 3 || v.Cycles[0].Pushed != 1 {
		t.Fatalf("site 2 cycles = %+v", v.Cycles)
	}
	if w, _ := s.SiteDetail(3); w.Verdict != VerdictFailing || w.Refusal == nil || w.Refusal.Code != syncapi.CodeSiteIncorrectPassword {
		t.Fatalf("site 3 = %+v", w)
	}
	var out bytes.Buffer
	reg.Write(&out, nil)
	for _, want := range []string{`syncagent_requests_total{method="GET",endpoint="site",status="200"} 2`, `syncagent_requests_total{method="GET",endpoint="site",status="401"} 1`,
		`syncagent_records_total{what="accepted"} 1`, `syncagent_events_total{what="health_refused"} 1`, `syncagent_request_duration_seconds_bucket{method="POST",endpoint="queued_records"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
