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
	syncapi.WriteJSON(w, r, http.StatusOK, syncapi.SiteInfo{
		ID:                   siteUUID(row.SyncID),
		SiteID:               row.SyncID,
		InitialisationStatus: orDefault(st.Initialisation, syncapi.InitNew),
		MSupplyCentralSiteID: 1,
		Code:                 row.User,
		Name:                 row.User,
	})
}

func (s *Server) handleSiteStatus(w http.ResponseWriter, r *http.Request, _ *SiteRow) {
	syncapi.WriteJSON(w, r, http.StatusOK, syncapi.SiteStatus{Code: syncapi.StatusIdle, Message: "ready", Data: []byte("null")})
}

func (s *Server) handleInitialise(w http.ResponseWriter, r *http.Request, row *SiteRow) {
	var ignored map[string]any
	if e := syncapi.DecodeBody(r, s.cfg.Load().MaxBody, true, &ignored); e != nil {
		syncapi.WriteError(w, r, e)
		return
	}
	if err := s.store.SetInitialisation(row.SyncID, syncapi.InitStarted); err != nil {
		syncapi.WriteError(w, r, storageError(err))
		return
	}
	if _, err := s.fill(row); err != nil {
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
	if _, err := s.store.Ack(row.SyncID, ack.SyncIDs); err != nil {
		syncapi.WriteError(w, r, storageError(err))
		return
	}
	syncapi.WriteNoContent(w)
}

// handlePush takes a batch: each record must belong to a store active on the
// pushing site; refused records are reported and the rest is applied.
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
	t := s.sites.Load()
	var resp syncapi.PushResponse
	in := make([]queue.Inbound, 0, len(push.Data))
	refuse := func(id, code, format string, args ...any) {
		resp.Refused = append(resp.Refused, syncapi.Refusal{SyncOutID: id, Error: syncapi.ErrorInfo{Code: code, Message: fmt.Sprintf(format, args...)}})
	}
	seen := make(map[string]bool, len(push.Data))
	for _, q := range push.Data {
		rec, err := q.Record()
		store := ""
		if err == nil {
			store, err = s.storeOf(rec)
		}
		switch {
		case q.SyncOutID == "" || len(q.SyncOutID) > 128 || hasControl(q.SyncOutID):
			// The datafile refuses control characters too; found there, the
			// whole batch failed as 503 "retry later", forever.
			refuse(q.SyncOutID, syncapi.CodeInvalidRecord, "syncOutId must be 1 to 128 characters, none of them control characters")
		case seen[q.SyncOutID]:
			refuse(q.SyncOutID, syncapi.CodeInvalidRecord, "syncOutId %q appears twice in this batch", q.SyncOutID)
		case err != nil:
			refuse(q.SyncOutID, syncapi.CodeInvalidRecord, "%v", err)
		case store == "" && rec.Action == queue.Delete && !s.holds(rec):
			// Created and deleted on the site between two pushes (or
			// already deleted here): nothing to delete, nobody to tell.
		case store == "":
			refuse(q.SyncOutID, syncapi.CodeCentralFromSite, "record %s/%s has no %s: central data is written on the primary only", rec.Table, rec.ID, queue.StoreField)
		case !row.hasStore(store):
			refuse(q.SyncOutID, syncapi.CodeStoreNotActive, "store %q is not active on site %d", store, row.SyncID)
		default:
			in = append(in, queue.Inbound{SyncOutID: q.SyncOutID, Record: rec, Dests: t.destinations(store, row.SyncID)})
		}
		seen[q.SyncOutID] = true
	}
	if len(in) == 0 && len(resp.Refused) > 0 {
		// Nothing to apply: answer with an error whose data lists every refusal.
		first := resp.Refused[0].Error
		status := http.StatusBadRequest
		if first.Code == syncapi.CodeStoreNotActive || first.Code == syncapi.CodeCentralFromSite {
			status = http.StatusForbidden
		}
		s.rate.logf(slog.LevelWarn, fmt.Sprint("refused ", row.SyncID), "push refused whole", "site", row.SyncID, "refused", len(resp.Refused), "first", first.Message)
		syncapi.WriteJSON(w, r, status, syncapi.ErrorBody{Error: syncapi.ErrorInfo{Code: first.Code,
			Message: fmt.Sprintf("all %d records refused; first: %s", len(resp.Refused), first.Message), Data: resp.Refused}})
		return
	}
	if len(in) > 0 {
		res, err := s.store.Accept(row.SyncID, in)
		if err != nil {
			syncapi.WriteError(w, r, storageError(err))
			return
		}
		s.log.Debug("push accepted", "site", row.SyncID, "accepted", res.Accepted, "duplicate", res.Duplicate, "refused", len(resp.Refused))
	}
	if len(resp.Refused) > 0 {
		s.rate.logf(slog.LevelWarn, fmt.Sprint("refused ", row.SyncID), "push records refused", "site", row.SyncID, "refused", len(resp.Refused), "first", resp.Refused[0].Error.Message)
	}
	resp.IntegrationStarted = true
	syncapi.WriteJSON(w, r, http.StatusOK, resp)
}

// storeOf is the store a record belongs to. A delete carries no data and a
// merge names records, so their store is the one of the record the primary
// holds; a delete of a record the primary never had belongs to no store.
func (s *Server) storeOf(r queue.Record) (string, error) {
	id := r.ID
	switch r.Action {
	case queue.Delete:
	case queue.Merge:
		keep, _, err := r.MergeIDs()
		if err != nil {
			return "", err
		}
		id = keep
	default:
		return r.StoreID(), nil
	}
	held, found, err := s.store.Get(r.Table, id)
	if err != nil || !found {
		return "", err
	}
	return held.StoreID(), nil
}

// holds reports whether the central datafile has a live record r.Table/r.ID.
func (s *Server) holds(r queue.Record) bool {
	_, found, err := s.store.Get(r.Table, r.ID)
	return found || err != nil
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
