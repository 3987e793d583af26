package legacyserver_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"syncagent/agent/satellite"
	"syncagent/agent/syncapi"
	"syncagent/queue"
	"syncagent/testtools/legacyserver"
)

// rig is our real satellite on a real BuntDB datafile, talking HTTP to a
// fake legacy server; both share a clock that jumps when the satellite waits.
type rig struct {
	t     *testing.T
	srv   *legacyserver.Server
	http  *httptest.Server
	clock *legacyserver.Clock
	path  string
	cfg   satellite.Config
	store *queue.Local
	sat   *satellite.Satellite
}

const (
	siteID   = 12
	user     = "clinic-12"
	password = "correct horse"
	hwid     = "hw-clinic-12"
)

func logger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newRig(t *testing.T, opts legacyserver.Options, cfg satellite.Config) *rig {
	t.Helper()
	clock := legacyserver.NewClock(time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC))
	opts.SiteID, opts.User, opts.Password, opts.Now = siteID, user, password, clock.Now
	r := &rig{t: t, clock: clock, path: filepath.Join(t.TempDir(), "satellite.db"), cfg: cfg}
	r.srv = legacyserver.New(opts)
	r.http = httptest.NewServer(r.srv.Handler())
	t.Cleanup(r.http.Close)
	r.open()
	return r
}

// open opens the datafile and a satellite on it, as a (re)started agent does.
func (r *rig) open() {
	r.t.Helper()
	l, err := queue.OpenLocal(r.path, queue.LocalOptions{Logger: logger(r.t)})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { l.Close() })
	sum := sha256.Sum256([]byte(password))
	cl := &syncapi.Client{BaseURL: r.http.URL, User: user, PasswordSHA256: hex.EncodeToString(sum[:]), HardwareID: hwid}
	r.store, r.sat = l, satellite.New(l, cl, r.cfg, logger(r.t), r.clock)
}

// restart closes the datafile and opens it again with a new satellite.
func (r *rig) restart() {
	r.t.Helper()
	r.store.Close()
	r.open()
}

func (r *rig) cycle() satellite.Result {
	r.t.Helper()
	return r.sat.Cycle(context.Background())
}

func (r *rig) mustCycle() satellite.Result {
	r.t.Helper()
	res := r.cycle()
	if res.Err != nil {
		r.t.Fatalf("cycle: %v", res.Err)
	}
	return res
}

// write applies the clinic's local writes.
func (r *rig) write(rows ...legacyserver.Row) {
	r.t.Helper()
	for _, row := range rows {
		rec, err := syncapi.QueuedRecord{TableName: row.TableName, RecordID: row.RecordID, Action: row.Action, RecordData: row.RecordData}.Record()
		if err != nil {
			r.t.Fatal(err)
		}
		if _, err := r.store.Write(rec); err != nil {
			r.t.Fatal(err)
		}
	}
}

// final is what a site must hold after the rows were applied in order:
// table/id → data, or nil for a deleted record.
func final(rows ...[]legacyserver.Row) map[[2]string]json.RawMessage {
	out := map[[2]string]json.RawMessage{}
	for _, rs := range rows {
		for _, r := range rs {
			k := [2]string{r.TableName, r.RecordID}
			if r.Action == "delete" {
				out[k] = nil
				continue
			}
			out[k] = r.RecordData
		}
	}
	return out
}

// holds checks that the satellite holds exactly want for those keys, the
// very bytes the server sent.
func (r *rig) holds(want map[[2]string]json.RawMessage) {
	r.t.Helper()
	for k, data := range want {
		rec, ok, err := r.store.Get(k[0], k[1])
		switch {
		case err != nil:
			r.t.Fatal(err)
		case data == nil && ok:
			r.t.Errorf("%s/%s: present, want deleted", k[0], k[1])
		case data != nil && !ok:
			r.t.Errorf("%s/%s: missing", k[0], k[1])
		case data != nil && !jsonEqual(rec.Data, data):
			r.t.Errorf("%s/%s: data differs from what the server sent:\n got %s\nwant %s", k[0], k[1], rec.Data, data)
		}
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return bytes.Equal(ja, jb)
}

// noneAside fails if the satellite set anything aside: the legacy server
// refused nothing.
func (r *rig) noneAside() {
	r.t.Helper()
	if aside, _ := r.store.Aside(); len(aside) != 0 {
		r.t.Errorf("%d records set aside, first %+v", len(aside), aside[0])
	}
}

// requests returns the requests to endpoint (any method when method is "").
func (r *rig) requests(method, endpoint string) []legacyserver.Request {
	var out []legacyserver.Request
	for _, q := range r.srv.Requests() {
		if q.Endpoint == endpoint && (method == "" || q.Method == method) {
			out = append(out, q)
		}
	}
	return out
}
