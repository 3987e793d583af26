package satellite

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// TestCycle_fair protects issue 10 item 7: a box under continuous local
// writes pushes what waited when the cycle started, then pulls; the writes
// made meanwhile wait for the next cycle.
func TestCycle_fair(t *testing.T) {
	p := newPrimary(t)
	b := newBox(t, p.srv.URL, Config{RequestSize: 2})
	b.sat.Cycle(context.Background())
	b.put(t, "a", "b", "c", "d", "e")
	n := 0
	p.set(func(syncapi.Push) (int, string) {
		n++
		b.put(t, fmt.Sprintf("late%d", n), "a") // a new record, and a newer value of one waiting
		return 0, ""
	})
	res := b.sat.Cycle(context.Background())
	if res.Err != nil || res.Pushed != 5 || len(p.batches()) != 3 {
		t.Fatalf("err %v pushed %d in %v; want a..e in 3 batches", res.Err, res.Pushed, p.batches())
	}
	p.mu.Lock()
	closing, pulls := p.closing, p.pulls
	p.mu.Unlock()
	if closing != 2 || pulls != 2 {
		t.Errorf("%d closing batches, %d queue pulls; want one of each per cycle", closing, pulls)
	}
	if got := b.store.OutboxLen(); got != 4 {
		t.Errorf("outbox %d after the cycle, want a and late1..3", got)
	}
}

// TestCycle_truncated protects the round cap's report: a phase cut by it
// says so, and the next cycle goes on.
func TestCycle_truncated(t *testing.T) {
	p := newPrimary(t)
	b := newBox(t, p.srv.URL, Config{RequestSize: 2})
	b.sat.maxRounds = 3
	b.sat.Cycle(context.Background())
	for i := range 10 {
		b.put(t, fmt.Sprint(i))
	}
	res := b.sat.Cycle(context.Background())
	if !res.Truncated || res.Pushed != 6 || res.Err != nil || len(res.Notes) == 0 {
		t.Fatalf("truncated %v pushed %d err %v notes %v; want truncated after 6", res.Truncated, res.Pushed, res.Err, res.Notes)
	}
	if res := b.sat.Cycle(context.Background()); res.Truncated || res.Pushed != 4 {
		t.Errorf("next cycle: truncated %v pushed %d; want 4, not truncated", res.Truncated, res.Pushed)
	}
}

// TestInit_oldDatafile protects an upgrade: a datafile initialised before
// the initialisation state existed ("initialised" = "yes") is not
// initialised again, and adopts the configured sync_id.
func TestInit_oldDatafile(t *testing.T) {
	p := newPrimary(t)
	b := newBox(t, p.srv.URL, Config{SyncID: 4})
	if err := b.store.SetMeta(metaInitialised, []byte("yes")); err != nil {
		t.Fatal(err)
	}
	if res := b.sat.Cycle(context.Background()); res.Err != nil || res.Initialisation != "" {
		t.Fatalf("err %v initialisation %q; want nothing to do", res.Err, res.Initialisation)
	}
	if st := b.sat.Status(); st.Initialisation != "completed (sync_id 4)" {
		t.Errorf("status %q", st.Initialisation)
	}
}

// TestInit_generateNew protects `generate --new`: a clean re-initialisation
// (the queue refilled, leftovers removed), local records re-queued.
func TestInit_generateNew(t *testing.T) {
	p := newPrimary(t)
	b := newBox(t, p.srv.URL, Config{})
	b.sat.Cycle(context.Background())
	if _, err := b.store.Apply([]queue.Record{{Table: "item", ID: "stale", Action: queue.Update, Data: json.RawMessage(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	b.put(t, "mine")
	b.sat.Cycle(context.Background())
	if n, err := b.sat.Generate(context.Background(), true); err != nil || n != 1 {
		t.Fatalf("Generate = %d, %v", n, err)
	}
	res := b.sat.Cycle(context.Background())
	if res.Err != nil || res.Initialisation != "completed" || res.Removed != 1 || res.Pushed != 1 {
		t.Fatalf("err %v initialisation %q removed %d pushed %d", res.Err, res.Initialisation, res.Removed, res.Pushed)
	}
	if _, ok, _ := b.store.Get("stock", "mine"); !ok {
		t.Error("the box's own record was removed")
	}
}

// TestCycle_siteLinkFailure protects an initialised box on a flaky link: a
// GET site the link loses does not stop the push; a box never initialised
// cannot go on without it.
func TestCycle_siteLinkFailure(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	p := newPrimary(t)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() && strings.HasSuffix(r.URL.Path, "/"+syncapi.EndpointSite) {
			w.WriteHeader(502)
			io.WriteString(w, nginx502)
			return
		}
		p.serve(w, r)
	}))
	t.Cleanup(front.Close)
	b := newBox(t, front.URL, Config{})
	if res := b.sat.Cycle(context.Background()); res.Err == nil {
		t.Fatal("a box never initialised went on without GET site")
	}
	fail.Store(false)
	b.sat.Cycle(context.Background())
	fail.Store(true)
	b.put(t, "r1")
	if res := b.sat.Cycle(context.Background()); res.Err != nil || res.Pushed != 1 {
		t.Fatalf("err %v pushed %d; want the push through despite GET site", res.Err, res.Pushed)
	}
}
