package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"syncagent/agent/primary"
	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// The scenarios of issue 10, each with a real primary and real satellites
// over HTTP on loopback, asserting the exact value on every site and on the
// primary (docs/replication.md says why each must end so).

// qty reads a record's qty on the primary ("-" when it is missing).
func (w *world) qty(t *testing.T, table, id string) string {
	t.Helper()
	r, ok, err := w.central.Get(table, id)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return "-"
	}
	var m map[string]any
	json.Unmarshal(r.Data, &m)
	return fmt.Sprint(m["qty"])
}

// qty reads a record's qty on a site ("-" when it is missing).
func (s *site) qty(t *testing.T, table, id string) string {
	t.Helper()
	m, ok := s.has(t, table, id)
	if !ok {
		return "-"
	}
	return fmt.Sprint(m["qty"])
}

// everywhere checks the value of table/id on the primary and on each site.
func everywhere(t *testing.T, w *world, table, id, want string, sites ...*site) {
	t.Helper()
	if got := w.qty(t, table, id); got != want {
		t.Errorf("primary: %s/%s qty = %s, want %s", table, id, got, want)
	}
	for _, s := range sites {
		if got := s.qty(t, table, id); got != want {
			t.Errorf("site %d: %s/%s qty = %s, want %s", s.id, table, id, got, want)
		}
	}
}

func syncAll(t *testing.T, rounds int, sites ...*site) {
	t.Helper()
	for range rounds {
		for _, s := range sites {
			s.sync(t)
		}
	}
}

// LOST ACK: b pulls S1=1, its acknowledgement is lost, b's user edits
// S1=2. b's accepted change removes the older entry from its queue, so b
// does not go back to 1.
func TestReplication_lostAckDoesNotUndoLaterEdit(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"s"}, 3: {"s"}})
	a, b := w.sats[2], w.sats[3]
	syncAll(t, 1, a, b)
	a.put(t, "stock", "S1", "s", map[string]any{"qty": 1})
	a.sync(t)
	lossyAck := dropper(t, w.srv.URL, "POST", "acknowledged_records", 4, false)
	b.client.BaseURL = lossyAck.URL
	b.sat.Cycle(context.Background()) // applies S1=1, every acknowledgement lost
	b.client.BaseURL = w.srv.URL
	if got := b.qty(t, "stock", "S1"); got != "1" {
		t.Fatalf("b did not apply S1=1: %s", got)
	}
	b.put(t, "stock", "S1", "s", map[string]any{"qty": 2})
	syncAll(t, 2, b, a)
	everywhere(t, w, "stock", "S1", "2", a, b)
}

// REPLACED BOX: a new box writes S1=20 while its link is down (the primary
// holds 10); its first sync initialises it, and its own change wins there
// as everywhere else.
func TestReplication_initialiseKeepsTheBoxsOwnChange(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"s"}, 3: {"s"}})
	a := w.sats[2]
	a.sync(t)
	a.put(t, "stock", "S1", "s", map[string]any{"qty": 10})
	a.sync(t)
	fresh := w.newSite(3, []string{"s"}, w.srv.URL) // the replaced box, never initialised
	fresh.put(t, "stock", "S1", "s", map[string]any{"qty": 20})
	syncAll(t, 2, fresh, a)
	everywhere(t, w, "stock", "S1", "20", a, fresh)

	// The same with `generate --new` and an edit waiting.
	fresh.put(t, "stock", "S1", "s", map[string]any{"qty": 30})
	if _, err := fresh.sat.Generate(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	syncAll(t, 2, fresh, a)
	everywhere(t, w, "stock", "S1", "30", a, fresh)
}

// CONCURRENT: a sets 11 and b sets 12 on one shared record; the change
// that reaches the primary last wins everywhere. A delete against an
// update: the same rule.
func TestReplication_concurrentUpdatesConverge(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"s"}, 3: {"s"}})
	a, b := w.sats[2], w.sats[3]
	syncAll(t, 1, a, b)
	a.put(t, "stock", "S1", "s", map[string]any{"qty": 10})
	syncAll(t, 1, a, b)
	a.put(t, "stock", "S1", "s", map[string]any{"qty": 11})
	b.put(t, "stock", "S1", "s", map[string]any{"qty": 12})
	syncAll(t, 2, a, b) // a's change arrives first, b's last
	everywhere(t, w, "stock", "S1", "12", a, b)

	// a deletes while b updates; b's update reaches the primary last.
	if _, err := a.store.Write(queue.Record{Table: "stock", ID: "S1", Action: queue.Delete}); err != nil {
		t.Fatal(err)
	}
	b.put(t, "stock", "S1", "s", map[string]any{"qty": 13})
	syncAll(t, 2, a, b)
	everywhere(t, w, "stock", "S1", "13", a, b)

	// b updates while a deletes; a's delete reaches the primary last.
	b.put(t, "stock", "S1", "s", map[string]any{"qty": 14})
	if _, err := a.store.Write(queue.Record{Table: "stock", ID: "S1", Action: queue.Delete}); err != nil {
		t.Fatal(err)
	}
	syncAll(t, 2, b, a)
	everywhere(t, w, "stock", "S1", "-", a, b)
}

// OWNERSHIP: a site with only store-a changes central data and a store-b
// record (claiming store-a), then deletes both. Every change is refused on
// its own, the primary keeps both, the site is given the primary's copies
// back, and a site initialised later still gets the central record.
func TestReplication_ownership(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"store-a"}, 3: {"store-b"}, 4: {"store-a"}})
	a, b := w.sats[2], w.sats[3]
	if _, err := w.prim.Write(queue.Record{Table: "item", ID: "I1", Action: queue.Update, Data: json.RawMessage(`{"name":"amoxicillin","qty":1}`)}); err != nil {
		t.Fatal(err)
	}
	syncAll(t, 1, a, b)
	b.put(t, "transact", "TB", "store-b", map[string]any{"qty": 5})
	b.sync(t)
	// Site a writes around its local API (an app bypassing the rules).
	a.store.Write(queue.Record{Table: "item", ID: "I1", Action: queue.Update, Data: json.RawMessage(`{"name":"stolen","qty":99}`)})
	a.store.Write(queue.Record{Table: "transact", ID: "TB", Action: queue.Update, Data: json.RawMessage(`{"store_ID":"store-a","qty":99}`)})
	res := a.sync(t)
	if res.SetAside != 2 {
		t.Fatalf("set aside %d, want the 2 refused changes", res.SetAside)
	}
	a.store.Write(queue.Record{Table: "item", ID: "I1", Action: queue.Delete})
	a.store.Write(queue.Record{Table: "transact", ID: "TB", Action: queue.Delete})
	syncAll(t, 2, a)
	everywhere(t, w, "item", "I1", "1", a)
	if got := w.qty(t, "transact", "TB"); got != "5" {
		t.Errorf("primary: transact/TB qty = %s, want 5", got)
	}
	if got := a.qty(t, "transact", "TB"); got != "-" {
		t.Errorf("site a holds store-b's transact: qty %s", got)
	}
	b.sync(t)
	if got := b.qty(t, "transact", "TB"); got != "5" {
		t.Errorf("site b: transact/TB qty = %s, want 5", got)
	}
	late := w.sats[4]
	late.sync(t)
	if got := late.qty(t, "item", "I1"); got != "1" {
		t.Errorf("a site initialised later: item/I1 qty = %s, want 1", got)
	}
}

// RESTORE: a site whose outbox numbering went back (restored from an
// older copy, or a v5 client reinstalled and counting its change-log
// cursors from the start) sends new changes under syncOutIds it used
// before; they are taken, not discarded as duplicates, and the push answer
// says the outbox went back.
func TestReplication_rewoundOutboxIsTaken(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"s"}, 3: {"s"}})
	a, b := w.sats[2], w.sats[3]
	syncAll(t, 1, a, b)
	sid := func(n int) string { return fmt.Sprintf(`"syncOutId":"client-%d"`, n) }
	for i, qty := range []int{1, 2} {
		body := `{"queueLength":0,"data":[{` + sid(101) + `,"tableName":"stock","recordId":"R","action":"Update","recordData":{"store_ID":"s","qty":` + fmt.Sprint(qty) + `}}]}`
		status, resp := w.raw("POST", "/sync/v5/queued_records", 2, "hw-2", body)
		if status != 200 {
			t.Fatalf("push %d: %d %s", i, status, resp)
		}
		if rewound := strings.Contains(string(resp), `"rewound":true`); rewound != (i == 1) {
			t.Errorf("push %d answered %s", i, resp)
		}
	}
	b.sync(t)
	if got := b.qty(t, "stock", "R"); got != "2" {
		t.Errorf("site b: R qty = %s, want 2 (the reused syncOutId with new content is a new change)", got)
	}
	if s, _ := w.central.Site(2); s.Rewinds != 1 {
		t.Errorf("site 2 rewinds = %d, want 1", s.Rewinds)
	}
}

// MEMBERSHIP: a store moved from site a to site b reaches b with its
// existing records and leaves a; a record moved from store s to store t
// leaves the sites of s only; a row removed and re-added misses nothing.
func TestReplication_membership(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"m", "s"}, 3: {"s", "t"}, 4: {"s"}})
	a, b, c := w.sats[2], w.sats[3], w.sats[4]
	syncAll(t, 1, a, b, c)
	for i := range 5 {
		a.put(t, "stock", fmt.Sprint("m", i), "m", map[string]any{"qty": i})
	}
	b.put(t, "stock", "moving", "s", map[string]any{"qty": 1})
	syncAll(t, 2, a, b, c)

	// Store m moves from site 2 to site 3.
	reconfigure(t, w, map[int][]string{2: {"s"}, 3: {"m", "s", "t"}, 4: {"s"}})
	syncAll(t, 2, a, b, c)
	for i := range 5 {
		id := fmt.Sprint("m", i)
		if got := b.qty(t, "stock", id); got != fmt.Sprint(i) {
			t.Errorf("new holder: %s qty = %s, want %d", id, got, i)
		}
		if got := a.qty(t, "stock", id); got != "-" {
			t.Errorf("former holder still holds %s (qty %s)", id, got)
		}
	}

	// A record moved from store s (sites 2, 3, 4) to store t (site 3 only).
	b.put(t, "stock", "moving", "t", map[string]any{"qty": 2})
	syncAll(t, 2, b, a, c)
	if got := b.qty(t, "stock", "moving"); got != "2" {
		t.Errorf("holder of t: moving qty = %s, want 2", got)
	}
	for _, s := range []*site{a, c} {
		if got := s.qty(t, "stock", "moving"); got != "-" {
			t.Errorf("site %d still holds the moved record (qty %s)", s.id, got)
		}
	}

	// Site 4's row is removed, records are written meanwhile, the row comes back.
	reconfigure(t, w, map[int][]string{2: {"s"}, 3: {"m", "s", "t"}})
	b.put(t, "stock", "meanwhile", "s", map[string]any{"qty": 7})
	b.sync(t)
	reconfigure(t, w, map[int][]string{2: {"s"}, 3: {"m", "s", "t"}, 4: {"s"}})
	syncAll(t, 2, c)
	if got := c.qty(t, "stock", "meanwhile"); got != "7" {
		t.Errorf("re-added site: meanwhile qty = %s, want 7", got)
	}
}

// reconfigure gives the primary new site rows (as a reload of its prefs).
func reconfigure(t *testing.T, w *world, stores map[int][]string) {
	t.Helper()
	rows := siteRows(t, stores)
	if err := w.prim.Configure(primary.Config{Sites: rows}); err != nil {
		t.Fatal(err)
	}
	w.rows = rows
}

// ONCE: a new site downloads each record once, however often it (or the
// primary) initialises or generates.
func TestReplication_eachRecordDownloadedOnce(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"s"}, 3: {"s"}})
	a := w.sats[2]
	a.sync(t)
	putN(t, a, "r", "s", 500, 0)
	a.sync(t)
	b := w.sats[3]
	for range 10 {
		if _, err := b.client.Initialise(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := w.prim.Generate(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := w.central.QueueLen(3); n != 500 {
		t.Fatalf("site 3 queue after 20 initialise/generate calls = %d, want 500", n)
	}
	res := b.sync(t)
	if res.Pulled-storeRowCount(t, w) != 500 {
		t.Errorf("new site pulled %d records (%d store rows), want each of the 500 once", res.Pulled, storeRowCount(t, w))
	}
	holdsExactly(t, b, "r", 500)
}

func storeRowCount(t *testing.T, w *world) int {
	t.Helper()
	recs, err := w.central.List("store", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(recs)
}

// A sync_id given to another box after clear-hwid never receives the
// previous box's queue.
func TestReplication_reusedSyncIDStartsClean(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"s"}, 3: {"s"}})
	a, b := w.sats[2], w.sats[3]
	syncAll(t, 1, a, b)
	putN(t, a, "r", "s", 5, 0)
	a.sync(t) // five records wait in site 3's queue for the old box
	if err := w.prim.ClearPin(3); err != nil {
		t.Fatal(err)
	}
	nb := w.newSite(3, []string{"s"}, w.srv.URL)
	nb.client.HardwareID = "another-box"
	if st, err := nb.client.Site(context.Background()); err != nil || st.InitialisationStatus != "new" {
		t.Fatalf("new box: GET site = %+v, %v; want initialisationStatus new", st, err)
	}
	if n := w.central.QueueLen(3); n != 0 {
		t.Errorf("the new box inherits a queue of %d", n)
	}
	nb.sync(t)
	holdsExactly(t, nb, "r", 5)
}

// RESTORE: a satellite's datafile put back from an older copy (a restored
// backup) is noticed by the primary on its first request — by the marks
// every request carries, even when that request is not GET site — and the
// box initialises again: it ends holding exactly the primary's copies, and
// its new change is taken.
func TestReplication_restoredSatelliteInitialisesAgain(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"s"}, 3: {"s"}})
	a, b := w.sats[2], w.sats[3]
	marks := func(s *site) {
		s.client.Marks = func() string {
			return syncapi.EncodeMarks(syncapi.Marks{OutboxSeq: s.store.OutboxNumbering(), Acked: s.sat.Acked(), Gen: s.store.Generation()})
		}
	}
	marks(b)
	syncAll(t, 1, a, b)
	a.put(t, "stock", "S1", "s", map[string]any{"qty": 1})
	a.put(t, "stock", "S2", "s", map[string]any{"qty": 1})
	syncAll(t, 1, a, b)
	// The copy: b holds S1=1 and S2=1.
	path := b.path
	if err := b.store.Close(); err != nil {
		t.Fatal(err)
	}
	copyOf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = w.reopenSite(3, []string{"s"})
	marks(b)
	// After the copy: S1 changes, S2 goes, S3 comes; b pulls it all.
	a.put(t, "stock", "S1", "s", map[string]any{"qty": 2})
	a.store.Write(queue.Record{Table: "stock", ID: "S2", Action: queue.Delete})
	a.put(t, "stock", "S3", "s", map[string]any{"qty": 3})
	syncAll(t, 1, a, b)
	// The box is restored from the copy, and its first GET site is lost.
	b.store.Close()
	if err := os.WriteFile(path, copyOf, 0o600); err != nil {
		t.Fatal(err)
	}
	b = w.reopenSite(3, []string{"s"})
	marks(b)
	b.put(t, "stock", "S4", "s", map[string]any{"qty": 4})
	lossy := dropper(t, w.srv.URL, "GET", "/site", 1, false)
	b.client.BaseURL = lossy.URL
	b.sat.Cycle(context.Background())
	b.client.BaseURL = w.srv.URL
	if s, _ := w.central.Site(3); s.Rewinds == 0 {
		t.Fatal("the primary did not notice the restored datafile")
	}
	syncAll(t, 2, b, a)
	everywhere(t, w, "stock", "S1", "2", a, b)
	everywhere(t, w, "stock", "S2", "-", a, b)
	everywhere(t, w, "stock", "S3", "3", a, b)
	everywhere(t, w, "stock", "S4", "4", a, b)
}
