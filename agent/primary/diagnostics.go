package primary

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// Diagnostics on request: `syncagent sites diagnose ID` asks a site for a
// bundle (RequestDiagnostics); the site's next GET site is answered with
// the request's name in a header, and the site uploads the bundle in pieces
// to POST syncagent_diagnostics; the storage keeps the last complete one.

// MaxDiagnosticsPiece bounds one piece's data.
const MaxDiagnosticsPiece = 256 << 10

// RequestDiagnostics asks site id for a diagnostics bundle on its next
// cycle and returns the request's name.
func (s *Server) RequestDiagnostics(id int) (string, error) {
	if s.sites.Load().byID[id] == nil {
		return "", fmt.Errorf("no site with sync_id %d", id)
	}
	var b [4]byte
	rand.Read(b[:])
	name := s.now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
	if err := s.store.RequestDiagnostics(id, name, s.now()); err != nil {
		return "", fmt.Errorf("cannot keep the diagnostics request: %w", err)
	}
	s.log.Info("diagnostics requested; the site sends them on its next cycle", "site", id, "request", name)
	return name, nil
}

// Diagnostics returns what the primary holds of site id's diagnostics.
func (s *Server) Diagnostics(id int) (queue.Diagnostics, error) {
	if s.sites.Load().byID[id] == nil {
		return queue.Diagnostics{}, fmt.Errorf("no site with sync_id %d", id)
	}
	return s.store.Diagnostics(id)
}

// DiagnosticsView is the fleet view's summary of a site's diagnostics.
type DiagnosticsView struct {
	Request       string    `json:"request,omitempty"`
	RequestedAt   time.Time `json:"requestedAt"`
	Received      int       `json:"received"` // bytes of the upload received so far
	Total         int       `json:"total"`
	BundleRequest string    `json:"bundleRequest,omitempty"`
	BundleAt      time.Time `json:"bundleAt"`
	BundleBytes   int       `json:"bundleBytes"`
}

func diagnosticsView(d queue.Diagnostics) *DiagnosticsView {
	if d.Request == "" && d.Bundle == nil {
		return nil
	}
	return &DiagnosticsView{Request: d.Request, RequestedAt: d.RequestedAt, Received: len(d.Received), Total: d.Total,
		BundleRequest: d.BundleRequest, BundleAt: d.BundleAt, BundleBytes: len(d.Bundle)}
}

// askForDiagnostics names, on a GET site answer, the request waiting for
// the site.
func (s *Server) askForDiagnostics(w http.ResponseWriter, row *SiteRow) {
	d, err := s.store.Diagnostics(row.SyncID)
	if err != nil || d.Request == "" {
		return
	}
	w.Header().Set(syncapi.HeaderDiagnostics, d.Request)
}

func (s *Server) handleDiagnostics(w http.ResponseWriter, r *http.Request, row *SiteRow) {
	var p syncapi.DiagnosticsPiece
	if e := syncapi.DecodeBody(r, MaxDiagnosticsPiece*2, false, &p); e != nil {
		syncapi.WriteError(w, r, e)
		return
	}
	if len(p.Data) > MaxDiagnosticsPiece {
		syncapi.WriteError(w, r, syncapi.Errorf(http.StatusRequestEntityTooLarge, syncapi.CodeBodyTooLarge, "a diagnostics piece of %d bytes; at most %d", len(p.Data), MaxDiagnosticsPiece))
		return
	}
	piece := queue.DiagnosticsPiece{Request: p.Request, Upload: p.Upload, Offset: p.Offset, Total: p.Total, Data: p.Data}
	// The rule's own checks first, so what the storage refuses next is the
	// storage's failure, not the piece's.
	if _, err := queue.NextDiagnostics(queue.Diagnostics{Request: p.Request}, piece, s.now()); err != nil && p.Request != "" {
		syncapi.WriteError(w, r, syncapi.Errorf(http.StatusBadRequest, syncapi.CodeBadRequest, "%v", err))
		return
	}
	d, err := s.store.AddDiagnostics(row.SyncID, piece, s.now())
	switch {
	case errors.Is(err, queue.ErrNoDiagnosticsRequest):
		syncapi.WriteError(w, r, syncapi.Errorf(http.StatusConflict, syncapi.CodeNoDiagnosticsRequest,
			"no diagnostics request %q is waiting for site %d (replaced, or its bundle is complete)", p.Request, row.SyncID))
		return
	case err != nil:
		syncapi.WriteError(w, r, storageError(err))
		return
	}
	receipt := syncapi.DiagnosticsReceipt{Received: len(d.Received)}
	if d.BundleRequest == p.Request && d.Request == "" {
		receipt.Received, receipt.Complete = len(d.Bundle), true
		s.log.Info("diagnostics bundle received", "site", row.SyncID, "request", p.Request, "bytes", len(d.Bundle))
	}
	s.metrics.Records("diagnostics_bytes", len(p.Data))
	syncapi.WriteJSON(w, r, http.StatusOK, receipt)
}
