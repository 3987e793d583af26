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
	"strconv"
	"strings"
	"time"
)

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
