package loadgen

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"syncagent/agent/passwd"
	"syncagent/agent/primary"
	"syncagent/queue"
)

// fleet is n sites (store k on sites 2k and 2k+1) and a real primary on a
// BuntDB file serving them over loopback HTTP.
func fleet(t *testing.T, n int) (*httptest.Server, []*Site) {
	t.Helper()
	passwd.Iterations = 1000
	c, err := queue.OpenCentral(filepath.Join(t.TempDir(), "central.db"), queue.CentralOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var rows []primary.SiteRow
	var sites []*Site
	for id := 2; id < n+2; id++ {
		pw := passwd.SHA256Hex(fmt.Sprint("pw", id))
		h, err := passwd.Hash(pw)
		if err != nil {
			t.Fatal(err)
		}
		stores := []string{fmt.Sprintf("store-%d", id/2)}
		rows = append(rows, primary.SiteRow{SyncID: id, User: fmt.Sprint("site-", id), PasswordHash: h, Stores: stores})
		sites = append(sites, &Site{ID: id, User: fmt.Sprint("site-", id), Password: pw, HWID: fmt.Sprint("hw-", id), Stores: stores})
	}
	p, err := primary.New(c, primary.Config{Sites: rows}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	return srv, sites
}

// TestRun_LedgerAndFailover protects the kill benchmark's verdict: new
// records from every site reach the other site of their store exactly once,
// and a node that is down (its URL refuses) costs failovers, not errors.
func TestRun_LedgerAndFailover(t *testing.T) {
	srv, sites := fleet(t, 6)
	dead := httptest.NewServer(nil)
	dead.Close() // a node that is down: its port refuses
	ledger := NewLedger(sites)
	cfg := Config{URLs: []string{srv.URL, dead.URL}, Sites: sites, Rate: 200, Duration: 500 * time.Millisecond, Records: 5,
		Payload: 100, Distinct: true, Ledger: ledger, Timeout: 5 * time.Second}
	res := Run(context.Background(), cfg)
	if res.Failed != 0 || res.Cycles == 0 {
		t.Fatalf("cycles %d, failed %d: %v", res.Cycles, res.Failed, res.FirstErrors)
	}
	if res.Failovers == 0 {
		t.Fatal("no failover, though half the sites start on a dead node")
	}
	if err := Drain(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	v := ledger.Check()
	if v.Accepted != int(res.Accepted) || v.Deliveries != v.Accepted || v.Lost != 0 || v.Duplicated != 0 {
		t.Fatalf("verdict %+v, accepted %d", v, res.Accepted)
	}
	// A record a site never acknowledged is lost; one delivered again after
	// its acknowledgement is a duplicate.
	ledger.noteAccepted(2, "store-1", "store-1-2-never")
	ledger.noteAcked(sites[1], "store-1-2-1") // site 3 acknowledged it in the run already
	if v := ledger.Check(); v.Lost != 1 || v.Duplicated != 1 {
		t.Fatalf("after a lost and a repeated record: %+v", v)
	}
}
