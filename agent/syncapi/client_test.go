package syncapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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
