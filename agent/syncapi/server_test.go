package syncapi

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func request(body string, headers map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/sync/v5/queued_records", strings.NewReader(body))
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}

func gzipped(s string) string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.String()
}

// TestDecodeBody refuses what a primary must refuse, with the right status.
func TestDecodeBody(t *testing.T) {
	cases := []struct {
		name    string
		body    string
		headers map[string]string
		max     int64
		status  int // 0 = accepted
	}{
		{"ok", `{"queueLength":0,"data":[]}`, nil, 1000, 0},
		{"unknown fields tolerated", `{"queueLength":0,"data":[],"extra":1}`, nil, 1000, 0},
		{"empty", ``, nil, 1000, 400},
		{"malformed", `{"queueLength":`, nil, 1000, 400},
		{"wrong type", `{"queueLength":"many"}`, nil, 1000, 400},
		{"trailing data", `{"queueLength":0}{}`, nil, 1000, 400},
		{"too large", `{"queueLength":0,"data":[]}`, nil, 10, 413},
		{"gzip ok", gzipped(`{"queueLength":0,"data":[]}`), map[string]string{"Content-Encoding": "gzip"}, 1000, 0},
		{"gzip bomb", gzipped(`{"queueLength":0,"data":[` + strings.Repeat(" ", 100000) + `]}`), map[string]string{"Content-Encoding": "gzip"}, 1000, 413},
		{"fake gzip", `not gzip`, map[string]string{"Content-Encoding": "gzip"}, 1000, 400},
		{"unknown encoding", `{}`, map[string]string{"Content-Encoding": "br"}, 1000, 415},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var p Push
			e := DecodeBody(request(c.body, c.headers), c.max, false, &p)
			got := 0
			if e != nil {
				got = e.Status
			}
			if got != c.status {
				t.Errorf("status = %d, want %d (%v)", got, c.status, e)
			}
		})
	}
}

// TestReadCaller protects Basic auth and the version header range.
func TestReadCaller(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/sync/v5/site", nil)
	r.SetBasicAuth("clinic-12", "ABCDEF")
	r.Header.Set(HeaderSiteUUID, " hw-1 ")
	r.Header.Set(HeaderVersion, "14")
	c, e := ReadCaller(r)
	if e != nil || c.User != "clinic-12" || c.PasswordSHA256 != "abcdef" || c.HardwareID != "hw-1" || c.APIVersion != 14 {
		t.Fatalf("got %+v, %v", c, e)
	}
	r.Header.Set(HeaderVersion, "99")
	if _, e := ReadCaller(r); e == nil || e.Status != 409 || e.Code != CodeAPIVersion {
		t.Errorf("version 99: got %v, want 409 %s", e, CodeAPIVersion)
	}
	r = httptest.NewRequest(http.MethodGet, "/sync/v5/site", nil)
	if _, e := ReadCaller(r); e == nil || e.Status != 401 {
		t.Errorf("no auth: got %v, want 401", e)
	}
}

// TestWriteJSON_gzip protects compressed responses for clients that ask.
func TestWriteJSON_gzip(t *testing.T) {
	big := QueuedRecords{QueueLength: 1}
	for i := 0; i < 100; i++ {
		big.Data = append(big.Data, QueuedRecord{SyncOutID: "x", TableName: "t", RecordID: "r", Action: "insert", RecordData: json.RawMessage(`{"a":"bbbbbbbbbbbbbbbbbbbb"}`)})
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Accept-Encoding", "gzip, deflate")
	w := httptest.NewRecorder()
	WriteJSON(w, r, 200, big)
	if w.Header().Get("Content-Encoding") != "gzip" {
		t.Fatal("response not gzipped")
	}
	zr, err := gzip.NewReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	var back QueuedRecords
	if err := json.Unmarshal(plain, &back); err != nil || len(back.Data) != 100 {
		t.Fatalf("round trip: %v, %d records", err, len(back.Data))
	}
	w = httptest.NewRecorder()
	WriteJSON(w, httptest.NewRequest(http.MethodGet, "/", nil), 200, big)
	if w.Header().Get("Content-Encoding") != "" {
		t.Error("gzipped for a client that did not ask")
	}
}

// TestWriteJSON_gzipLevel: a first sync's large page is compressed at
// gzip's default level (the link is the wait), a cycle's small answer at
// the fastest.
func TestWriteJSON_gzipLevel(t *testing.T) {
	size := func(v any, level int) int {
		body, _ := json.Marshal(v)
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, level)
		zw.Write(body)
		zw.Close()
		return b.Len()
	}
	page := func(n int) QueuedRecords {
		q := QueuedRecords{QueueLength: n}
		for i := range n {
			q.Data = append(q.Data, QueuedRecord{SyncOutID: fmt.Sprint(i), TableName: "transact", RecordID: fmt.Sprintf("T%06d", i), Action: "insert",
				RecordData: json.RawMessage(fmt.Sprintf(`{"ID":"T%06d","name_ID":"N%03d","store_ID":"S%02d","comment":"shipment %d of %d","total":%d.%02d}`, i, i%997, i%13, i, i*7, i*31, i%100))})
		}
		return q
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Accept-Encoding", "gzip")
	for _, c := range []struct {
		n     int
		level int
	}{{2000, gzip.DefaultCompression}, {20, gzip.BestSpeed}} {
		v := page(c.n)
		w := httptest.NewRecorder()
		WriteJSON(w, r, 200, v)
		if got, want := w.Body.Len(), size(v, c.level); got != want {
			t.Errorf("%d records: %d bytes on the wire, want %d (gzip level %d)", c.n, got, want, c.level)
		}
	}
	if big := page(2000); size(big, gzip.DefaultCompression) >= size(big, gzip.BestSpeed) {
		t.Fatal("the default level does not shrink this page more than the fastest: the test shows nothing")
	}
}

// FuzzDecodePush never panics and never accepts a body over the limit.
func FuzzDecodePush(f *testing.F) {
	for _, s := range []string{`{"queueLength":0,"data":[]}`, `{"queueLength":1,"data":[{"syncOutId":"a","tableName":"t","recordId":"r","action":"Insert","recordData":{"store_ID":"s"}}]}`, `{`, `null`, `[]`} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, zip bool) {
		h := map[string]string{}
		if zip {
			body = []byte(gzipped(string(body)))
			h["Content-Encoding"] = "gzip"
		}
		var p Push
		if e := DecodeBody(request(string(body), h), 4096, false, &p); e != nil {
			if e.Status < 400 || e.Status > 499 || e.Code == "" {
				t.Fatalf("bad refusal %+v", e)
			}
			return
		}
		for _, q := range p.Data {
			q.Record() // must not panic whatever the record holds
		}
	})
}

// FuzzDecodeAcknowledge never panics on an acknowledgement body.
func FuzzDecodeAcknowledge(f *testing.F) {
	f.Add([]byte(`{"syncIDs":["a","b"]}`))
	f.Add([]byte(`{"syncIDs":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var a Acknowledge
		if e := DecodeBody(request(string(body), nil), 4096, false, &a); e != nil && (e.Status < 400 || e.Status > 499) {
			t.Fatalf("bad refusal %+v", e)
		}
	})
}
