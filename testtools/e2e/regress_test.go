package e2e

import (
	"context"
	"net"
	"testing"

	"syncagent/queue"
)

// TestPush_deleteOfRecordThePrimaryNeverHad pins a bug the crash soak found:
// a record created and deleted on a site between two pushes reaches the
// primary as a lone delete of a record it never had. The primary refused it
// as "central data" and the satellite set it aside with that misleading
// reason; it is a no-op, and must be accepted as one.
func TestPush_deleteOfRecordThePrimaryNeverHad(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"a", "shared"}, 3: {"shared"}})
	a, b := w.sats[2], w.sats[3]
	a.sync(t)
	b.sync(t)
	a.put(t, "stock", "brief", "shared", map[string]any{"qty": 1})
	if _, err := a.store.Write(queue.Record{Table: "stock", ID: "brief", Action: queue.Delete}); err != nil {
		t.Fatal(err)
	}
	a.put(t, "stock", "kept", "shared", map[string]any{"qty": 2})
	res := a.sync(t)
	if res.SetAside != 0 || res.Pushed != 2 || a.store.OutboxLen() != 0 {
		t.Fatalf("pushed %d, set aside %d, outbox %d; want 2, 0, 0", res.Pushed, res.SetAside, a.store.OutboxLen())
	}
	if aside, _ := a.store.Aside(); len(aside) != 0 {
		t.Fatalf("set aside: %+v", aside)
	}
	if _, ok, _ := w.central.Get("stock", "brief"); ok {
		t.Error("the primary holds a record deleted before it was ever pushed")
	}
	if n := w.central.QueueLen(3); n != 1 {
		t.Errorf("site 3 queue = %d, want 1 (only the kept record)", n)
	}
	// The delete is not turned into central data either: no site is told.
	entries, _, _ := w.central.CentralSince(0, 10)
	for _, e := range entries {
		if e.Record.Table != "store" {
			t.Errorf("central log holds %s/%s, want only the store rows", e.Record.Table, e.Record.ID)
		}
	}
	b.sync(t)
	if _, ok := b.has(t, "stock", "kept"); !ok {
		t.Error("site 3 lacks the kept record")
	}
}

// TestPush_primaryDownSetsNothingAside pins a bug the crash soak found: with
// the primary down (connection refused), a lone record in the outbox failed
// "on its own" three times within one cycle and was set aside as if it were
// poison, so it never reached the primary once it came back.
func TestPush_primaryDownSetsNothingAside(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"a"}, 3: {"a"}})
	a := w.sats[2]
	a.sync(t)
	w.sats[3].sync(t)
	a.put(t, "stock", "lone", "a", map[string]any{"qty": 1})
	a.client.BaseURL = deadURL(t)
	for i := 0; i < 3; i++ {
		if res := a.sat.Cycle(context.Background()); res.Err == nil {
			t.Fatal("a cycle against a primary that is down succeeded")
		}
	}
	if aside, _ := a.store.Aside(); len(aside) != 0 || a.store.OutboxLen() != 1 {
		t.Fatalf("primary down: %d set aside, outbox %d; want 0, 1", len(aside), a.store.OutboxLen())
	}
	a.client.BaseURL = w.srv.URL
	if res := a.sync(t); res.Pushed != 1 {
		t.Fatalf("pushed %d once the primary is back, want 1", res.Pushed)
	}
	w.sats[3].sync(t)
	if _, ok := w.sats[3].has(t, "stock", "lone"); !ok {
		t.Error("the record never reached site 3")
	}
}

// deadURL is an address where nothing listens (connection refused).
func deadURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}
