package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"syncagent/agent/adapt"
	"syncagent/agent/passwd"
	"syncagent/agent/primary"
	"syncagent/agent/satellite"
	"syncagent/agent/syncapi"
	"syncagent/queue"
)

func init() { passwd.Iterations = 1000 } // fast hashes in tests; the format is the same

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// world is a primary with satellites.
type world struct {
	t       *testing.T
	central *queue.Central
	prim    *primary.Server
	srv     *httptest.Server
	rows    []primary.SiteRow
	sats    map[int]*site
}

type site struct {
	id     int
	path   string // the datafile
	store  *queue.Local
	client *syncapi.Client
	sat    *satellite.Satellite
}

func password(id int) string { return passwd.SHA256Hex(fmt.Sprintf("pw-%d", id)) }

// newWorld starts a primary whose sites have the given stores.
func newWorld(t *testing.T, stores map[int][]string) *world {
	t.Helper()
	c, err := queue.OpenCentral(filepath.Join(t.TempDir(), "central.db"), queue.CentralOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	w := &world{t: t, central: c, sats: map[int]*site{}, rows: siteRows(t, stores)}
	w.prim, err = primary.New(c, primary.Config{Sites: w.rows}, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.srv = httptest.NewServer(w.prim.Handler())
	t.Cleanup(w.srv.Close)
	for _, row := range w.rows {
		w.sats[row.SyncID] = w.newSite(row.SyncID, row.Stores, w.srv.URL)
	}
	return w
}

// siteRows are the primary's rows for sites 2..99 with the given stores,
// each with the password of password(id).
func siteRows(t *testing.T, stores map[int][]string) []primary.SiteRow {
	t.Helper()
	var rows []primary.SiteRow
	for id := 2; id < 100; id++ {
		st, ok := stores[id]
		if !ok {
			continue
		}
		h, err := passwd.Hash(password(id))
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, primary.SiteRow{SyncID: id, User: fmt.Sprintf("site-%d", id), PasswordHash: h, Stores: st})
	}
	return rows
}

// newSite opens a satellite datafile and points it at url.
func (w *world) newSite(id int, stores []string, url string) *site {
	w.t.Helper()
	return w.openSite(id, filepath.Join(w.t.TempDir(), fmt.Sprintf("site-%d.db", id)), stores, url)
}

// reopenSite opens site id's datafile again (after a Close), as the box
// restarting would.
func (w *world) reopenSite(id int, stores []string) *site {
	w.t.Helper()
	s := w.openSite(id, w.sats[id].path, stores, w.sats[id].client.BaseURL)
	w.sats[id] = s
	return s
}

func (w *world) openSite(id int, path string, stores []string, url string) *site {
	w.t.Helper()
	l, err := queue.OpenLocal(path, queue.LocalOptions{Logger: quiet})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { l.Close() })
	cl := &syncapi.Client{BaseURL: url, User: fmt.Sprintf("site-%d", id), PasswordSHA256: password(id), HardwareID: fmt.Sprintf("hw-%d", id)}
	s := &site{id: id, path: path, store: l, client: cl}
	s.sat = satellite.New(l, cl, satellite.Config{SyncID: id, Stores: stores, RequestSize: 50}, quiet, adapt.SystemClock{})
	return s
}

func (s *site) put(t *testing.T, table, id, store string, fields map[string]any) {
	t.Helper()
	data := map[string]any{}
	for k, v := range fields {
		data[k] = v
	}
	if store != "" {
		data[queue.StoreField] = store
	}
	b, _ := json.Marshal(data)
	if _, err := s.store.Write(queue.Record{Table: table, ID: id, Action: queue.Update, Data: b}); err != nil {
		t.Fatal(err)
	}
}

func (s *site) sync(t *testing.T) satellite.Result {
	t.Helper()
	res := s.sat.Cycle(context.Background())
	if res.Err != nil {
		t.Fatalf("site %d: cycle: %v", s.id, res.Err)
	}
	return res
}

func (s *site) has(t *testing.T, table, id string) (map[string]any, bool) {
	t.Helper()
	r, ok, err := s.store.Get(table, id)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return nil, false
	}
	var m map[string]any
	json.Unmarshal(r.Data, &m)
	return m, true
}

// raw sends one request as site id and returns status and body.
func (w *world) raw(method, path string, id int, hwid, body string) (int, []byte) {
	w.t.Helper()
	req, _ := http.NewRequest(method, w.srv.URL+path, stringsReader(body))
	req.SetBasicAuth(fmt.Sprintf("site-%d", id), password(id))
	req.Header.Set(syncapi.HeaderSiteUUID, hwid)
	req.Header.Set(syncapi.HeaderVersion, "14")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
