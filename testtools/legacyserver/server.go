// Package legacyserver is a fake of the legacy mSupply central server's
// sync API v5, answering a remote site (our satellite) the way the legacy
// server does, as the reference v5 client (open-msupply,
// server/service/src/sync/api/*.rs and their recorded answers) expects it:
//
//   - bodies carry fields our client does not know (code, name, serverTime);
//   - central_records are filtered per site after the page is cut, so a page
//     can be empty below maxCursor (a gap the client must step over);
//   - 503 {"error":{"code":"sync_is_running"}} while it is busy, and
//     site_status says so;
//   - a slow initialisation: POST initialise is cut by the reverse proxy in
//     front (a 504 HTML page) while the initialisation goes on, GET site
//     says "started" and site_status "initialisation_in_progress" until it
//     is done;
//   - integration after a push's closing empty batch takes a while
//     (site_status "integration_in_progress");
//   - gzip responses when asked for, and realistic legacy rows (item, unit,
//     name, store, name_store_join, transact, trans_line) in testdata/.
//
// It records every request, push, acknowledgement and central delivery so
// conformance tests can check what the satellite did. It imports nothing of
// syncagent but agent/adapt (for Clock), and nothing that ships may import
// it (TestNotInBinary).
package legacyserver

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Row is one record as the legacy server sends and takes it.
type Row struct {
	TableName  string          `json:"tableName"`
	RecordID   string          `json:"recordId"`
	Action     string          `json:"action"`
	RecordData json.RawMessage `json:"recordData,omitempty"`
}

// Options configure a Server.
type Options struct {
	SiteID     int    // this site's id (siteId in GET site)
	User       string // the site's user name
	Password   string // its plain password; Basic auth carries its SHA-256 in hex
	HardwareID string // the pinned hardware ID; "" pins the first one seen
	// Now is the server's clock; share it with the satellite (Clock) so the
	// satellite's waits move the server's time. nil: time.Now.
	Now func() time.Time
	// InitTakes is how long an initialisation runs. 0: POST initialise
	// fills the queue and answers at once. Otherwise the proxy in front
	// answers the POST with a 504 page while the initialisation goes on.
	InitTakes time.Duration
	// IntegrationTakes is how long integrating a push takes once its
	// closing empty batch arrives.
	IntegrationTakes time.Duration
	// OnRequest, when set, is called with each request's method and
	// endpoint before it is served (not under the server's lock), e.g. to
	// write to the satellite's datafile in the middle of its push.
	OnRequest func(method, endpoint string)
}

// Request is one request the server saw.
type Request struct {
	Method   string
	Endpoint string // e.g. "central_records"
	Query    url.Values
	Header   http.Header
	Body     []byte
	Status   int
	At       time.Time
}

// PushBatch is one POST queued_records the site sent.
type PushBatch struct {
	QueueLength int   `json:"queueLength"`
	Data        []Out `json:"data"`
}

// Out is one record a site pushed.
type Out struct {
	SyncOutID string `json:"syncOutId"`
	Row
}

type central struct {
	row  Row
	site int // 0: every site; else only that site sees it
}

// Server is the fake legacy server. Its methods are safe for concurrent use.
type Server struct {
	opts Options

	mu          sync.Mutex
	pinned      string
	central     []central // cursor = index + 1
	siteRows    []Row     // what an initialisation fills the queue with
	queue       []Out     // this site's queue
	nextOut     int
	initStatus  string
	initDone    time.Time
	initPosts   int
	initStale   bool // GET site says "started" but nothing runs
	integrating time.Time
	busyUntil   time.Time
	busyOn      map[string]time.Duration
	faults      []fault
	requests    []Request
	pushes      []PushBatch
	acks        map[string]int
	sent        map[uint64]int
}

type fault struct {
	endpoint string // "" any
	skip     int    // requests to let through first
	status   int
}

// New returns a server for one site.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Server{opts: opts, pinned: opts.HardwareID, initStatus: "new", acks: map[string]int{}, sent: map[uint64]int{}, busyOn: map[string]time.Duration{}}
}

// AddCentral appends rows to the central log, visible to this site.
func (s *Server) AddCentral(rows ...Row) { s.addCentral(0, rows) }

// AddCentralFor appends rows visible only to another site: this site's
// pages skip them, leaving gaps.
func (s *Server) AddCentralFor(site int, rows ...Row) { s.addCentral(site, rows) }

func (s *Server) addCentral(site int, rows []Row) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rows {
		s.central = append(s.central, central{row: r, site: site})
	}
}

// RestoreCentral cuts the central log back to its first n entries: the
// server restored from a backup. New entries continue from n+1.
func (s *Server) RestoreCentral(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.central = s.central[:min(n, len(s.central))]
}

// SetSiteData sets what an initialisation fills this site's queue with.
func (s *Server) SetSiteData(rows ...Row) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.siteRows = append([]Row(nil), rows...)
}

// Enqueue puts rows in this site's queue (records of other sites for it).
func (s *Server) Enqueue(rows ...Row) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enqueueLocked(rows)
}

func (s *Server) enqueueLocked(rows []Row) {
	for _, r := range rows {
		s.nextOut++
		s.queue = append(s.queue, Out{SyncOutID: fmt.Sprintf("%032X", s.nextOut), Row: r})
	}
}

// SetInitialisationStatus sets what GET site says: "new" for a site whose
// row was removed and added again, "started" for an initialisation already
// running (it then ends after InitTakes).
func (s *Server) SetInitialisationStatus(status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initStatus = status
	if status == "started" {
		s.initDone = s.opts.Now().Add(s.opts.InitTakes)
	}
}

// StaleInitialisation makes GET site say "started" for good while
// site_status says idle: an initialisation that died on the server.
func (s *Server) StaleInitialisation() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initStatus, s.initStale, s.initDone = "started", true, s.opts.Now().Add(100*365*24*time.Hour)
}

// BusyFor makes the server answer 503 sync_is_running (and site_status
// sync_is_running) for d.
func (s *Server) BusyFor(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busyUntil = s.opts.Now().Add(d)
}

// BusyOn makes the next request to endpoint start a busy spell of d
// (see BusyFor) and get the first 503.
func (s *Server) BusyOn(endpoint string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busyOn[endpoint] = d
}

// FailNext answers the next n requests to endpoint ("" any but site and
// site_status) with a reverse proxy's HTML error page of status.
func (s *Server) FailNext(endpoint string, n, status int) { s.FailAfter(endpoint, 0, n, status) }

// FailAfter lets after requests to endpoint through, then answers the next
// n with a reverse proxy's HTML error page of status.
func (s *Server) FailAfter(endpoint string, after, n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range n {
		skip := 0
		if i == 0 {
			skip = after
		}
		s.faults = append(s.faults, fault{endpoint, skip, status})
	}
}

// faultLocked reports the proxy error a request to endpoint gets, or 0.
func (s *Server) faultLocked(endpoint string) int {
	if endpoint == "site" || endpoint == "site_status" || len(s.faults) == 0 {
		return 0
	}
	f := &s.faults[0]
	if f.endpoint != "" && f.endpoint != endpoint {
		return 0
	}
	if f.skip > 0 {
		f.skip--
		return 0
	}
	status := f.status
	s.faults = s.faults[1:]
	return status
}

// Requests returns the requests seen so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Pushes returns the push batches received so far, in order.
func (s *Server) Pushes() []PushBatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]PushBatch(nil), s.pushes...)
}

// InitPosts is how many times POST initialise was called.
func (s *Server) InitPosts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.initPosts
}

// InitialisationStatus is what GET site says now.
func (s *Server) InitialisationStatus() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	return s.initStatus
}

// QueueLen is the number of records waiting in this site's queue.
func (s *Server) QueueLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	return len(s.queue)
}

// Acks counts acknowledgements per syncOutId.
func (s *Server) Acks() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.acks))
	for k, v := range s.acks {
		out[k] = v
	}
	return out
}

// CentralSent counts how often each central cursor was sent.
func (s *Server) CentralSent() map[uint64]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[uint64]int, len(s.sent))
	for k, v := range s.sent {
		out[k] = v
	}
	return out
}

// MaxCursor is the last central cursor.
func (s *Server) MaxCursor() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.central))
}

// advanceLocked finishes an initialisation whose time has come.
func (s *Server) advanceLocked() {
	if s.initStatus == "started" && !s.opts.Now().Before(s.initDone) {
		s.fillLocked()
	}
}

func (s *Server) fillLocked() {
	s.enqueueLocked(s.siteRows)
	s.initStatus = "completed"
}

// Handler serves the sync API v5 under /sync/v5/.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	endpoint, ok := strings.CutPrefix(r.URL.Path, "/sync/v5/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	if s.opts.OnRequest != nil {
		s.opts.OnRequest(r.Method, endpoint)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rw := &recorder{ResponseWriter: w}
	defer func() {
		s.requests = append(s.requests, Request{Method: r.Method, Endpoint: endpoint, Query: r.URL.Query(), Header: r.Header.Clone(), Body: body, Status: rw.status, At: s.opts.Now()})
	}()
	if !s.authLocked(rw, r) {
		return
	}
	s.advanceLocked()
	now := s.opts.Now()
	if status := s.faultLocked(endpoint); status != 0 {
		proxyPage(rw, status)
		return
	}
	if d, ok := s.busyOn[endpoint]; ok {
		delete(s.busyOn, endpoint)
		s.busyUntil = now.Add(d)
	}
	switch {
	case r.Method == http.MethodGet && endpoint == "site":
		s.site(rw, r)
		return
	case r.Method == http.MethodGet && endpoint == "site_status":
		s.siteStatus(rw, r, now)
		return
	case now.Before(s.busyUntil) || now.Before(s.integrating):
		writeError(rw, r, http.StatusServiceUnavailable, "sync_is_running", "Sync is already running - try again later", nil)
		return
	}
	switch {
	case r.Method == http.MethodPost && endpoint == "initialise":
		s.initialise(rw, r, now)
	case r.Method == http.MethodGet && endpoint == "central_records":
		s.centralRecords(rw, r)
	case r.Method == http.MethodGet && endpoint == "queued_records":
		s.queuedRecords(rw, r)
	case r.Method == http.MethodPost && endpoint == "queued_records":
		s.push(rw, r, body, now)
	case r.Method == http.MethodPost && endpoint == "acknowledged_records":
		s.acknowledge(rw, r, body)
	default:
		writeError(rw, r, http.StatusNotFound, "not_found", "no such endpoint", nil)
	}
}

// authLocked checks what every request carries (api/core.rs: do_get and
// do_post): Basic auth with the password's SHA-256, msupply-site-uuid,
// app-name, app-version and version.
func (s *Server) authLocked(w http.ResponseWriter, r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	sum := sha256.Sum256([]byte(s.opts.Password))
	switch {
	case !ok || user != s.opts.User:
		writeError(w, r, http.StatusUnauthorized, "site_name_not_found", "Site name not found", nil)
		return false
	case pass != hex.EncodeToString(sum[:]):
		writeError(w, r, http.StatusUnauthorized, "site_incorrect_password", "Site password incorrect", nil)
		return false
	}
	hw := r.Header.Get("msupply-site-uuid")
	if s.pinned == "" && hw != "" {
		s.pinned = hw
	}
	if hw == "" || hw != s.pinned {
		writeError(w, r, http.StatusUnauthorized, "site_incorrect_hardware_id", "Site hardware ID does not match", nil)
		return false
	}
	if v, err := strconv.Atoi(r.Header.Get("version")); err != nil || v < 1 || v > 14 || r.Header.Get("app-name") == "" || r.Header.Get("app-version") == "" {
		writeError(w, r, http.StatusConflict, "api_version_incompatible", "Api version is not compatible", map[string]int{"major": 1, "minor": 14})
		return false
	}
	return true
}

func (s *Server) site(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, http.StatusOK, map[string]any{
		"id": fmt.Sprintf("SITE-UUID-%04d", s.opts.SiteID), "siteId": s.opts.SiteID,
		"code": fmt.Sprintf("S%d", s.opts.SiteID), "name": fmt.Sprintf("Site %d", s.opts.SiteID),
		"initialisationStatus": s.initStatus, "isOmSupplyCentralServer": false,
		"omSupplyCentralServerUrl": "", "mSupplyCentralSiteId": 1,
	})
}

func (s *Server) siteStatus(w http.ResponseWriter, r *http.Request, now time.Time) {
	code, msg := "idle", "idle"
	switch {
	case s.initStatus == "started" && !s.initStale:
		code, msg = "initialisation_in_progress", "Initialisation in progress"
	case now.Before(s.integrating):
		code, msg = "integration_in_progress", "Integration in progress"
	case now.Before(s.busyUntil):
		code, msg = "sync_is_running", "Sync is already running"
	}
	writeJSON(w, r, http.StatusOK, map[string]any{"code": code, "message": msg, "data": nil})
}

func (s *Server) initialise(w http.ResponseWriter, r *http.Request, now time.Time) {
	s.initPosts++
	if s.opts.InitTakes <= 0 {
		s.fillLocked()
		writeJSON(w, r, http.StatusOK, map[string]any{"queueLength": len(s.queue)})
		return
	}
	if s.initStatus != "started" {
		s.initStatus, s.initDone = "started", now.Add(s.opts.InitTakes)
	}
	proxyPage(w, http.StatusGatewayTimeout) // the proxy gives up; the initialisation goes on
}

// centralRecords cuts the page of limit entries after cursor, then drops
// those not for this site: a page can be empty below maxCursor.
func (s *Server) centralRecords(w http.ResponseWriter, r *http.Request) {
	cursor, err1 := strconv.ParseUint(r.URL.Query().Get("cursor"), 10, 64)
	limit, err2 := strconv.ParseUint(r.URL.Query().Get("limit"), 10, 64)
	if err1 != nil || err2 != nil || limit == 0 {
		writeError(w, r, http.StatusBadRequest, "bad_request", "cursor and limit are required", nil)
		return
	}
	data := []map[string]any{}
	for id := cursor + 1; id <= cursor+limit && id <= uint64(len(s.central)); id++ {
		c := s.central[id-1]
		if c.site != 0 && c.site != s.opts.SiteID {
			continue
		}
		e := map[string]any{"ID": id, "tableName": c.row.TableName, "recordId": c.row.RecordID, "action": c.row.Action}
		if len(c.row.RecordData) > 0 {
			e["recordData"] = c.row.RecordData
		}
		data = append(data, e)
		s.sent[id]++
	}
	writeJSON(w, r, http.StatusOK, map[string]any{"maxCursor": len(s.central), "data": data, "serverTime": s.opts.Now().Unix()})
}

func (s *Server) queuedRecords(w http.ResponseWriter, r *http.Request) {
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit <= 0 {
		writeError(w, r, http.StatusBadRequest, "bad_request", "limit is required", nil)
		return
	}
	page := s.queue[:min(limit, len(s.queue))]
	writeJSON(w, r, http.StatusOK, map[string]any{"queueLength": len(s.queue), "data": page, "serverTime": s.opts.Now().Unix()})
}

func (s *Server) acknowledge(w http.ResponseWriter, r *http.Request, body []byte) {
	var ack struct {
		SyncIDs []string `json:"syncIDs"`
	}
	if err := json.Unmarshal(body, &ack); err != nil {
		writeError(w, r, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	done := map[string]bool{}
	for _, id := range ack.SyncIDs {
		s.acks[id]++
		done[id] = true
	}
	kept := s.queue[:0]
	for _, q := range s.queue {
		if !done[q.SyncOutID] {
			kept = append(kept, q)
		}
	}
	s.queue = kept
	w.WriteHeader(http.StatusNoContent)
}

// push takes a batch; the one with queueLength 0 (the closing empty batch)
// starts integration.
func (s *Server) push(w http.ResponseWriter, r *http.Request, body []byte, now time.Time) {
	var p PushBatch
	if err := json.Unmarshal(body, &p); err != nil {
		writeError(w, r, http.StatusBadRequest, "bad_request", err.Error(), nil)
		return
	}
	s.pushes = append(s.pushes, p)
	started := p.QueueLength == 0
	if started {
		s.integrating = now.Add(s.opts.IntegrationTakes)
	}
	writeJSON(w, r, http.StatusOK, map[string]any{"integrationStarted": started, "serverTime": now.Unix()})
}

func readBody(r *http.Request) ([]byte, error) {
	var rd io.Reader = io.LimitReader(r.Body, 32<<20)
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, err
		}
		rd = zr
	}
	return io.ReadAll(rd)
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	w.Header().Set("Content-Type", "application/json")
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		b = buf.Bytes()
		w.Header().Set("Content-Encoding", "gzip")
	}
	w.WriteHeader(status)
	w.Write(b)
}

func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string, data any) {
	writeJSON(w, r, status, map[string]any{"error": map[string]any{"code": code, "message": msg, "data": data}})
}

// proxyPage is what nginx in front of the server answers when it gives up.
func proxyPage(w http.ResponseWriter, status int) {
	text := fmt.Sprintf("%d %s", status, http.StatusText(status))
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<html>\r\n<head><title>%s</title></head>\r\n<body>\r\n<center><h1>%s</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n", text, text)
}

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}
