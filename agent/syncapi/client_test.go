package syncapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"syncagent/agent/version"
)

// TestClient_headersAndErrors protects what every request carries and how a
// v5 error body comes back to the caller.
func TestClient_headersAndErrors(t *testing.T) {
	var seen *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r
		WriteError(w, r, Errorf(401, CodeSiteIncorrectHWID, "pinned elsewhere"))
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL + "/", User: "clinic-12", PasswordSHA256: "abc", HardwareID: "hw-9", AppVersion: "1.0"}
	_, err := c.Site(context.Background())
	e, ok := AsError(err)
	if !ok || e.Status != 401 || e.Code != CodeSiteIncorrectHWID || e.Message != "pinned elsewhere" {
		t.Fatalf("err = %v", err)
	}
	if !IsAuth(err) || Advice(err) == "" {
		t.Error("a hardware ID refusal should be an auth error with advice")
	}
	user, pass, _ := seen.BasicAuth()
	checks := map[string][2]string{
		"path":     {seen.URL.Path, "/sync/v5/site"},
		"user":     {user, "clinic-12"},
		"password": {pass, "abc"},
		"site":     {seen.Header.Get(HeaderSiteUUID), "hw-9"},
		"version":  {seen.Header.Get(HeaderVersion), "14"},
		"app":      {seen.Header.Get(HeaderAppName), AppName},
		// A release such as peers send ("2.20.0"), not AppVersion's git hash.
		"app-version": {seen.Header.Get(HeaderAppVersion), version.Release},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
}

// TestClient_gzipOnceServerSaysSo protects request compression: only after
// the server said it takes gzip bodies.
func TestClient_gzipOnceServerSaysSo(t *testing.T) {
	var encodings []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encodings = append(encodings, r.Header.Get("Content-Encoding"))
		var p Push
		if e := DecodeBody(r, 1<<20, false, &p); e != nil {
			WriteError(w, r, e)
			return
		}
		WriteJSON(w, r, 200, PushResponse{IntegrationStarted: true})
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL}
	p := Push{Data: []QueuedRecord{{SyncOutID: "1", TableName: "t", RecordID: strings.Repeat("r", 3000), Action: "insert"}}}
	for i := 0; i < 2; i++ {
		if _, err := c.Push(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	if encodings[0] != "" || encodings[1] != "gzip" {
		t.Errorf("encodings = %q, want plain then gzip", encodings)
	}
}

// TestClient_deadline protects the per-call deadline: a server that never
// answers cannot hold the sync loop.
func TestClient_deadline(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	var ex Exchange
	c := &Client{BaseURL: srv.URL, Timeout: 100 * time.Millisecond, Observe: func(e Exchange) { ex = e }}
	start := time.Now()
	_, err := c.QueuedRecords(context.Background(), 10)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Error("deadline not honoured")
	}
	if ex.Endpoint != EndpointQueued || ex.Err == nil {
		t.Errorf("exchange not observed: %+v", ex)
	}
}

// TestClient_notV5 protects the line between the primary's refusals and
// everything else: a reverse proxy's HTML page or an empty body is NotV5,
// a v5 error body (whatever its status) is not.
func TestClient_notV5(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		notV5  bool
		code   string
	}{
		{"nginx 502", 502, "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>", true, "http_502"},
		{"nginx 504", 504, "<html><body><h1>504 Gateway Time-out</h1></body></html>", true, "http_504"},
		{"empty 503", 503, "", true, "http_503"},
		{"plain 429", 429, "Too Many Requests", true, "http_429"},
		{"json without error", 500, `{"message":"oops"}`, true, "http_500"},
		{"v5 busy", 503, `{"error":{"code":"sync_is_running","message":"Sync is already running - try again later","data":null}}`, false, CodeSyncIsRunning},
		{"v5 refusal", 403, `{"error":{"code":"store_not_active","message":"no","data":[{"syncOutId":"1","error":{"code":"store_not_active","message":"no"}}]}}`, false, CodeStoreNotActive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			_, err := (&Client{BaseURL: srv.URL}).Push(context.Background(), Push{})
			e, ok := AsError(err)
			if !ok || e.Status != tc.status || e.NotV5() != tc.notV5 || e.Code != tc.code {
				t.Fatalf("err = %v (NotV5 %v), want status %d code %s NotV5 %v", err, ok && e.NotV5(), tc.status, tc.code, tc.notV5)
			}
		})
	}
}

// TestClient_pushResponseExtensions protects the optional fields a push
// answer may carry: a peer that sends none decodes as before; "rewound" is read.
func TestClient_pushResponseExtensions(t *testing.T) {
	for body, want := range map[string]PushResponse{
		`{"integrationStarted":true}`:                          {IntegrationStarted: true},
		`{"integrationStarted":true,"rewound":true,"other":1}`: {IntegrationStarted: true, Rewound: true},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) }))
		got, err := (&Client{BaseURL: srv.URL}).Push(context.Background(), Push{})
		srv.Close()
		if err != nil || got.IntegrationStarted != want.IntegrationStarted || got.Rewound != want.Rewound {
			t.Errorf("%s: got %+v, %v; want %+v", body, got, err, want)
		}
	}
}
