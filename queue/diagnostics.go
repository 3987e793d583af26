package queue

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tidwall/buntdb"
)

// Diagnostics on request: the central team asks a site for a bundle
// (RequestDiagnostics); the site uploads it in pieces, in order, on its next
// cycles (AddDiagnostics); the last bundle that arrived whole is kept per
// site until the next one replaces it. Every backend keeps this in one
// value per site, so a piece and the state it moves to change together.

// MaxDiagnosticsBytes bounds one site's bundle (compressed, as it arrives).
const MaxDiagnosticsBytes = 1 << 20

// ErrNoDiagnosticsRequest refuses a piece for a request that is not the one
// waiting for the site (none was made, a newer one replaced it, or its
// bundle is complete): the site stops uploading it.
var ErrNoDiagnosticsRequest = errors.New("no such diagnostics request is waiting for this site")

// Diagnostics is a site's diagnostics on the primary.
type Diagnostics struct {
	// Request is the request waiting for the site ("" when none), and when
	// it was made.
	Request     string    `json:",omitempty"`
	RequestedAt time.Time `json:",omitzero"`
	// Upload is the bundle being received for it: its SHA-256 (lowercase
	// hex, the site's name for it), its size, and the bytes received so
	// far, in order.
	Upload   string    `json:",omitempty"`
	Total    int       `json:",omitempty"`
	Received []byte    `json:",omitempty"`
	LastAt   time.Time `json:",omitzero"` // when the last piece came
	// The last bundle that arrived whole, the request it answered, and when.
	Bundle        []byte    `json:",omitempty"`
	BundleRequest string    `json:",omitempty"`
	BundleAt      time.Time `json:",omitzero"`
}

// DiagnosticsPiece is one piece of an upload: Data goes at Offset of a
// bundle of Total bytes whose SHA-256 is Upload, answering Request.
type DiagnosticsPiece struct {
	Request string
	Upload  string
	Offset  int
	Total   int
	Data    []byte
}

// NextDiagnostics applies piece p to state d as every backend must: a
// piece of another request is refused with ErrNoDiagnosticsRequest; a new
// upload (another digest or size) starts again from nothing; a piece at the
// end of what was received is appended, one already received changes
// nothing, one beyond it is not taken (the answer's Received tells the site
// where to go on from); the last piece completes the bundle when the whole
// has the digest announced (otherwise the upload starts again). Malformed
// pieces are refused with an error that is not ErrNoDiagnosticsRequest.
func NextDiagnostics(d Diagnostics, p DiagnosticsPiece, at time.Time) (Diagnostics, error) {
	if d.Request == "" || p.Request != d.Request {
		return d, ErrNoDiagnosticsRequest
	}
	if _, err := hex.DecodeString(p.Upload); err != nil || len(p.Upload) != 2*sha256.Size {
		return d, fmt.Errorf("a diagnostics upload is named by the SHA-256 of its bundle (64 hex characters)")
	}
	if p.Total <= 0 || p.Total > MaxDiagnosticsBytes {
		return d, fmt.Errorf("a diagnostics bundle of %d bytes; it must have 1 to %d", p.Total, MaxDiagnosticsBytes)
	}
	if p.Offset < 0 || len(p.Data) == 0 || p.Offset+len(p.Data) > p.Total {
		return d, fmt.Errorf("a diagnostics piece of %d bytes at %d does not fit a bundle of %d", len(p.Data), p.Offset, p.Total)
	}
	if d.Upload != p.Upload || d.Total != p.Total {
		d.Upload, d.Total, d.Received = p.Upload, p.Total, nil
	}
	if p.Offset != len(d.Received) {
		return d, nil // a repeat, or a piece after one that is missing
	}
	d.Received = append(bytes.Clone(d.Received), p.Data...)
	d.LastAt = at.UTC()
	if len(d.Received) < d.Total {
		return d, nil
	}
	sum := sha256.Sum256(d.Received)
	if hex.EncodeToString(sum[:]) != d.Upload {
		d.Upload, d.Total, d.Received = "", 0, nil
		return d, nil
	}
	d.Bundle, d.BundleRequest, d.BundleAt = d.Received, d.Request, at.UTC()
	d.Request, d.RequestedAt, d.Upload, d.Total, d.Received = "", time.Time{}, "", 0, nil
	return d, nil
}

func diagKey(id int) string { return diagPrefix + padSite(id) }

// Diagnostics returns site id's diagnostics (the zero value when none was
// ever asked for).
func (c *Central) Diagnostics(id int) (Diagnostics, error) {
	if err := checkSiteID(id); err != nil {
		return Diagnostics{}, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.diagnosticsLocked(id)
}

func (c *Central) diagnosticsLocked(id int) (Diagnostics, error) {
	var d Diagnostics
	err := c.st.view(func(tx *buntdb.Tx) error {
		v, err := tx.Get(diagKey(id))
		if errors.Is(err, buntdb.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(v), &d); err != nil {
			return fmt.Errorf("datafile value of %s is unreadable: %w", diagKey(id), err)
		}
		return nil
	})
	return d, err
}

// RequestDiagnostics asks site id for a bundle, named request: it replaces
// a request still waiting (and what had arrived for it) and keeps the last
// complete bundle.
func (c *Central) RequestDiagnostics(id int, request string, at time.Time) error {
	if err := checkSiteID(id); err != nil {
		return err
	}
	if request == "" || len(request) > 64 || hasControl(request) {
		return fmt.Errorf("invalid diagnostics request name %q", request)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d, err := c.diagnosticsLocked(id)
	if err != nil {
		return err
	}
	d.Request, d.RequestedAt, d.Upload, d.Total, d.Received = request, at.UTC(), "", 0, nil
	return c.updateLocked(fmt.Sprintf("diagnostics request %d", id), func(tx *buntdb.Tx) error {
		return setJSONKey(tx, diagKey(id), d, nil)
	})
}

// AddDiagnostics takes one piece of site id's upload (NextDiagnostics) and
// returns the state it leads to.
func (c *Central) AddDiagnostics(id int, p DiagnosticsPiece, at time.Time) (Diagnostics, error) {
	if err := checkSiteID(id); err != nil {
		return Diagnostics{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d, err := c.diagnosticsLocked(id)
	if err != nil {
		return Diagnostics{}, err
	}
	next, err := NextDiagnostics(d, p, at)
	if err != nil {
		return d, err
	}
	if err := c.updateLocked(fmt.Sprintf("diagnostics piece %d", id), func(tx *buntdb.Tx) error {
		return setJSONKey(tx, diagKey(id), next, nil)
	}); err != nil {
		return d, err
	}
	return next, nil
}
