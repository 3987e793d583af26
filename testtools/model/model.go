// Package model is the replication property test's world (test tooling; it
// never ships): a real primary (primary.Server on the storage contract,
// queue.PrimaryStore: a BuntDB file, or a PostgreSQL database served by one
// or two nodes that the sites reach at random) and 3–5 real satellites (queue.Local and satellite.Satellite), each with its
// BuntDB file, talking through an in-process transport that loses requests
// and answers at random. A seed drives everything: which site writes which
// shared record, deletes, cycles, lost acknowledgements and answers, kills
// and restarts, initialise and generate mid-stream, store moves, and
// restores of a satellite's datafile from an earlier copy.
//
// After the run, faults stop and every site syncs until nothing moves. The
// checks are docs/replication.md's promises: every site holds exactly the
// primary's value of every record it must hold (and nothing else of the
// stores it holds), the primary's value of each record is the last change
// it accepted, and no change a site made was dropped without a refusal.
package model

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"syncagent/agent/passwd"
	"syncagent/agent/primary"
	"syncagent/agent/satellite"
	"syncagent/agent/syncapi"
	"syncagent/queue"
	"syncagent/queue/pg"
	"syncagent/testtools/legacyserver"
)

// Options shape one run.
type Options struct {
	Seed     uint64
	Sites    int     // satellites, 3..5
	Steps    int     // random operations before quiescence
	Faults   float64 // chance a request or its answer is lost
	Restores bool    // include restores of a satellite's datafile
	Dir      string  // where the datafiles live (a tmpfs is fastest)
	Log      *slog.Logger

	// Backend is the primary's storage: BackendBunt (a datafile in Dir) or
	// BackendPG (the database at DSN, empty at the start, served by Nodes
	// primary nodes, 1 or 2; each request goes to one at random).
	Backend string
	DSN     string
	Nodes   int
}

// The primary's storage backends.
const (
	BackendBunt = "buntdb"
	BackendPG   = "pg"
)

// World is one run.
type World struct {
	opts   Options
	rng    *rand.Rand
	log    *slog.Logger
	dir    string
	stores map[string][]int // store → sites where it is active (the primary's rows)

	nodes   []*node            // the primary's nodes; one, but for PostgreSQL with Nodes 2
	central queue.PrimaryStore // nodes[0]'s storage, which the checks read
	rows    []primary.SiteRow
	sats    map[int]*site
	link    *transport

	clock   *legacyserver.Clock
	size    int // every satellite's request size
	oracle  *oracle
	counter int      // unique value of every write
	Trace   []string // what happened, for a failure report
}

// node is one primary process: its storage (its own connections, for
// PostgreSQL) and its server.
type node struct {
	store   queue.PrimaryStore
	prim    *primary.Server
	handler http.Handler
}

type site struct {
	id       int
	path     string
	local    *queue.Local
	sat      *satellite.Satellite
	client   *syncapi.Client
	backup   string // a copy of the datafile taken earlier, for a restore
	lostFrom int    // writes numbered above this may be lost (a restore went back)
}

// storeNames are the stores of a run; each is active on two or three sites.
var storeNames = []string{"sa", "sb", "sc", "sd"}

// recordsPerStore is small so that sites contend for the same records.
const recordsPerStore = 5

// New builds a world.
func New(opts Options) (*World, error) {
	passwd.Iterations = 1000
	if opts.Sites < 3 {
		opts.Sites = 3
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	switch opts.Backend {
	case "", BackendBunt:
		opts.Backend, opts.Nodes = BackendBunt, 1
	case BackendPG:
		if opts.DSN == "" {
			return nil, errors.New("model: the pg backend needs a DSN (testtools/pgtest gives one)")
		}
		opts.Nodes = min(max(opts.Nodes, 1), 2)
	default:
		return nil, fmt.Errorf("model: unknown backend %q (buntdb or pg)", opts.Backend)
	}
	w := &World{opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, 0x5eed)), log: opts.Log, dir: opts.Dir,
		sats: map[int]*site{}, oracle: newOracle(), clock: legacyserver.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	w.size = []int{1, 2, 3, 7, 50}[w.rng.IntN(5)]
	w.stores = map[string][]int{}
	for _, st := range storeNames {
		n := 2 + w.rng.IntN(2)
		perm := w.rng.Perm(opts.Sites)
		for _, p := range perm[:n] {
			w.stores[st] = append(w.stores[st], p+2)
		}
		slices.Sort(w.stores[st])
	}
	for id := 2; id < 2+opts.Sites; id++ { // every site has a store (the primary refuses a site with none)
		if len(w.storesOf(id)) == 0 {
			st := storeNames[w.rng.IntN(len(storeNames))]
			w.stores[st] = append(w.stores[st], id)
			slices.Sort(w.stores[st])
		}
	}
	w.link = &transport{w: w}
	w.nodes = make([]*node, opts.Nodes)
	for i := range w.nodes {
		if err := w.openNode(i); err != nil {
			w.Close()
			return nil, err
		}
	}
	for id := 2; id < 2+opts.Sites; id++ {
		s := &site{id: id, path: filepath.Join(w.dir, fmt.Sprintf("site-%d.db", id))}
		w.sats[id] = s
		if err := w.openSite(s); err != nil {
			return nil, err
		}
	}
	return w, nil
}

func password(id int) string { return passwd.SHA256Hex(fmt.Sprintf("pw-%d", id)) }

func (w *World) siteRows() ([]primary.SiteRow, error) {
	var rows []primary.SiteRow
	for id := 2; id < 2+w.opts.Sites; id++ {
		h, err := passwd.Hash(password(id))
		if err != nil {
			return nil, err
		}
		rows = append(rows, primary.SiteRow{SyncID: id, User: fmt.Sprintf("site-%d", id), PasswordHash: h, Stores: w.storesOf(id)})
	}
	return rows, nil
}

func (w *World) storesOf(id int) []string {
	var out []string
	for _, st := range storeNames {
		if slices.Contains(w.stores[st], id) {
			out = append(out, st)
		}
	}
	return out
}

// satConfig is a satellite's settings. The request size is fixed per seed
// (the adaptive sizer decides by real elapsed time, which would make a
// seed's run differ from one run to the next).
func (w *World) satConfig(id int) satellite.Config {
	return satellite.Config{SyncID: id, Stores: w.storesOf(id), RequestSize: w.size}
}

// openNode starts primary node i on the run's storage.
func (w *World) openNode(i int) error {
	var store queue.PrimaryStore
	switch w.opts.Backend {
	case BackendBunt:
		c, err := queue.OpenCentral(filepath.Join(w.dir, "central.db"), queue.CentralOptions{Logger: w.log})
		if err != nil {
			return err
		}
		store = c
	case BackendPG:
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Odd seeds get a central-log partition every few cursors, so
		// reads and writes cross partitions.
		opts := pg.Options{Logger: w.log, ApplicationName: fmt.Sprintf("model-node-%d", i), MaxConns: 4}
		if w.opts.Seed%2 == 1 {
			opts.LogPartition = 4
		}
		st, err := pg.Open(ctx, w.opts.DSN, opts)
		if err != nil {
			return err
		}
		store = st
	}
	rows, err := w.siteRows()
	if err != nil {
		store.Close()
		return err
	}
	p, err := primary.New(store, primary.Config{Sites: rows}, w.log, nil)
	if err != nil {
		store.Close()
		return err
	}
	w.nodes[i], w.rows = &node{store: store, prim: p, handler: p.Handler()}, rows
	if i == 0 {
		w.central = store
	}
	return nil
}

// randomNode is the node a request or a write on the primary goes to.
func (w *World) randomNode() *node {
	if len(w.nodes) == 1 {
		return w.nodes[0]
	}
	return w.nodes[w.rng.IntN(len(w.nodes))]
}

func (w *World) openSite(s *site) error {
	l, err := queue.OpenLocal(s.path, queue.LocalOptions{Logger: w.log})
	if err != nil {
		return err
	}
	s.client = &syncapi.Client{BaseURL: "http://primary.model", User: fmt.Sprintf("site-%d", s.id), PasswordSHA256: password(s.id),
		HardwareID: fmt.Sprintf("hw-%d", s.id), HTTP: &http.Client{Transport: w.link.forSite(s.id)}}
	s.local = l
	// A clock whose waits pass at once: the satellite's polls of the
	// primary (every 15 s during an initialisation) take no real time.
	s.sat = satellite.New(l, s.client, w.satConfig(s.id), w.log, w.clock)
	// The marks the daemon sends with every request (restore detection).
	s.client.Marks = func() string {
		return syncapi.EncodeMarks(syncapi.Marks{OutboxSeq: l.OutboxNumbering(), Acked: s.sat.Acked(), Gen: l.Generation()})
	}
	return nil
}

// Close releases every datafile.
func (w *World) Close() {
	for _, s := range w.sats {
		if s.local != nil {
			s.local.Close()
		}
	}
	for _, n := range w.nodes {
		if n != nil {
			n.store.Close()
		}
	}
}

func (w *World) tracef(format string, args ...any) {
	w.Trace = append(w.Trace, fmt.Sprintf(format, args...))
}

// Run plays the seed's operations, then syncs every site until quiescence.
func (w *World) Run(ctx context.Context) error {
	for step := range w.opts.Steps {
		if err := w.step(ctx, step); err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
	}
	return w.quiesce(ctx)
}

func (w *World) randomSite() *site { return w.sats[2+w.rng.IntN(w.opts.Sites)] }

func (w *World) step(ctx context.Context, step int) error {
	s := w.randomSite()
	switch p := w.rng.IntN(100); {
	case p < 35:
		return w.write(s, false)
	case p < 42:
		return w.write(s, true)
	case p < 70:
		res := s.sat.Cycle(ctx)
		w.tracef("%d cycle site %d: pushed %d pulled %d set aside %d init %q removed %d rewound %v err %v", step, s.id, res.Pushed, res.Pulled,
			res.SetAside, res.Initialisation, res.Removed, res.Rewound, res.Err)
	case p < 74:
		res := s.sat.Retrieve(ctx)
		w.tracef("%d retrieve site %d: pulled %d err %v", step, s.id, res.Pulled, res.Err)
	case p < 79:
		return w.primaryWrite()
	case p < 83:
		w.tracef("%d restart site %d", step, s.id)
		return w.restartSite(s)
	case p < 85:
		i := w.rng.IntN(len(w.nodes))
		w.tracef("%d restart primary node %d", step, i)
		return w.restartNode(i)
	case p < 88:
		fresh := w.rng.IntN(2) == 0
		n, err := s.sat.Generate(ctx, fresh)
		w.tracef("%d generate site %d fresh=%v: %d %v", step, s.id, fresh, n, err)
		return err
	case p < 91:
		return w.moveStore(step)
	case p < 95 && w.opts.Restores:
		return w.backupOrRestore(s, step)
	}
	return nil
}

// write is an app's change on site s: an update (or insert) of a record of
// one of its stores, now and then moving it to another of its stores, or a
// delete.
func (w *World) write(s *site, del bool) error {
	mine := w.storesOf(s.id)
	if len(mine) == 0 {
		return nil
	}
	store := mine[w.rng.IntN(len(mine))]
	id := fmt.Sprintf("%s-%d", store, w.rng.IntN(recordsPerStore))
	held, found, err := s.local.Get("stock", id)
	if err != nil {
		return err
	}
	if found && !slices.Contains(mine, held.StoreID()) {
		return nil // held here for another store's site: not this app's to change
	}
	w.counter++
	v := w.counter
	if del {
		if !found {
			return nil
		}
		_, err = s.local.Write(queue.Record{Table: "stock", ID: id, Action: queue.Delete})
		w.tracef("write site %d: delete %s (#%d)", s.id, id, v)
		w.oracle.wrote(s.id, id, v, true)
		return err
	}
	to := store
	if found {
		to = held.StoreID()
		if w.rng.IntN(8) == 0 {
			to = mine[w.rng.IntN(len(mine))] // the record moves to another store of this site
		}
	}
	data := fmt.Sprintf(`{"store_ID":%q,"v":%d,"by":%d}`, to, v, s.id)
	_, err = s.local.Write(queue.Record{Table: "stock", ID: id, Action: queue.Update, Data: json.RawMessage(data)})
	w.tracef("write site %d: %s = #%d (%s)", s.id, id, v, to)
	w.oracle.wrote(s.id, id, v, false)
	return err
}

// primaryWrite is a change made on the primary: central data, or a store
// record.
func (w *World) primaryWrite() error {
	w.counter++
	v := w.counter
	if w.rng.IntN(2) == 0 {
		id := fmt.Sprintf("item-%d", w.rng.IntN(4))
		r := queue.Record{Table: "item", ID: id, Action: queue.Update, Data: json.RawMessage(fmt.Sprintf(`{"v":%d}`, v))}
		if w.rng.IntN(6) == 0 {
			r.Action, r.Data = queue.Delete, nil
		}
		if _, err := w.randomNode().prim.Write(r); err != nil {
			return err
		}
		w.oracle.accepted(r.Table, id, v, r.Action == queue.Delete)
		w.tracef("primary write item %s = #%d %s", id, v, r.Action)
		return nil
	}
	store := storeNames[w.rng.IntN(len(storeNames))]
	id := fmt.Sprintf("%s-%d", store, w.rng.IntN(recordsPerStore))
	cur, _, err := w.central.Get("stock", id)
	if err != nil {
		return err
	}
	if s := cur.StoreID(); s != "" {
		store = s
	}
	r := queue.Record{Table: "stock", ID: id, Action: queue.Update, Data: json.RawMessage(fmt.Sprintf(`{"store_ID":%q,"v":%d,"by":1}`, store, v))}
	if _, err := w.randomNode().prim.Write(r); err != nil {
		return err
	}
	w.oracle.accepted("stock", id, v, false)
	w.tracef("primary write stock %s = #%d", id, v)
	return nil
}

func (w *World) restartSite(s *site) error {
	if err := s.local.Close(); err != nil {
		return err
	}
	return w.openSite(s)
}

// restartNode stops primary node i and starts it again on the same
// storage; with two nodes the other one serves meanwhile.
func (w *World) restartNode(i int) error {
	if err := w.nodes[i].store.Close(); err != nil {
		return err
	}
	return w.openNode(i)
}

// moveStore moves a store from one of its sites to a site without it, on
// the primary's rows and in the satellites' settings, as a technician with
// unlock codes would.
func (w *World) moveStore(step int) error {
	st := storeNames[w.rng.IntN(len(storeNames))]
	from := w.stores[st][w.rng.IntN(len(w.stores[st]))]
	if len(w.storesOf(from)) == 1 {
		return nil // every site keeps a store (the primary refuses a site with none)
	}
	var to []int
	for id := 2; id < 2+w.opts.Sites; id++ {
		if !slices.Contains(w.stores[st], id) {
			to = append(to, id)
		}
	}
	if len(to) == 0 {
		return nil
	}
	dest := to[w.rng.IntN(len(to))]
	w.stores[st] = append(slices.DeleteFunc(slices.Clone(w.stores[st]), func(x int) bool { return x == from }), dest)
	slices.Sort(w.stores[st])
	w.tracef("%d move store %s from site %d to site %d", step, st, from, dest)
	rows, err := w.siteRows()
	if err != nil {
		return err
	}
	for _, n := range w.nodes { // each node reads the rows from its own prefs
		if err := n.prim.Configure(primary.Config{Sites: rows}); err != nil {
			return err
		}
	}
	w.rows = rows
	for _, id := range []int{from, dest} {
		s := w.sats[id]
		s.sat.Configure(w.satConfig(id))
	}
	return nil
}

// backupOrRestore copies a satellite's datafile aside, or puts an earlier
// copy back (as a box restored from its backup would be).
func (w *World) backupOrRestore(s *site, step int) error {
	if err := s.local.Close(); err != nil {
		return err
	}
	defer w.openSite(s)
	if s.backup == "" || w.rng.IntN(2) == 0 {
		s.backup = s.path + ".backup"
		w.tracef("%d backup site %d", step, s.id)
		s.lostFrom = w.counter
		return copyFile(s.path, s.backup)
	}
	w.tracef("%d restore site %d from its backup", step, s.id)
	w.oracle.restored(s.id, s.lostFrom)
	return copyFile(s.backup, s.path)
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o600)
}

// quiesce stops the faults and syncs every site until a whole round moves
// nothing.
func (w *World) quiesce(ctx context.Context) error {
	w.link.faults = false
	for round := range 12 {
		moved := 0
		for id := 2; id < 2+w.opts.Sites; id++ {
			res := w.sats[id].sat.Cycle(ctx)
			if res.Err != nil {
				return fmt.Errorf("quiescence round %d: site %d: %w", round, id, res.Err)
			}
			moved += res.Pushed + res.Pulled + res.SetAside
		}
		if moved == 0 && round > 0 {
			return nil
		}
	}
	return errors.New("no quiescence after 12 rounds of cycles without faults")
}

// transport is the in-process link: it calls a primary node's handler
// directly (one at random when there are two) and, while faults are on, loses requests (before the primary
// sees them) and answers (after it committed), or answers as a proxy in
// front of a restarting primary would. It also shows the oracle every push
// the primary answered.
type transport struct {
	w      *World
	faults bool
}

type siteTransport struct {
	t    *transport
	site int
}

func (t *transport) forSite(id int) http.RoundTripper {
	t.faults = true
	return &siteTransport{t: t, site: id}
}

func (st *siteTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t := st.t
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body.Close()
	}
	roll := 1.0
	if t.faults {
		roll = t.w.rng.Float64()
	}
	f := t.w.opts.Faults
	switch {
	case roll < f/3:
		return nil, errors.New("model: request lost")
	case roll < f/2:
		return &http.Response{StatusCode: 502, Header: http.Header{"Content-Type": {"text/html"}},
			Body: io.NopCloser(strings.NewReader("<html>502 Bad Gateway</html>")), Request: req}, nil
	}
	r2 := req.Clone(req.Context())
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.RemoteAddr = "127.0.0.1:1"
	rec := httptest.NewRecorder()
	t.w.randomNode().handler.ServeHTTP(rec, r2)
	resp := rec.Result()
	if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, syncapi.EndpointQueued) && resp.StatusCode == 200 {
		t.w.oracle.pushed(st.site, plain(body, req.Header.Get("Content-Encoding")), plain(rec.Body.Bytes(), resp.Header.Get("Content-Encoding")))
	}
	if roll < f {
		return nil, errors.New("model: answer lost")
	}
	resp.Request = req
	return resp, nil
}

func plain(b []byte, encoding string) []byte {
	if encoding != "gzip" {
		return b
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil
	}
	out, _ := io.ReadAll(zr)
	return out
}
