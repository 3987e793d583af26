package satellite

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"

	"syncagent/agent/adapt"
	"syncagent/agent/syncapi"
)

// Diagnostics on request: the primary names a request in its GET site
// answer (syncapi.HeaderDiagnostics); the daemon builds a bundle and the
// satellite uploads it in pieces, in order, each sized like a push batch
// for the link as the push sizer has learned it, so a 2G link carries it in
// requests it can finish. A cut upload goes on from where the primary says
// it is, on the next cycle.

// Bounds of a piece, in bundle bytes (base64 in JSON makes a third more).
const (
	minDiagnosticsPiece = 2 << 10
	maxDiagnosticsPiece = 192 << 10 // under the primary's 256 KiB
)

// Upload is a diagnostics bundle on its way to the primary.
type Upload struct {
	Request string
	Bundle  []byte // gzip, as the daemon built it
	digest  string
	sent    int          // bytes the primary holds
	sizer   *adapt.Sizer // sizes the pieces; starts from the push sizer
}

// NewUpload prepares bundle as the answer to request.
func NewUpload(request string, bundle []byte) *Upload {
	sum := sha256.Sum256(bundle)
	return &Upload{Request: request, Bundle: bundle, digest: hex.EncodeToString(sum[:])}
}

// Sent is how much of the bundle the primary holds.
func (u *Upload) Sent() int { return u.sent }

// UploadOutcome is what SendDiagnostics came to.
type UploadOutcome int

const (
	UploadPending  UploadOutcome = iota // cut by the link: go on next cycle
	UploadComplete                      // the primary holds the whole bundle
	UploadDropped                       // the primary does not want it (no such request, or no such endpoint: a legacy server)
)

// maxUploadFailures of the link in a row end an upload's turn in a cycle.
const maxUploadFailures = 2

// SendDiagnostics sends what remains of u. It runs on the cycle goroutine
// (after a cycle), with the cycle's bounds: per-request deadlines from the
// link, a round cap, and at most maxUploadFailures link failures in a row.
func (s *Satellite) SendDiagnostics(ctx context.Context, u *Upload) (UploadOutcome, error) {
	if u.sizer == nil {
		deadline := s.client.Timeout
		if deadline <= 0 {
			deadline = syncapi.DefaultTimeout
		}
		u.sizer = adapt.NewSizer(adapt.Config{MinRecords: 1, MaxRecords: 1, MaxBytes: maxDiagnosticsPiece * 4 / 3, Deadline: deadline,
			MinTimeout: s.cfg.Load().MinTimeout}, s.clock)
		u.sizer.StartFrom(s.push)
	}
	failures, restarts := 0, 0
	for round := 0; u.sent < len(u.Bundle); round++ {
		if err := ctx.Err(); err != nil {
			return UploadPending, err
		}
		if round >= s.maxRounds {
			return UploadPending, fmt.Errorf("diagnostics upload cut at %d requests", round)
		}
		_, budget := u.sizer.Limit()
		n := min(max(budget*3/4, minDiagnosticsPiece), maxDiagnosticsPiece, len(u.Bundle)-u.sent)
		p := syncapi.DiagnosticsPiece{Request: u.Request, Upload: u.digest, Offset: u.sent, Total: len(u.Bundle), Data: u.Bundle[u.sent : u.sent+n]}
		receipt, err := within(ctx, u.sizer, n*4/3, func(ctx context.Context) (syncapi.DiagnosticsReceipt, error) {
			return s.client.SendDiagnostics(ctx, p)
		})
		s.observe(ctx, u.sizer, 1, n*4/3 >= budget*9/10, err)
		switch classify(ctx, err) {
		case kindOK:
			failures = 0
			if receipt.Complete {
				u.sent = len(u.Bundle)
				return UploadComplete, nil
			}
			if receipt.Received < 0 || receipt.Received > len(u.Bundle) {
				return UploadDropped, fmt.Errorf("the primary says it holds %d bytes of a %d-byte bundle", receipt.Received, len(u.Bundle))
			}
			if receipt.Received < u.sent {
				// The primary started the upload again (the whole did not
				// match its digest): once, not for ever.
				if restarts++; restarts > 1 {
					return UploadDropped, fmt.Errorf("the primary keeps starting the diagnostics upload again")
				}
			}
			u.sent = receipt.Received
			continue
		case kindStopped:
			return UploadPending, err
		case kindBusy:
			return UploadPending, err
		case kindLink:
			if failures++; failures >= maxUploadFailures {
				return UploadPending, fmt.Errorf("diagnostics upload: %w", err)
			}
			continue
		}
		if e, ok := syncapi.AsError(err); ok && (e.Status == http.StatusNotFound || e.Code == syncapi.CodeNoDiagnosticsRequest ||
			e.Status == http.StatusMethodNotAllowed) {
			return UploadDropped, err
		}
		return UploadPending, fmt.Errorf("diagnostics upload: %s%w", answered(err), err)
	}
	return UploadComplete, nil
}
