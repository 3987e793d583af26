package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func openCentral(t testing.TB, path string, opts CentralOptions) *Central {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	c, err := OpenCentral(path, opts)
	if err != nil {
		t.Fatalf("OpenCentral: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func inbound(sid string, r Record, dests ...int) Inbound {
	return Inbound{SyncOutID: sid, Record: r, Dests: dests}
}

func queuedIDs(t testing.TB, c *Central, site int) []string {
	t.Helper()
	q, n, err := c.Queued(site, 0)
	if err != nil || n != len(q) {
		t.Fatalf("Queued(%d) = %d entries, len %d, %v", site, len(q), n, err)
	}
	var out []string
	for _, e := range q {
		out = append(out, e.Record.ID)
	}
	return out
}

func TestCentral_AcceptRoutes(t *testing.T) {
	c := openCentral(t, tempPath(t, "pri.db"), CentralOptions{})
	res, err := c.Accept(2, []Inbound{
		inbound("e-1", storeRec("item", "a", "s1", 1), 3, 4),
		inbound("e-2", storeRec("item", "b", "s1", 1), 3),
	})
	if err != nil || res.Accepted != 2 || res.Duplicate != 0 {
		t.Fatalf("Accept = %+v, %v", res, err)
	}
	if got := strings.Join(queuedIDs(t, c, 3), ","); got != "a,b" {
		t.Fatalf("site 3 queue = %s", got)
	}
	if got := strings.Join(queuedIDs(t, c, 4), ","); got != "a" {
		t.Fatalf("site 4 queue = %s", got)
	}
	if r, ok, _ := c.Get("item", "a"); !ok || dataN(t, r) != 1 {
		t.Fatal("central datafile lacks the pushed record")
	}
}

// A pushed batch sent twice (the response was lost) changes nothing.
func TestCentral_AcceptTwice(t *testing.T) {
	path := tempPath(t, "pri.db")
	c := openCentral(t, path, CentralOptions{})
	batch := []Inbound{inbound("e-1", storeRec("item", "a", "s1", 1), 3), inbound("e-2", storeRec("item", "b", "s1", 1), 3)}
	if _, err := c.Accept(2, batch); err != nil {
		t.Fatal(err)
	}
	res, err := c.Accept(2, batch)
	if err != nil || res.Accepted != 0 || res.Duplicate != 2 {
		t.Fatalf("second Accept = %+v, %v", res, err)
	}
	// Also after a restart, and with a repeat inside one batch.
	c.Close()
	c = openCentral(t, path, CentralOptions{})
	res, err = c.Accept(2, append(batch, inbound("e-3", storeRec("item", "c", "s1", 1), 3), inbound("e-3", storeRec("item", "c", "s1", 1), 3)))
	if err != nil || res.Accepted != 1 || res.Duplicate != 3 {
		t.Fatalf("Accept after reopen = %+v, %v", res, err)
	}
	if got := c.QueueLen(3); got != 3 {
		t.Fatalf("QueueLen(3) = %d, want 3", got)
	}
	// The same SyncOutID from another site is another record.
	if res, _ := c.Accept(5, batch[:1]); res.Accepted != 1 {
		t.Fatalf("Accept from another origin = %+v", res)
	}
}

// Accept never queues a record back to the site that pushed it, nor twice to one site.
func TestCentral_AcceptNeverEchoes(t *testing.T) {
	c := openCentral(t, tempPath(t, "pri.db"), CentralOptions{})
	if _, err := c.Accept(2, []Inbound{inbound("e-1", storeRec("item", "a", "s1", 1), 2, 3, 3, 0, -1)}); err != nil {
		t.Fatal(err)
	}
	if c.QueueLen(2) != 0 || c.QueueLen(3) != 1 || c.QueueLen(0) != 0 {
		t.Fatalf("queue lengths: site2 %d site3 %d", c.QueueLen(2), c.QueueLen(3))
	}
}

func TestCentral_AcceptInvalidChangesNothing(t *testing.T) {
	c := openCentral(t, tempPath(t, "pri.db"), CentralOptions{})
	_, err := c.Accept(2, []Inbound{inbound("e-1", storeRec("item", "a", "s1", 1), 3), inbound("e-2", Record{Table: "item", ID: "b", Action: "nope"}, 3)})
	if err == nil || c.QueueLen(3) != 0 {
		t.Fatalf("Accept with a bad record: %v, queue %d", err, c.QueueLen(3))
	}
	if _, err := c.Accept(2, []Inbound{inbound("", storeRec("item", "a", "s1", 1), 3)}); err == nil {
		t.Fatal("Accept without a syncOutId succeeded")
	}
}

func TestCentral_AckThenReopen(t *testing.T) {
	path := tempPath(t, "pri.db")
	c := openCentral(t, path, CentralOptions{})
	for i := range 5 {
		c.Accept(2, []Inbound{inbound(fmt.Sprintf("e-%d", i), storeRec("item", fmt.Sprintf("r%d", i), "s1", i), 3)})
	}
	q, n, _ := c.Queued(3, 3)
	if len(q) != 3 || n != 5 || q[0].Record.ID != "r0" {
		t.Fatalf("Queued = %+v, %d", q, n)
	}
	got, err := c.Ack(3, []string{q[0].SyncOutID, q[1].SyncOutID, "bogus", "00000000000000000099-000000", q[0].SyncOutID})
	if err != nil || got != 2 {
		t.Fatalf("Ack = %d, %v", got, err)
	}
	// Another site's ack of these ids touches nothing.
	if got, _ := c.Ack(4, []string{q[2].SyncOutID}); got != 0 {
		t.Fatalf("foreign Ack removed %d", got)
	}
	c.Close()
	c = openCentral(t, path, CentralOptions{})
	if ids := strings.Join(queuedIDs(t, c, 3), ","); ids != "r2,r3,r4" || c.QueueLen(3) != 3 {
		t.Fatalf("queue after reopen = %s (len %d)", ids, c.QueueLen(3))
	}
}

// An intent written but not applied (power cut) is applied exactly once on open.
func TestCentral_InboxReplay(t *testing.T) {
	path := tempPath(t, "pri.db")
	c := openCentral(t, path, CentralOptions{})
	batch := []Inbound{inbound("e-1", storeRec("item", "a", "s1", 1), 3, 4), inbound("e-2", rec("unit", "kg", map[string]any{"n": 1}), 3, 4)}
	c.mu.Lock()
	it, err := c.planLocked(2, batch)
	if err == nil {
		err = c.writeIntentLocked(it)
	}
	c.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	c.Close() // "crash" before apply
	c = openCentral(t, path, CentralOptions{})
	for _, site := range []int{3, 4} {
		if ids := strings.Join(queuedIDs(t, c, site), ","); ids != "a,kg" {
			t.Fatalf("site %d queue = %s, want a,kg", site, ids)
		}
	}
	entries, maxCur, _ := c.CentralSince(0, 0)
	if len(entries) != 1 || entries[0].Record.ID != "kg" || maxCur != entries[0].Cursor {
		t.Fatalf("central log = %+v, max %d", entries, maxCur)
	}
	// The push is known: sending it again is a duplicate.
	if res, err := c.Accept(2, batch); err != nil || res.Duplicate != 2 {
		t.Fatalf("Accept after replay = %+v, %v", res, err)
	}
	var inbox int
	c.st.view(func(tx *buntTx) error {
		return tx.AscendKeys(inboxPrefix+"*", func(k, v string) bool { inbox++; return true })
	})
	if inbox != 0 {
		t.Fatalf("%d intents left after replay", inbox)
	}
}

func TestCentral_QueueMax(t *testing.T) {
	c := openCentral(t, tempPath(t, "pri.db"), CentralOptions{QueueMax: 2})
	if _, err := c.Accept(2, []Inbound{inbound("e-1", storeRec("item", "a", "s1", 1), 3), inbound("e-2", storeRec("item", "b", "s1", 1), 3)}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Accept(2, []Inbound{inbound("e-3", storeRec("item", "c", "s1", 1), 3, 4)})
	if !errors.Is(err, ErrQueueFull) || !strings.Contains(err.Error(), "site 3") {
		t.Fatalf("Accept over QueueMax: %v", err)
	}
	if _, ok, _ := c.Get("item", "c"); ok || c.QueueLen(4) != 0 {
		t.Fatal("refused push changed the datafile")
	}
	if _, err := c.Write(storeRec("item", "d", "s1", 1), []int{3}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Write over QueueMax: %v", err)
	}
	// After the site pulls, pushes are accepted again.
	q, _, _ := c.Queued(3, 10)
	c.Ack(3, []string{q[0].SyncOutID})
	if _, err := c.Accept(2, []Inbound{inbound("e-3", storeRec("item", "c", "s1", 1), 3, 4)}); err != nil {
		t.Fatal(err)
	}
}

// The central log keeps one entry per record: its latest change.
func TestCentral_CentralLog(t *testing.T) {
	path := tempPath(t, "pri.db")
	c := openCentral(t, path, CentralOptions{})
	c1, _ := c.Write(rec("unit", "kg", map[string]any{"n": 1}), nil)
	c2, _ := c.Write(rec("unit", "g", map[string]any{"n": 1}), nil)
	c3, _ := c.Write(rec("unit", "kg", map[string]any{"n": 2}), nil)
	if c1 == 0 || c2 <= c1 || c3 <= c2 {
		t.Fatalf("cursors %d %d %d", c1, c2, c3)
	}
	if cur, _ := c.Write(storeRec("item", "a", "s1", 1), []int{3}); cur != 0 {
		t.Fatalf("store record got cursor %d", cur)
	}
	es, maxCur, _ := c.CentralSince(0, 0)
	if len(es) != 2 || es[0].Record.ID != "g" || es[1].Record.ID != "kg" || es[1].Cursor != c3 || maxCur != c3 {
		t.Fatalf("CentralSince(0) = %+v, %d", es, maxCur)
	}
	if es, _, _ := c.CentralSince(c2, 0); len(es) != 1 || es[0].Cursor != c3 {
		t.Fatalf("CentralSince(%d) = %+v", c2, es)
	}
	// A central delete is logged (sites must see it) and replaces the record's entry.
	c4, _ := c.Write(del("unit", "kg"), nil)
	es, _, _ = c.CentralSince(0, 0)
	if len(es) != 2 || es[1].Cursor != c4 || es[1].Record.Action != Delete {
		t.Fatalf("after delete: %+v", es)
	}
	if _, ok, _ := c.Get("unit", "kg"); ok {
		t.Fatal("deleted central record readable")
	}
	// A delete of a store record is routed, not logged.
	if cur, _ := c.Write(del("item", "a"), []int{3}); cur != 0 {
		t.Fatalf("store delete got cursor %d", cur)
	}
	c.Close()
	c = openCentral(t, path, CentralOptions{})
	if c5, _ := c.Write(rec("unit", "lb", map[string]any{"n": 1}), nil); c5 <= c4 {
		t.Fatalf("cursor after reopen %d, want > %d", c5, c4)
	}
}

func TestCentral_Fill(t *testing.T) {
	c := openCentral(t, tempPath(t, "pri.db"), CentralOptions{QueueMax: 10})
	for i := range 30 {
		store := "s1"
		if i%3 == 0 {
			store = "s2"
		}
		c.Accept(2, []Inbound{inbound(fmt.Sprintf("e-%d", i), storeRec("item", fmt.Sprintf("r%02d", i), store, i))})
	}
	c.Write(rec("unit", "kg", nil), nil)
	c.Write(del("item", "r01"), nil)
	n, err := c.Fill(5, func(r Record) bool { return r.StoreID() == "s1" })
	if err != nil || n != 19 || c.QueueLen(5) != 19 {
		t.Fatalf("Fill = %d, %v; QueueLen %d", n, err, c.QueueLen(5))
	}
}

func TestCentral_Sites(t *testing.T) {
	path := tempPath(t, "pri.db")
	c := openCentral(t, path, CentralOptions{})
	if s, err := c.Site(7); err != nil || s.SyncID != 7 || s.Initialisation != InitNew || s.HardwareID != "" {
		t.Fatalf("unknown Site = %+v, %v", s, err)
	}
	if s, err := c.Pin(7, "hw-A"); err != nil || s.HardwareID != "hw-A" || s.PinnedAt.IsZero() {
		t.Fatalf("first Pin = %+v, %v", s, err)
	}
	if _, err := c.Pin(7, "hw-A"); err != nil {
		t.Fatalf("same Pin: %v", err)
	}
	_, err := c.Pin(7, "hw-B")
	if !errors.Is(err, ErrHardwareMismatch) || strings.Contains(err.Error(), "hw-A") || !strings.Contains(err.Error(), "clear the pin") {
		t.Fatalf("other Pin: %v", err)
	}
	if err := c.SetInitialisation(7, InitStarted); err != nil {
		t.Fatal(err)
	}
	if err := c.SetInitialisation(7, "bogus"); err == nil {
		t.Fatal("bogus initialisation status accepted")
	}
	t0 := time.Now()
	c.Touch(7, t0)
	c.Touch(7, t0.Add(10*time.Second)) // memory only
	if s, _ := c.Site(7); !s.LastContact.Equal(t0.Add(10 * time.Second).UTC()) {
		t.Fatalf("LastContact = %v", s.LastContact)
	}
	c.Close()
	c = openCentral(t, path, CentralOptions{})
	s, _ := c.Site(7)
	if s.HardwareID != "hw-A" || s.Initialisation != InitStarted || !s.LastContact.Equal(t0.UTC()) {
		t.Fatalf("Site after reopen = %+v", s)
	}
	if err := c.ClearPin(7); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pin(7, "hw-B"); err != nil {
		t.Fatalf("Pin after ClearPin: %v", err)
	}
	c.Touch(9, t0)
	if ss := c.Sites(); len(ss) != 2 || ss[0].SyncID != 7 || ss[1].SyncID != 9 {
		t.Fatalf("Sites = %+v", ss)
	}
}

// TestCentral_CentralSinceLastCursor protects the largest cursor: nothing
// comes after it (the scan's start, cursor+1, must not wrap round to 0).
func TestCentral_CentralSinceLastCursor(t *testing.T) {
	c := openCentral(t, tempPath(t, "c.db"), CentralOptions{})
	if _, err := c.Write(Record{Table: "item", ID: "i1", Action: Insert, Data: json.RawMessage(`{"n":1}`)}, nil); err != nil {
		t.Fatal(err)
	}
	got, _, err := c.CentralSince(math.MaxUint64, 10)
	if err != nil || len(got) != 0 {
		t.Errorf("after the largest cursor: %d entries, %v; want none", len(got), err)
	}
}
