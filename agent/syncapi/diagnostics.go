package syncapi

import (
	"context"
	"net/http"
)

// Diagnostics on request, syncagent's extension of v5. The primary names a
// request waiting for a site in a header of its GET site answer (a v5 client
// ignores it); the site answers with its bundle in pieces, POSTed in order
// to EndpointDiagnostics (a legacy server answers 404, which the satellite
// takes as "not supported" and drops the upload).
const (
	// HeaderDiagnostics, on a GET site answer, names the diagnostics
	// request waiting for the site.
	HeaderDiagnostics = "syncagent-diagnostics"
	// EndpointDiagnostics takes the pieces of a bundle.
	EndpointDiagnostics = "syncagent_diagnostics"
	// CodeNoDiagnosticsRequest answers a piece of a request that is not
	// waiting (none, replaced, or complete): stop uploading it.
	CodeNoDiagnosticsRequest = "diagnostics_not_requested"
	// MaxDiagnosticsRequest bounds a request's name.
	MaxDiagnosticsRequest = 64
)

// DiagnosticsPiece is the body of POST syncagent_diagnostics: Data goes at
// Offset of a bundle of Total bytes (gzip) whose SHA-256, lowercase hex, is
// Upload, answering Request.
type DiagnosticsPiece struct {
	Request string `json:"request"`
	Upload  string `json:"upload"`
	Offset  int    `json:"offset"`
	Total   int    `json:"total"`
	Data    []byte `json:"data"` // base64 in JSON
}

// DiagnosticsReceipt answers a piece: how much of the upload the primary
// holds (the site goes on from there), and whether the bundle is complete.
type DiagnosticsReceipt struct {
	Received int  `json:"received"`
	Complete bool `json:"complete"`
}

// SendDiagnostics calls POST syncagent_diagnostics with one piece.
func (c *Client) SendDiagnostics(ctx context.Context, p DiagnosticsPiece) (DiagnosticsReceipt, error) {
	var out DiagnosticsReceipt
	return out, c.do(ctx, http.MethodPost, EndpointDiagnostics, nil, p, &out)
}
