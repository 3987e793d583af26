package satellite

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
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
	pulls   int            // GET queued_records
	hang    chan struct{}  // when set, pushes with data wait for it or the request's end
	gzip    bool           // answers say Accept-Encoding: gzip, so the client gzips its bodies
	wire    []int          // body bytes as received of each push with data
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
		if p.gzip {
			w.Header().Set("Accept-Encoding", "gzip")
		}
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
		p.mu.Lock()
		p.pulls++
		p.mu.Unlock()
		reply(200, `{"queueLength":0,"data":[]}`)
	case ep == syncapi.EndpointQueued:
		var push syncapi.Push
		raw, _ := io.ReadAll(r.Body)
		var body io.Reader = bytes.NewReader(raw)
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(body)
			if err != nil {
				reply(400, `{"error":{"code":"bad_request","message":"bad gzip","data":null}}`)
				return
			}
			body = zr
		}
		if err := json.NewDecoder(body).Decode(&push); err != nil {
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
		p.pushes, p.wire = append(p.pushes, push), append(p.wire, len(raw))
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
