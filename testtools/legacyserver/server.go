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
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
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
