package satellite

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// diagPrimary takes diagnostics pieces by the storage's rule, and can kill
// the connection of one piece.
type diagPrimary struct {
	mu     sync.Mutex
	state  queue.Diagnostics
	pieces []int // sizes of the pieces that arrived
	kill   int   // kill the connection of this piece (1-based; 0 none)
	status int   // answer every piece with this status (0: take it)
}

func (p *diagPrimary) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var piece syncapi.DiagnosticsPiece
	json.NewDecoder(r.Body).Decode(&piece)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status != 0 {
		w.WriteHeader(p.status)
		w.Write([]byte(`{"error":{"code":"diagnostics_not_requested","message":"no","data":null}}`))
		return
	}
	p.pieces = append(p.pieces, len(piece.Data))
	if len(p.pieces) == p.kill {
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
		return
	}
	next, err := queue.NextDiagnostics(p.state, queue.DiagnosticsPiece{Request: piece.Request, Upload: piece.Upload, Offset: piece.Offset, Total: piece.Total, Data: piece.Data}, time.Now())
	if errors.Is(err, queue.ErrNoDiagnosticsRequest) {
		w.WriteHeader(409)
		w.Write([]byte(`{"error":{"code":"diagnostics_not_requested","message":"no","data":null}}`))
		return
	}
	p.state = next
	json.NewEncoder(w).Encode(syncapi.DiagnosticsReceipt{Received: len(next.Received), Complete: next.BundleRequest == piece.Request})
}

// A bundle larger than one request the link can carry goes in pieces the
// sizer sizes, in order; a piece the link loses is sent again, and nothing
// is sent twice once taken.
func TestSatellite_SendDiagnostics(t *testing.T) {
	p := &diagPrimary{state: queue.Diagnostics{Request: "r1"}, kill: 2}
	srv := httptest.NewServer(p)
	defer srv.Close()
	b := newBox(t, srv.URL, Config{})
	bundle := make([]byte, 300<<10) // incompressible, as gzip is
	rand.Read(bundle)
	u := NewUpload("r1", bundle)
	out, err := b.sat.SendDiagnostics(context.Background(), u)
	if out != UploadComplete || err != nil {
		t.Fatalf("outcome %v, %v", out, err)
	}
	if string(p.state.Bundle) != string(bundle) {
		t.Fatal("the primary's bundle is not the one sent")
	}
	total := 0
	for i, n := range p.pieces {
		if n > maxDiagnosticsPiece {
			t.Errorf("piece %d has %d bytes; at most %d", i, n, maxDiagnosticsPiece)
		}
		if i != 1 { // the one the link lost
			total += n
		}
	}
	if len(p.pieces) < 3 || total != len(bundle) {
		t.Errorf("pieces %v: %d bytes taken, want %d in several pieces", p.pieces, total, len(bundle))
	}
}

// A primary that does not know the endpoint (a legacy server: 404) or no
// longer wants the bundle (409) ends the upload; it is not retried.
func TestSatellite_SendDiagnostics_dropped(t *testing.T) {
	for _, status := range []int{404, 409} {
		p := &diagPrimary{status: status}
		srv := httptest.NewServer(p)
		b := newBox(t, srv.URL, Config{})
		out, err := b.sat.SendDiagnostics(context.Background(), NewUpload("r1", []byte("bundle")))
		if out != UploadDropped || err == nil {
			t.Errorf("HTTP %d: outcome %v, %v; want dropped", status, out, err)
		}
		srv.Close()
	}
}
