package primary

import (
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"syncagent/agent/syncapi"
	"syncagent/queue"
)

func (s *Server) handleSite(w http.ResponseWriter, r *http.Request, row *SiteRow) {
	st, err := s.store.Site(row.SyncID)
	if err != nil {
		syncapi.WriteError(w, r, storageError(err))
		return
	}
	status := orDefault(st.Initialisation, syncapi.InitNew)
	if s.store.Filling(row.SyncID) {
		status = syncapi.InitStarted
	}
	s.askForDiagnostics(w, row)
	syncapi.WriteJSON(w, r, http.StatusOK, syncapi.SiteInfo{
		ID:                       siteUUID(row.SyncID),
		SiteID:                   row.SyncID,
		InitialisationStatus:     status,
		OmSupplyCentralServerURL: s.cfg.Load().CentralServerURL,
		MSupplyCentralSiteID:     centralSiteID,
		Code:                     row.User,
		Name:                     row.User,
	})
}

func (s *Server) handleSiteStatus(w http.ResponseWriter, r *http.Request, row *SiteRow) {
	if s.store.Filling(row.SyncID) {
		syncapi.WriteJSON(w, r, http.StatusOK, syncapi.SiteStatus{Code: syncapi.StatusInitialisationInProgress,
			Message: "the primary is filling this site's queue", Data: []byte("null")})
		return
	}
	syncapi.WriteJSON(w, r, http.StatusOK, syncapi.SiteStatus{Code: syncapi.StatusIdle, Message: "ready", Data: []byte("null")})
}

// handleInitialise fills the site's queue with everything it must hold.
// It is idempotent: a record already queued is not queued again, so a site
// that initialises twice downloads each record once.
func (s *Server) handleInitialise(w http.ResponseWriter, r *http.Request, row *SiteRow) {
	var ignored map[string]any
	if e := syncapi.DecodeBody(r, s.cfg.Load().MaxBody, true, &ignored); e != nil {
		syncapi.WriteError(w, r, e)
		return
	}
	if s.store.Filling(row.SyncID) {
		syncapi.WriteError(w, r, syncapi.Errorf(http.StatusServiceUnavailable, syncapi.CodeSyncIsRunning,
			"an initialisation of site %d is running; poll %s until it is idle", row.SyncID, syncapi.EndpointSiteStatus))
		return
	}
	if err := s.store.SetInitialisation(row.SyncID, syncapi.InitStarted); err != nil {
		syncapi.WriteError(w, r, storageError(err))
		return
	}
	if _, err := s.store.Fill(row.SyncID); err != nil {
		s.store.SetInitialisation(row.SyncID, syncapi.InitError)
		syncapi.WriteError(w, r, storageError(err))
		return
	}
	if err := s.store.SetInitialisation(row.SyncID, syncapi.InitCompleted); err != nil {
		syncapi.WriteError(w, r, storageError(err))
		return
	}
	s.log.Info("site initialised", "site", row.SyncID, "queue", s.store.QueueLen(row.SyncID))
	syncapi.WriteJSON(w, r, http.StatusOK, syncapi.InitialiseResponse{QueueLength: s.store.QueueLen(row.SyncID)})
}

func (s *Server) handleCentral(w http.ResponseWriter, r *http.Request, _ *SiteRow) {
	cursor, e := queryUint(r, "cursor", 0, 0)
	if e != nil {
		syncapi.WriteError(w, r, e)
		return
	}
	limit, e := queryUint(r, "limit", defaultPull, uint64(s.cfg.Load().MaxBatch))
	if e != nil {
		syncapi.WriteError(w, r, e)
		return
	}
	entries, maxCursor, err := s.store.CentralSince(cursor, int(limit))
	if err != nil {
		syncapi.WriteError(w, r, storageError(err))
		return
	}
	out := syncapi.CentralRecords{MaxCursor: maxCursor, Data: make([]syncapi.CentralRecord, 0, len(entries))}
	for _, c := range entries {
		out.Data = append(out.Data, syncapi.FromCentral(c.Cursor, c.Record))
	}
	syncapi.WriteJSON(w, r, http.StatusOK, out)
}

func (s *Server) handleQueued(w http.ResponseWriter, r *http.Request, row *SiteRow) {
	limit, e := queryUint(r, "limit", defaultPull, uint64(s.cfg.Load().MaxBatch))
	if e != nil {
		syncapi.WriteError(w, r, e)
		return
	}
	entries, length, err := s.store.Queued(row.SyncID, int(limit))
	if err != nil {
		syncapi.WriteError(w, r, storageError(err))
		return
	}
	out := syncapi.QueuedRecords{QueueLength: length, Data: make([]syncapi.QueuedRecord, 0, len(entries))}
	for _, q := range entries {
		out.Data = append(out.Data, syncapi.FromRecord(q.SyncOutID, q.Record))
	}
	s.metrics.Records("delivered", len(entries))
	s.fleet.count(row.SyncID, func(c *CycleView) { c.Pulled += len(entries); c.Reached = true })
	syncapi.WriteJSON(w, r, http.StatusOK, out)
}

func (s *Server) handleAcknowledged(w http.ResponseWriter, r *http.Request, row *SiteRow) {
	var ack syncapi.Acknowledge
	if e := syncapi.DecodeBody(r, s.cfg.Load().MaxBody, false, &ack); e != nil {
		syncapi.WriteError(w, r, e)
		return
	}
	if max := s.cfg.Load().MaxBatch; len(ack.SyncIDs) > max {
		syncapi.WriteError(w, r, syncapi.Errorf(http.StatusRequestEntityTooLarge, syncapi.CodeBatchTooLarge, "%d ids in one acknowledgement; at most %d", len(ack.SyncIDs), max))
		return
	}
	n, err := s.store.Ack(row.SyncID, ack.SyncIDs)
	if err != nil {
		syncapi.WriteError(w, r, storageError(err))
		return
	}
	s.metrics.Records("acknowledged", n)
	s.fleet.count(row.SyncID, func(c *CycleView) { c.Acked += n })
	syncapi.WriteNoContent(w)
}

// handlePush takes a batch. Each record is decided on its own, in order,
// by the routing rules and the primary's current copy: refused records are
// listed in the answer with their reason (and the site is sent the
// primary's copy back), the rest is applied. Per-record refusals never fail
// the request: a v5 client that does not read them would otherwise push the
// same batch for ever.
func (s *Server) handlePush(w http.ResponseWriter, r *http.Request, row *SiteRow) {
	cfg := s.cfg.Load()
	var push syncapi.Push
	if e := syncapi.DecodeBody(r, cfg.MaxBody, false, &push); e != nil {
		syncapi.WriteError(w, r, e)
		return
	}
	if len(push.Data) > cfg.MaxBatch {
		syncapi.WriteError(w, r, syncapi.Errorf(http.StatusRequestEntityTooLarge, syncapi.CodeBatchTooLarge, "%d records in one push; at most %d", len(push.Data), cfg.MaxBatch))
		return
	}
	left := max(push.QueueLength-len(push.Data), 0)
	s.fleet.count(row.SyncID, func(c *CycleView) { c.OutboxLeft = &left })
	var resp syncapi.PushResponse
	refuse := func(id, code, format string, args ...any) {
		resp.Refused = append(resp.Refused, syncapi.Refusal{SyncOutID: id, Error: syncapi.ErrorInfo{Code: code, Message: fmt.Sprintf(format, args...)}})
	}
	in := make([]queue.Inbound, 0, len(push.Data))
	seen := make(map[string]bool, len(push.Data))
	for _, q := range push.Data {
		rec, err := q.Record()
		switch {
		case seen[q.SyncOutID]:
			refuse(q.SyncOutID, syncapi.CodeInvalidRecord, "syncOutId %q appears twice in this batch", q.SyncOutID)
		case err != nil:
			refuse(q.SyncOutID, syncapi.CodeInvalidRecord, "%v", err)
		default:
			in = append(in, queue.Inbound{SyncOutID: q.SyncOutID, Record: rec})
		}
		seen[q.SyncOutID] = true
	}
	if len(in) > 0 {
		res, err := s.Accept(row.SyncID, in)
		if err != nil {
			syncapi.WriteError(w, r, storageError(err))
			return
		}
		for i, o := range res.Outcomes {
			if o.Refused != nil {
				refuse(in[i].SyncOutID, o.Refused.Code, "%s", o.Refused.Message)
			}
		}
		resp.Rewound = res.Rewound
		s.metrics.Records("accepted", res.Accepted)
		s.metrics.Records("duplicate", res.Duplicate)
		s.metrics.Records("refused", res.Refused)
		s.fleet.count(row.SyncID, func(c *CycleView) { c.Pushed += res.Accepted })
		s.log.Debug("push accepted", "site", row.SyncID, "accepted", res.Accepted, "duplicate", res.Duplicate, "refused", res.Refused)
	}
	if len(resp.Refused) > 0 {
		s.rate.logf(slog.LevelWarn, fmt.Sprint("refused ", row.SyncID), "push records refused", "site", row.SyncID, "refused", len(resp.Refused), "first", resp.Refused[0].Error.Message)
	}
	if len(resp.Refused) == len(push.Data) && len(push.Data) > 0 && allMalformed(resp.Refused) {
		// Nothing in it could be read as a change: a bad request, answered
		// with an error whose data lists every record's reason.
		first := resp.Refused[0].Error
		syncapi.WriteJSON(w, r, http.StatusBadRequest, syncapi.ErrorBody{Error: syncapi.ErrorInfo{Code: first.Code,
			Message: fmt.Sprintf("all %d records are malformed; first: %s", len(resp.Refused), first.Message), Data: resp.Refused}})
		return
	}
	resp.IntegrationStarted = true
	syncapi.WriteJSON(w, r, http.StatusOK, resp)
}

func allMalformed(refused []syncapi.Refusal) bool {
	for _, r := range refused {
		if r.Error.Code != syncapi.CodeInvalidRecord {
			return false
		}
	}
	return true
}

func queryUint(r *http.Request, name string, def, max uint64) (uint64, *syncapi.Error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		if max > 0 && def > max {
			return max, nil
		}
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, syncapi.Errorf(http.StatusBadRequest, syncapi.CodeBadRequest, "query %s=%q is not a whole number", name, v)
	}
	if max > 0 && n > max {
		n = max
	}
	if name == "limit" && n == 0 {
		return 0, syncapi.Errorf(http.StatusBadRequest, syncapi.CodeBadRequest, "limit must be at least 1")
	}
	return n, nil
}

// siteUUID is a stable UUID for a site, derived from its sync ID.
func siteUUID(syncID int) string {
	h := sha256.Sum256([]byte("syncagent-site:" + strconv.Itoa(syncID)))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
