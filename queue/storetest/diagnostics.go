package storetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"syncagent/queue"
)

// testDiagnostics: a site's diagnostics bundle arrives in pieces, in order,
// survives a reopen half-way, and is kept whole once complete; a piece of a
// request that is not waiting is refused, a repeat changes nothing, a new
// upload starts again, a new request keeps the last bundle.
func testDiagnostics(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	bundle := bytes.Repeat([]byte("diagnostics "), 100) // 1,200 bytes
	sum := sha256.Sum256(bundle)
	upload := hex.EncodeToString(sum[:])
	piece := func(req string, off, n int) queue.DiagnosticsPiece {
		return queue.DiagnosticsPiece{Request: req, Upload: upload, Offset: off, Total: len(bundle), Data: bundle[off : off+n]}
	}
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	if d, err := c.Diagnostics(7); err != nil || d.Request != "" || d.Bundle != nil {
		t.Fatalf("no request yet: %+v, %v", d, err)
	}
	if _, err := c.AddDiagnostics(7, piece("r1", 0, 500), at); !errors.Is(err, queue.ErrNoDiagnosticsRequest) {
		t.Fatalf("a piece nobody asked for: %v", err)
	}
	if err := c.RequestDiagnostics(7, "r1", at); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddDiagnostics(7, piece("r0", 0, 500), at); !errors.Is(err, queue.ErrNoDiagnosticsRequest) {
		t.Fatalf("a piece of another request: %v", err)
	}
	if d, err := c.AddDiagnostics(7, piece("r1", 0, 500), at); err != nil || len(d.Received) != 500 {
		t.Fatalf("first piece: %d received, %v", len(d.Received), err)
	}
	if d, _ := c.AddDiagnostics(7, piece("r1", 0, 500), at); len(d.Received) != 500 {
		t.Fatalf("a repeated piece: %d received", len(d.Received))
	}
	if d, _ := c.AddDiagnostics(7, piece("r1", 900, 300), at); len(d.Received) != 500 {
		t.Fatalf("a piece beyond a gap was taken: %d received", len(d.Received))
	}
	bad := piece("r1", 500, 100)
	bad.Total = queue.MaxDiagnosticsBytes + 1
	if _, err := c.AddDiagnostics(7, bad, at); err == nil || errors.Is(err, queue.ErrNoDiagnosticsRequest) {
		t.Fatalf("an oversized bundle: %v", err)
	}
	c.Close()
	c = b.Open(t, "pri")
	d, err := c.AddDiagnostics(7, piece("r1", 500, 700), at.Add(time.Minute))
	if err != nil || !bytes.Equal(d.Bundle, bundle) || d.BundleRequest != "r1" || d.Request != "" || d.Received != nil {
		t.Fatalf("last piece after a reopen: request %q bundle %d bytes (%q), %v", d.Request, len(d.Bundle), d.BundleRequest, err)
	}
	if _, err := c.AddDiagnostics(7, piece("r1", 0, 500), at); !errors.Is(err, queue.ErrNoDiagnosticsRequest) {
		t.Fatalf("a piece after the bundle was complete: %v", err)
	}
	// A new request keeps the last bundle; a new upload (another digest)
	// starts again; a whole that does not match its digest is dropped.
	if err := c.RequestDiagnostics(7, "r2", at); err != nil {
		t.Fatal(err)
	}
	c.AddDiagnostics(7, piece("r2", 0, 500), at)
	other := append(bytes.Clone(bundle[:1199]), 'X')
	osum := sha256.Sum256(other)
	d, _ = c.AddDiagnostics(7, queue.DiagnosticsPiece{Request: "r2", Upload: hex.EncodeToString(osum[:]), Offset: 0, Total: len(other), Data: other[:100]}, at)
	if len(d.Received) != 100 || !bytes.Equal(d.Bundle, bundle) {
		t.Fatalf("another upload: %d received, last bundle %d bytes", len(d.Received), len(d.Bundle))
	}
	liar := queue.DiagnosticsPiece{Request: "r2", Upload: upload, Offset: 0, Total: len(bundle), Data: other}
	if d, _ = c.AddDiagnostics(7, liar, at); d.Request != "r2" || len(d.Received) != 0 || d.BundleRequest != "r1" {
		t.Fatalf("a whole that is not its digest: %+v", d)
	}
	if d, _ := c.Diagnostics(8); d.Request != "" {
		t.Fatal("another site has a request")
	}
}
