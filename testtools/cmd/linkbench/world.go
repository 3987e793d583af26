package main

import (
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"syncagent/agent/adapt"
	"syncagent/agent/passwd"
	"syncagent/agent/primary"
	"syncagent/agent/satellite"
	"syncagent/agent/syncapi"
	"syncagent/queue"
	"syncagent/testtools/linkbench"
)

// The sites of the benchmark: the satellite under test, and a peer clinic
// sharing its store whose records fill the satellite's queue (what the
// satellite pulls). Records the satellite pushes are routed to the peer's
// queue, as they would be on a real primary.
const (
	benchSite = 2
	peerSite  = 3
	store     = "bench"
)

func siteUser(id int) string     { return fmt.Sprintf("clinic-%d", id) }
func sitePassword(id int) string { return passwd.SHA256Hex(fmt.Sprintf("linkbench-%d", id)) }

// world is one run's primary, link and satellite, each with fresh state in
// its own directory.
type world struct {
	central *queue.Central
	prim    *primary.Server
	server  *http.Server
	link    *link
	local   *queue.Local
	client  *syncapi.Client
	sat     *satellite.Satellite
	stats   exchangeStats
	trace   func(syncapi.Exchange) // set before the timed drain; nil: none

	primaryURL string
	log        *slog.Logger
}

// exchangeStats counts the satellite's requests (written by the cycle
// goroutine, read by the progress watcher).
type exchangeStats struct {
	requests, failed, hung atomic.Int64
}

func (s *exchangeStats) add(ex syncapi.Exchange) {
	s.requests.Add(1)
	if ex.Err == nil {
		return
	}
	if e, ok := syncapi.AsError(ex.Err); ok && e.Status < 500 {
		return // a refusal, not the link
	}
	s.failed.Add(1)
	if errors.Is(ex.Err, context.DeadlineExceeded) {
		s.hung.Add(1)
	}
}

func (s *exchangeStats) reset() {
	s.requests.Store(0)
	s.failed.Store(0)
	s.hung.Store(0)
}

type worldConfig struct {
	dir     string
	name    string // unique per run
	profile linkbench.Profile
	size    int // linkbench.Auto or a fixed request size
	timeout time.Duration
	seed    uint64
	log     *slog.Logger
}

// passwordHashes are computed once: PBKDF2 is slow on purpose.
var passwordHashes = map[int]string{}

func passwordHash(id int) (string, error) {
	if h, ok := passwordHashes[id]; ok {
		return h, nil
	}
	h, err := passwd.Hash(sitePassword(id))
	if err != nil {
		return "", err
	}
	passwordHashes[id] = h
	return h, nil
}

// newWorld starts a primary on a loopback listener, a link in front of it,
// and a satellite that talks to it through the link.
func newWorld(cfg worldConfig) (w *world, err error) {
	w = &world{log: cfg.log}
	defer func() {
		if err != nil {
			w.Close()
		}
	}()
	if w.central, err = queue.OpenCentral(filepath.Join(cfg.dir, "central.db"), queue.CentralOptions{Logger: cfg.log}); err != nil {
		return w, err
	}
	var rows []primary.SiteRow
	for _, id := range []int{benchSite, peerSite} {
		h, err := passwordHash(id)
		if err != nil {
			return w, err
		}
		rows = append(rows, primary.SiteRow{SyncID: id, User: siteUser(id), PasswordHash: h, Stores: []string{store}})
	}
	if w.prim, err = primary.New(w.central, primary.Config{Sites: rows}, cfg.log, nil); err != nil {
		return w, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return w, fmt.Errorf("cannot listen on loopback: %w", err)
	}
	w.server = primary.NewHTTPServer(ln.Addr().String(), w.prim.Handler(), cfg.log)
	go w.server.Serve(ln)
	w.primaryURL = "http://" + ln.Addr().String()

	if w.link, err = newLink(cfg.name, ln.Addr().String(), cfg.profile, cfg.seed); err != nil {
		return w, err
	}
	if w.local, err = queue.OpenLocal(filepath.Join(cfg.dir, "satellite.db"), queue.LocalOptions{Logger: cfg.log}); err != nil {
		return w, err
	}
	w.client = &syncapi.Client{
		BaseURL: "http://" + w.link.Addr(), User: siteUser(benchSite), PasswordSHA256: sitePassword(benchSite),
		HardwareID: "linkbench-box", AppVersion: "linkbench", HTTP: syncapi.NewHTTPClient(nil), Timeout: cfg.timeout,
	}
	w.sat = satellite.New(w.local, w.client, satellite.Config{Stores: []string{store}, RequestSize: cfg.size}, cfg.log, adapt.SystemClock{})
	// satellite.New took the client's Observe hook; count the exchanges too.
	observe := w.client.Observe
	w.client.Observe = func(ex syncapi.Exchange) {
		w.stats.add(ex)
		if w.trace != nil {
			w.trace(ex)
		}
		observe(ex)
	}
	return w, nil
}

// introduce makes the satellite's first contact, before any data exists:
// it initialises the site (an empty fill) and pins its hardware. It is not
// timed, and goes straight to the primary through a satellite of its own
// on the same datafile, so that the satellite under test starts with
// untaught request sizers, like a new box.
func (w *world) introduce(ctx context.Context) error {
	direct := &syncapi.Client{BaseURL: w.primaryURL, User: w.client.User, PasswordSHA256: w.client.PasswordSHA256,
		HardwareID: w.client.HardwareID, AppVersion: w.client.AppVersion, HTTP: syncapi.NewHTTPClient(nil), Timeout: w.client.Timeout}
	defer direct.HTTP.CloseIdleConnections()
	sat := satellite.New(w.local, direct, satellite.Config{Stores: []string{store}}, w.log, adapt.SystemClock{})
	if err := sat.Cycle(ctx).Err; err != nil {
		return fmt.Errorf("the satellite's first contact failed: %w", err)
	}
	return nil
}

// check is the technician's "check connection" through the link, before
// the timed drain. Besides proving the link, it lets the client learn that
// the primary takes gzip bodies, as the daemon's client has by the time it
// pushes (its first cycle starts with initialise). Failures on a flaky link
// are retried.
func (w *world) check(ctx context.Context, pause time.Duration) error {
	var rep satellite.CheckReport
	for range 20 {
		if rep = w.sat.Check(ctx); rep.OK() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
	return fmt.Errorf("check connection through the link keeps failing: %s", rep.Err)
}

// fill writes n records into the satellite's outbox and queues n records
// for it on the primary, as pushed by the peer site. The data is the same
// for every run with the same seed and round; each round has its own
// records. On an Initial profile nothing goes into the outbox and the
// queued records are legacy rows; gz is then their bytes as the primary
// sends them (queued_records entries), gzipped.
func (w *world) fill(p linkbench.Profile, seed uint64, round int) (gz int64, err error) {
	n := p.Records
	rng := rand.New(rand.NewPCG(seed, uint64(round)))
	var out []queue.Record
	in := make([]queue.Inbound, n)
	var zw *gzip.Writer
	var cw countingWriter
	if p.Initial {
		zw, _ = gzip.NewWriterLevel(&cw, gzip.DefaultCompression)
	} else {
		out = make([]queue.Record, n)
	}
	for i := range n {
		id := fmt.Sprintf("i%d-%06d", round, i)
		data := recordData(rng, i, p.RecordBytes)
		if p.Initial {
			data = legacyRow(rng, id)
		} else {
			out[i] = queue.Record{Table: "bench_out", ID: fmt.Sprintf("o%d-%06d", round, i), Action: queue.Update, Data: recordData(rng, i, p.RecordBytes)}
		}
		in[i] = queue.Inbound{SyncOutID: fmt.Sprintf("peer-%d-%06d", round, i), Record: queue.Record{Table: "bench_in", ID: id, Action: queue.Update, Data: data}}
		if zw != nil {
			b, _ := json.Marshal(syncapi.FromRecord(in[i].SyncOutID, in[i].Record))
			zw.Write(append(b, ','))
		}
	}
	if zw != nil {
		zw.Close()
	}
	if len(out) > 0 {
		if _, err := w.local.WriteMany(out); err != nil {
			return 0, fmt.Errorf("cannot fill the outbox: %w", err)
		}
	}
	for len(in) > 0 { // in pushes of at most 5,000, as a site would
		k := min(len(in), linkbench.MaxRequestSize)
		if _, err := w.prim.Accept(peerSite, in[:k]); err != nil {
			return 0, fmt.Errorf("cannot fill the satellite's queue: %w", err)
		}
		in = in[k:]
	}
	return cw.n, nil
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(b []byte) (int, error) { c.n += int64(len(b)); return len(b), nil }

// legacyRow is a legacy transact row like those open-mSupply records for
// its sync tests (server/service/src/sync/test/test_data/invoice.rs: a
// subset of the same fields, values of the same kinds), of 500 to 1,300
// bytes: fixed fields, then a free-text comment of random length.
func legacyRow(rng *rand.Rand, id string) json.RawMessage {
	status := []string{"cn", "fn", "sg", "nw"}[rng.IntN(4)]
	kind := []string{"si", "ci", "sc", "in"}[rng.IntN(4)]
	head := fmt.Sprintf(`{"ID":%q,"name_ID":"name-%04d","store_ID":%q,"invoice_num":%d,"type":%q,"status":%q,`+
		`"entry_date":"2026-%02d-%02d","confirm_date":"2026-%02d-%02d","entry_time":%d,"total":%.2f,"subtotal":%.2f,"tax":0,`+
		`"their_ref":"PO-%06d","requisition_ID":"","linked_transaction_id":"","mode":"store","category_ID":"","user_ID":"user-%02d",`+
		`"Colour":0,"hold":false,"original_PO_ID":"","budget_period_ID":"","currency_ID":"NZD","currency_rate":1,"foreign_currency_total":0,`+
		`"goods_received_ID":"","is_cancellation":false,"linked_goods_received_ID":"","ship_date":"0000-00-00","nameInsuranceJoinID":"",`+
		`"om_created_datetime":"2026-%02d-%02dT%02d:%02d:00","om_type":"OUTBOUND_SHIPMENT","comment":"`,
		id, rng.IntN(5000), store, rng.IntN(1e6), kind, status, 1+rng.IntN(12), 1+rng.IntN(28), 1+rng.IntN(12), 1+rng.IntN(28),
		rng.IntN(86400), rng.Float64()*1e4, rng.Float64()*1e4, rng.IntN(1e6), rng.IntN(40),
		1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60))
	words := []string{"amoxicillin", "paracetamol", "delivered", "to", "clinic", "ward", "stock", "count", "expired", "batch", "cold", "chain", "box", "urgent", "resupply"}
	size := 500 + rng.IntN(801)
	b := []byte(head)
	for len(b) < size-2 {
		b = append(b, words[rng.IntN(len(words))]...)
		b = append(b, ' ')
	}
	return json.RawMessage(append(b, `"}`...))
}

// recordData is a JSON object of size bytes: the store, a sequence number
// and a random base64 payload (which gzip shrinks by about a quarter).
func recordData(rng *rand.Rand, i, size int) json.RawMessage {
	head := fmt.Sprintf(`{"%s":"%s","n":%d,"payload":"`, queue.StoreField, store, i)
	room := max(0, size-len(head)-2)
	raw := make([]byte, base64.StdEncoding.DecodedLen(room)+3)
	for j := range raw {
		raw[j] = byte(rng.Uint32())
	}
	payload := base64.StdEncoding.EncodeToString(raw)[:room]
	return json.RawMessage(head + payload + `"}`)
}

// remaining is what is left to drain.
func (w *world) remaining() int { return w.local.OutboxLen() + w.central.QueueLen(benchSite) }

// Close stops everything; safe on a partly built world.
func (w *world) Close() {
	if w.client != nil && w.client.HTTP != nil {
		w.client.HTTP.CloseIdleConnections()
	}
	if w.link != nil {
		w.link.Close()
	}
	if w.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		w.server.Shutdown(ctx)
		cancel()
		w.server.Close()
	}
	if w.local != nil {
		w.local.Close()
	}
	if w.central != nil {
		w.central.Close()
	}
}
