package primary_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"syncagent/agent/passwd"
	"syncagent/agent/primary"
	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// Fuzz targets for every v5 handler that takes input, run against the real
// handler and a real queue.Central. The invariant for all of them: never a
// panic, never a 5xx for what a client sent, and every 4xx carries a v5
// error body. Run one for a while with
//
//	go test -run '^$' -fuzz FuzzPush -fuzztime 45s ./agent/primary

func init() { passwd.Iterations = 1000 }

// fuzzPrimary is a primary with sites 2 (stores s, a) and 3 (store s), both
// pinned, holding a central record and a store record queued for both.
type fuzzPrimary struct {
	c *queue.Central
	h http.Handler
}

func newFuzzPrimary(f *testing.F) *fuzzPrimary {
	f.Helper()
	c, err := queue.OpenCentral(filepath.Join(f.TempDir(), "central.db"), queue.CentralOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	var rows []primary.SiteRow
	for id, stores := range map[int][]string{2: {"s", "a"}, 3: {"s"}} {
		h, err := passwd.Hash(passwd.SHA256Hex(fmt.Sprintf("pw-%d", id)))
		if err != nil {
			f.Fatal(err)
		}
		rows = append(rows, primary.SiteRow{SyncID: id, User: fmt.Sprintf("site-%d", id), PasswordHash: h, Stores: stores, HardwareID: fmt.Sprintf("hw-%d", id)})
	}
	p, err := primary.New(c, primary.Config{Sites: rows, MaxBody: 256 << 10, MaxBatch: 100}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, r := range []queue.Record{
		{Table: "item", ID: "i1", Action: queue.Insert, Data: json.RawMessage(`{"name":"amoxicillin"}`)},
		{Table: "stock_line", ID: "s1", Action: queue.Insert, Data: json.RawMessage(`{"store_ID":"s","qty":1}`)},
	} {
		if _, err := p.Write(r); err != nil {
			f.Fatal(err)
		}
	}
	return &fuzzPrimary{c: c, h: p.Handler()}
}

// serve sends one request as site 2 (right password, pinned hardware ID)
// unless header overrides it.
func (p *fuzzPrimary) serve(method, path, rawQuery string, body []byte, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.URL.RawQuery = rawQuery
	req.SetBasicAuth("site-2", passwd.SHA256Hex("pw-2"))
	req.Header.Set(syncapi.HeaderSiteUUID, "hw-2")
	req.Header.Set(syncapi.HeaderVersion, "14")
	for k, v := range header {
		req.Header[k] = []string{v}
	}
	rec := httptest.NewRecorder()
	p.h.ServeHTTP(rec, req)
	return rec
}

// checkAnswer is the invariant every handler keeps for any input.
func checkAnswer(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	body := rec.Body.Bytes()
	switch {
	case rec.Code >= 500:
		t.Fatalf("%s: %d for client input: %s", what, rec.Code, body)
	case rec.Code >= 400:
		var eb map[string]map[string]json.RawMessage
		if err := json.Unmarshal(body, &eb); err != nil || eb["error"] == nil {
			t.Fatalf("%s: %d without a v5 error body: %q", what, rec.Code, body)
		}
		var code, msg string
		if json.Unmarshal(eb["error"]["code"], &code) != nil || code == "" ||
			json.Unmarshal(eb["error"]["message"], &msg) != nil || msg == "" {
			t.Fatalf("%s: %d error body without code or message: %s", what, rec.Code, body)
		}
		if _, ok := eb["error"]["data"]; !ok {
			t.Fatalf("%s: %d error body without data: %s", what, rec.Code, body)
		}
	case rec.Code == http.StatusNoContent:
		if len(body) != 0 {
			t.Fatalf("%s: 204 with a body %q", what, body)
		}
	default:
		if !json.Valid(body) {
			t.Fatalf("%s: %d with a body that is not JSON: %q", what, rec.Code, body)
		}
	}
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func seedFile(f *testing.F, name string) []byte {
	b, err := os.ReadFile(filepath.Join("..", "syncapi", "testdata", name))
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzPush: POST queued_records. A refused push writes nothing.
func FuzzPush(f *testing.F) {
	p := newFuzzPrimary(f)
	f.Add(seedFile(f, "push.json"), false)
	f.Add([]byte(`{"queueLength":0,"data":[{"syncOutId":"x","tableName":"stock_line","recordId":"r","action":"Insert","recordData":{"store_ID":"s"}}]}`), true)
	f.Add([]byte(`{"queueLength":0,"data":[{"syncOutId":"d","tableName":"stock_line","recordId":"s1","action":"delete"}]}`), false)
	f.Add([]byte(`{"queueLength":0,"data":[{"syncOutId":"m","tableName":"stock_line","recordId":"s1","action":"merge","recordData":{"mergeIdToKeep":"s1","mergeIdToDelete":"s2"}}]}`), false)
	f.Add([]byte(`{"queueLength":0,"data":[{"syncOutId":"c","tableName":"item","recordId":"i9","action":"update","recordData":{"n":1}}]}`), false)
	f.Add([]byte(`{"queueLength":"x","data":{}}`), false)
	f.Add([]byte(`{"queueLength":0,"data":[{"syncOutId":"e","tableName":"t:x","recordId":"\u0000","action":"explode","recordData":"s"}]}`), false)
	f.Add([]byte(`[[[[[[[[[[`), false)
	f.Add([]byte(``), false)
	f.Fuzz(func(t *testing.T, body []byte, compress bool) {
		header := map[string]string{}
		if compress {
			body, header["Content-Encoding"] = gzipBytes(body), "gzip"
		}
		queued, central := p.c.QueueLen(3), p.centralLen(t)
		rec := p.serve("POST", "/sync/v5/queued_records", "", body, header)
		checkAnswer(t, "push", rec)
		if rec.Code >= 400 && (p.c.QueueLen(3) != queued || p.centralLen(t) != central) {
			t.Fatalf("a refused push (%d) wrote: site 3 queue %d → %d, central log %d → %d",
				rec.Code, queued, p.c.QueueLen(3), central, p.centralLen(t))
		}
		if rec.Code == 200 {
			var resp syncapi.PushResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || !resp.IntegrationStarted {
				t.Fatalf("push 200 with %s", rec.Body.Bytes())
			}
		}
	})
}

// FuzzAcknowledged: POST acknowledged_records.
func FuzzAcknowledged(f *testing.F) {
	p := newFuzzPrimary(f)
	f.Add(seedFile(f, "acknowledged_records.json"))
	f.Add([]byte(`{"syncIDs":["00000000000000000001-0000","00000000000000000002-0000"]}`))
	f.Add([]byte(`{"syncIDs":null}`))
	f.Add([]byte(`{"syncIDs":[1,{}]}`))
	f.Add([]byte(`{"syncIDs":["` + string(bytes.Repeat([]byte("9"), 5000)) + `"]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkAnswer(t, "acknowledge", p.serve("POST", "/sync/v5/acknowledged_records", "", body, nil))
	})
}

// FuzzInitialise: POST initialise (empty body or any JSON object).
func FuzzInitialise(f *testing.F) {
	p := newFuzzPrimary(f)
	f.Add([]byte(``))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"force":true}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := p.serve("POST", "/sync/v5/initialise", "", body, nil)
		checkAnswer(t, "initialise", rec)
		if rec.Code == 200 {
			var resp syncapi.InitialiseResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || resp.QueueLength < 1 {
				t.Fatalf("initialise 200 with %s", rec.Body.Bytes())
			}
		}
	})
}

// FuzzCentralQuery: GET central_records?… — every record returned lies
// after the cursor asked for.
func FuzzCentralQuery(f *testing.F) {
	p := newFuzzPrimary(f)
	for _, q := range []string{"cursor=0&limit=10", "", "cursor=1", "cursor=-1", "limit=0", "limit=99999999999999999999",
		"cursor=18446744073709551615", "cursor=18446744073709551614&limit=1", "cursor=%zz", "cursor=1&cursor=0", "limit=1e3"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		rec := p.serve("GET", "/sync/v5/central_records", rawQuery, nil, nil)
		checkAnswer(t, "central_records?"+rawQuery, rec)
		if rec.Code != 200 {
			return
		}
		var page syncapi.CentralRecords
		if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
			t.Fatal(err)
		}
		q, _ := url.ParseQuery(rawQuery)
		cursor, _ := strconv.ParseUint(q.Get("cursor"), 10, 64)
		for _, r := range page.Data {
			if r.ID <= cursor {
				t.Fatalf("cursor %d answered with record %d", cursor, r.ID)
			}
		}
	})
}

// FuzzQueuedQuery: GET queued_records?…
func FuzzQueuedQuery(f *testing.F) {
	p := newFuzzPrimary(f)
	for _, q := range []string{"limit=10", "", "limit=0", "limit=-5", "limit=18446744073709551616", "limit=%", "limit=1&limit=x"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		rec := p.serve("GET", "/sync/v5/queued_records", rawQuery, nil, nil)
		checkAnswer(t, "queued_records?"+rawQuery, rec)
		if rec.Code == 200 {
			var page syncapi.QueuedRecords
			if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || page.QueueLength < len(page.Data) {
				t.Fatalf("queued_records 200 with %s", rec.Body.Bytes())
			}
		}
	})
}

// FuzzCaller: the headers every handler reads before its body (Basic auth,
// hardware ID, API version). Hardware IDs other than hw-2 must never pin.
func FuzzCaller(f *testing.F) {
	p := newFuzzPrimary(f)
	f.Add("Basic c2l0ZS0yOng=", "hw-2", "14")
	f.Add("Basic !!!", "", "")
	f.Add("Bearer x", "hw-3", "1")
	f.Add("", "\t", "-1")
	f.Add("Basic c2l0ZS0yOg==", string(bytes.Repeat([]byte("h"), 300)), "99999999999999999999")
	f.Fuzz(func(t *testing.T, authorization, hwid, version string) {
		rec := p.serve("GET", "/sync/v5/site", "", nil, map[string]string{
			"Authorization": authorization, syncapi.HeaderSiteUUID: hwid, syncapi.HeaderVersion: version})
		checkAnswer(t, "site", rec)
		if st, _ := p.c.Site(2); st.HardwareID != "hw-2" {
			t.Fatalf("site 2 pinned to %q by %q", st.HardwareID, hwid)
		}
	})
}

func (p *fuzzPrimary) centralLen(t *testing.T) int {
	entries, _, err := p.c.CentralSince(0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}
