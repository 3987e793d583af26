// Package storetest is the suite every backend of the primary's storage
// contract (queue.PrimaryStore) must pass: the replication model of
// docs/replication.md, as seen through the contract. queue's own tests run
// it on BuntDB, queue/pg's on PostgreSQL. Test tooling: nothing that ships
// imports it.
package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"syncagent/queue"
)

// Backend opens stores for the suite.
type Backend interface {
	// Open opens the store called name for test t; opening the same name
	// again in the same test (after Close) opens the same data. The store
	// is closed when the test ends.
	Open(t *testing.T, name string) queue.PrimaryStore
}

// Run runs the whole suite against b.
func Run(t *testing.T, b Backend) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T, Backend)
	}{
		{"AcceptRoutes", testAcceptRoutes},
		{"AcceptTwice", testAcceptTwice},
		{"OneEntryPerRecord", testOneEntryPerRecord},
		{"OwnPushSupersedesQueuedEntry", testOwnPushSupersedesQueuedEntry},
		{"AckOfReplacedEntry", testAckOfReplacedEntry},
		{"DuplicateAfterSupersedeSendsCurrent", testDuplicateAfterSupersedeSendsCurrent},
		{"RefusalAnsweredWithPrimaryCopy", testRefusalAnsweredWithPrimaryCopy},
		{"StoreMoveDeletesFromFormerHolders", testStoreMoveDeletesFromFormerHolders},
		{"ChildBeforeParent", testChildBeforeParent},
		{"FillIdempotent", testFillIdempotent},
		{"Reconcile", testReconcile},
		{"CentralLog", testCentralLog},
		{"Sites", testSites},
		{"NewBoxAfterClearPin", testNewBoxAfterClearPin},
		{"RewoundOutbox", testRewoundOutbox},
		{"CentralSinceLastCursor", testCentralSinceLastCursor},
		{"HealthShowsARestoredBox", testHealthShowsARestoredBox},
		{"DuplicateFromAFormerHolderSendsDelete", testDuplicateFromAFormerHolderSendsDelete},
		{"RestoredTwiceFromTheSameCopy", testRestoredTwiceFromTheSameCopy},
		{"RestoredCopyOfAnOlderGeneration", testRestoredCopyOfAnOlderGeneration},
		{"Diagnostics", testDiagnostics},
		{"Pages", testPages},
		{"IdleSite", testIdleSite},
		{"Registry", testRegistry},
		{"RegistryLogBounded", testRegistryLogBounded},
		{"RegistryLarge", testRegistryLarge},
		{"QueueLengths", testQueueLengths},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, b) })
	}
}

// Router routes by store_ID: a store's records are held by the sites
// listed for it; a record without a store is central data; a "line"
// belongs to the "head" named in head_ID; a record naming "to" also goes to
// that store's sites (a transfer). A site may change only records of its
// stores. (queue's internal power-loss tests keep a copy: they cannot
// import this package.)
type Router map[string][]int

func (tr Router) Route(origin int, r queue.Record, cur queue.Current, look queue.Lookup) queue.Route {
	if cur.Exists && cur.Central && origin > 0 {
		return queue.Route{Refuse: &queue.Refusal{Code: "central_data_refused", Message: "central"}}
	}
	if origin > 0 && cur.Exists && !cur.Deleted && cur.Owner != "" && !slices.Contains(tr[cur.Owner], origin) {
		return queue.Route{Refuse: &queue.Refusal{Code: "store_not_active", Message: "not yours"}}
	}
	if r.Action == queue.Delete || r.Action == queue.Merge {
		if !cur.Exists {
			return queue.Route{Holders: []int{origin}}
		}
		return queue.Route{Owner: cur.Owner, Central: cur.Central, Holders: cur.Holders, Parent: cur.Parent}
	}
	f := map[string]string{}
	json.Unmarshal(r.Data, &f)
	if r.Table == "line" {
		ref := &queue.Ref{Table: "head", ID: f["head_ID"]}
		p := look(ref.Table, ref.ID)
		if !p.Exists || p.Deleted || p.Held {
			return queue.Route{Parent: ref, Held: true}
		}
		return queue.Route{Owner: p.Owner, Holders: p.Holders, Parent: ref}
	}
	store := f[queue.StoreField]
	switch {
	case store == "" && origin > 0:
		return queue.Route{Refuse: &queue.Refusal{Code: "central_data_refused", Message: "central"}}
	case store == "":
		return queue.Route{Central: true}
	case origin > 0 && !slices.Contains(tr[store], origin):
		return queue.Route{Refuse: &queue.Refusal{Code: "store_not_active", Message: "not yours"}}
	}
	return queue.Route{Owner: store, Holders: tr.holders(store, f["to"])}
}

func (tr Router) holders(store, to string) []int {
	return append(slices.Clone(tr[store]), tr[to]...)
}

func (tr Router) Holders(cur queue.Current, look queue.Lookup) []int {
	if cur.Parent != nil {
		if p := look(cur.Parent.Table, cur.Parent.ID); p.Exists && !p.Deleted {
			return tr.Holders(p, look)
		}
		return cur.Holders
	}
	f := map[string]string{}
	json.Unmarshal(cur.Record.Data, &f)
	return tr.holders(cur.Owner, f["to"])
}

// Members is the membership the router describes.
func (tr Router) Members() queue.Membership {
	m := queue.Membership{}
	for store, sites := range tr {
		for _, s := range sites {
			m[s] = append(m[s], store)
		}
	}
	return m
}

// sites: s1 is on sites 2, 3 and 4; s2 on 5.
var sites = Router{"s1": {2, 3, 4}, "s2": {5}}

func inbound(sid string, r queue.Record) queue.Inbound {
	return queue.Inbound{SyncOutID: sid, Record: r}
}

func rec(table, id string, data map[string]any) queue.Record {
	b, err := json.Marshal(data)
	if err != nil {
		panic(err)
	}
	return queue.Record{Table: table, ID: id, Action: queue.Update, Data: b}
}

func storeRec(table, id, store string, n int) queue.Record {
	return rec(table, id, map[string]any{queue.StoreField: store, "n": n})
}

func del(table, id string) queue.Record {
	return queue.Record{Table: table, ID: id, Action: queue.Delete}
}

func dataN(t testing.TB, r queue.Record) int {
	t.Helper()
	var m struct{ N int }
	if err := json.Unmarshal(r.Data, &m); err != nil {
		t.Fatalf("data of %s/%s: %v", r.Table, r.ID, err)
	}
	return m.N
}

func accept(t testing.TB, c queue.PrimaryStore, origin int, in ...queue.Inbound) queue.AcceptResult {
	t.Helper()
	res, err := c.Accept(origin, in, sites)
	if err != nil {
		t.Fatalf("Accept from %d: %v", origin, err)
	}
	return res
}

// queued returns site's queue as "id=n" (n from the data, "del" for a
// delete), in order.
func queued(t testing.TB, c queue.PrimaryStore, site int) string {
	t.Helper()
	q, n, err := c.Queued(site, 0)
	if err != nil || n != len(q) {
		t.Fatalf("Queued(%d) = %d entries, len %d, %v", site, len(q), n, err)
	}
	var out []string
	for _, e := range q {
		if e.Record.Action == queue.Delete {
			out = append(out, e.Record.ID+"=del")
			continue
		}
		out = append(out, fmt.Sprintf("%s=%d", e.Record.ID, dataN(t, e.Record)))
	}
	return strings.Join(out, ",")
}

func ackAll(t testing.TB, c queue.PrimaryStore, site int) {
	t.Helper()
	q, _, _ := c.Queued(site, 0)
	var ids []string
	for _, e := range q {
		ids = append(ids, e.SyncOutID)
	}
	if _, err := c.Ack(site, ids); err != nil {
		t.Fatal(err)
	}
}

func testAcceptRoutes(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	res := accept(t, c, 2, inbound("e-1", storeRec("item", "a", "s1", 1)), inbound("e-2", storeRec("item", "b", "s1", 1)))
	if res.Accepted != 2 || res.Duplicate != 0 || res.Refused != 0 {
		t.Fatalf("Accept = %+v", res)
	}
	for site, want := range map[int]string{2: "", 3: "a=1,b=1", 4: "a=1,b=1", 5: ""} {
		if got := queued(t, c, site); got != want {
			t.Errorf("site %d queue = %q, want %q", site, got, want)
		}
	}
	if r, ok, _ := c.Get("item", "a"); !ok || dataN(t, r) != 1 {
		t.Fatal("central datafile lacks the pushed record")
	}
}

func testAcceptTwice(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	batch := []queue.Inbound{inbound("e-1", storeRec("item", "a", "s1", 1)), inbound("e-2", storeRec("item", "b", "s1", 1))}
	accept(t, c, 2, batch...)
	if res := accept(t, c, 2, batch...); res.Accepted != 0 || res.Duplicate != 2 {
		t.Fatalf("second Accept = %+v", res)
	}
	c.Close()
	c = b.Open(t, "pri")
	if res := accept(t, c, 2, batch...); res.Duplicate != 2 {
		t.Fatalf("Accept after reopen = %+v", res)
	}
	if res := accept(t, c, 2, inbound("e-1", storeRec("item", "a", "s1", 7))); res.Accepted != 1 {
		t.Fatalf("same syncOutId, new content = %+v", res)
	}
	if got := queued(t, c, 3); got != "b=1,a=7" {
		t.Fatalf("site 3 queue = %q", got)
	}
	// The same syncOutId from another site is another change.
	if res := accept(t, c, 3, batch[1]); res.Accepted != 1 {
		t.Fatalf("Accept from another origin = %+v", res)
	}
}

func testOneEntryPerRecord(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	for i := range 5 {
		accept(t, c, 2, inbound(fmt.Sprint("e-", i), storeRec("item", "a", "s1", i)))
	}
	if got := queued(t, c, 3); got != "a=4" || c.QueueLen(3) != 1 || c.QueueLen(2) != 0 {
		t.Fatalf("site 3 queue = %q (len %d), site 2 len %d", got, c.QueueLen(3), c.QueueLen(2))
	}
}

func testOwnPushSupersedesQueuedEntry(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	accept(t, c, 2, inbound("e-1", storeRec("item", "a", "s1", 1)))
	accept(t, c, 3, inbound("f-1", storeRec("item", "a", "s1", 2)))
	if got := queued(t, c, 3); got != "" {
		t.Fatalf("site 3 queue = %q, want empty", got)
	}
	if got := queued(t, c, 2); got != "a=2" {
		t.Fatalf("site 2 queue = %q", got)
	}
}

func testAckOfReplacedEntry(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	accept(t, c, 2, inbound("e-1", storeRec("item", "a", "s1", 1)))
	old, _, _ := c.Queued(3, 0)
	accept(t, c, 2, inbound("e-2", storeRec("item", "a", "s1", 2)))
	if n, err := c.Ack(3, []string{old[0].SyncOutID, "bogus", "99999999999999999999999"}); err != nil || n != 0 {
		t.Fatalf("Ack of the replaced entry removed %d, %v", n, err)
	}
	if got := queued(t, c, 3); got != "a=2" {
		t.Fatalf("site 3 queue = %q", got)
	}
	ackAll(t, c, 3)
	if c.QueueLen(3) != 0 {
		t.Fatalf("QueueLen after ack = %d", c.QueueLen(3))
	}
	// Another site's ack of these ids touches nothing.
	accept(t, c, 2, inbound("e-3", storeRec("item", "a", "s1", 3)))
	q, _, _ := c.Queued(3, 0)
	if n, _ := c.Ack(5, []string{q[0].SyncOutID}); n != 0 {
		t.Fatalf("foreign Ack removed %d", n)
	}
}

func testDuplicateAfterSupersedeSendsCurrent(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	first := inbound("e-1", storeRec("item", "a", "s1", 1))
	accept(t, c, 2, first)
	accept(t, c, 3, inbound("f-1", storeRec("item", "a", "s1", 2)))
	ackAll(t, c, 2)
	if res := accept(t, c, 2, first); res.Duplicate != 1 {
		t.Fatalf("repeat = %+v", res)
	}
	if got := queued(t, c, 2); got != "a=2" {
		t.Fatalf("site 2 queue = %q, want a=2", got)
	}
	if r, _, _ := c.Get("item", "a"); dataN(t, r) != 2 {
		t.Fatalf("primary holds %s", r.Data)
	}
}

func testRefusalAnsweredWithPrimaryCopy(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	if _, err := c.Write(rec("unit", "kg", map[string]any{"n": 1}), sites); err != nil {
		t.Fatal(err)
	}
	accept(t, c, 2, inbound("e-1", storeRec("item", "a", "s1", 1)))
	res := accept(t, c, 5,
		inbound("x-1", rec("unit", "kg", map[string]any{"n": 9})),  // central data
		inbound("x-2", storeRec("item", "a", "s2", 9)),             // another store's record, moved to s2
		inbound("x-3", rec("unit", "new", map[string]any{"n": 9})), // central data nobody has
		inbound("x-4", storeRec("item", "mine", "s2", 1)))
	if res.Refused != 3 || res.Accepted != 1 || res.Outcomes[0].Refused.Code != "central_data_refused" || res.Outcomes[1].Refused.Code != "store_not_active" {
		t.Fatalf("Accept = %+v", res)
	}
	if got := queued(t, c, 5); got != "kg=1,a=del,new=del" {
		t.Fatalf("site 5 queue = %q", got)
	}
	if r, _, _ := c.Get("item", "a"); dataN(t, r) != 1 || r.StoreID() != "s1" {
		t.Fatalf("refused change reached the primary: %s", r.Data)
	}
	// Deleting what it does not own is refused too.
	if res := accept(t, c, 5, inbound("x-5", del("item", "a")), inbound("x-6", del("unit", "kg"))); res.Refused != 2 {
		t.Fatalf("foreign deletes = %+v", res)
	}
	if _, ok, _ := c.Get("unit", "kg"); !ok {
		t.Fatal("a site deleted central data")
	}
}

func testStoreMoveDeletesFromFormerHolders(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	r := Router{"s1": {2, 3}, "s2": {2, 5}}
	if _, err := c.Accept(2, []queue.Inbound{inbound("e-1", storeRec("item", "a", "s1", 1))}, r); err != nil {
		t.Fatal(err)
	}
	ackAll(t, c, 3)
	if _, err := c.Accept(2, []queue.Inbound{inbound("e-2", storeRec("item", "a", "s2", 2))}, r); err != nil {
		t.Fatal(err)
	}
	if got := queued(t, c, 3); got != "a=del" {
		t.Fatalf("former holder's queue = %q", got)
	}
	if got := queued(t, c, 5); got != "a=2" {
		t.Fatalf("new holder's queue = %q", got)
	}
}

func testChildBeforeParent(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	line := func(id, head string, n int) queue.Record {
		return rec("line", id, map[string]any{"head_ID": head, "n": n})
	}
	// Children first in one push, another child in a later push.
	res := accept(t, c, 2, inbound("e-1", line("l1", "h", 1)), inbound("e-2", line("l2", "h", 2)))
	if res.Accepted != 2 || c.QueueLen(3) != 0 {
		t.Fatalf("held children = %+v, queued %d", res, c.QueueLen(3))
	}
	accept(t, c, 2, inbound("e-3", storeRec("head", "h", "s1", 0)), inbound("e-4", line("l3", "h", 3)))
	if got := queued(t, c, 3); got != "h=0,l1=1,l2=2,l3=3" {
		t.Fatalf("site 3 queue = %q", got)
	}
	if got := queued(t, c, 5); got != "" {
		t.Fatalf("site 5 queue = %q", got)
	}
	// The head is transferred to s2's site: it and its lines go there.
	accept(t, c, 2, inbound("e-5", rec("head", "h", map[string]any{queue.StoreField: "s1", "to": "s2", "n": 1})))
	if got := queued(t, c, 5); got != "h=1,l1=1,l2=2,l3=3" {
		t.Fatalf("receiver's queue = %q", got)
	}
	// The receiver may not change the sender's lines.
	if res := accept(t, c, 5, inbound("z-1", line("l1", "h", 9))); res.Refused != 1 {
		t.Fatalf("receiver changed a line: %+v", res)
	}
}

func testFillIdempotent(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	for i := range 30 {
		store := "s1"
		if i%3 == 0 {
			store = "s2"
		}
		r := storeRec("item", fmt.Sprintf("r%02d", i), store, i)
		if _, err := c.Write(r, sites); err != nil {
			t.Fatal(err)
		}
	}
	c.Write(rec("unit", "kg", map[string]any{"n": 1}), sites)
	c.Write(del("item", "r01"), sites)
	ackAll(t, c, 3)
	for range 3 {
		if _, err := c.Fill(3); err != nil {
			t.Fatal(err)
		}
	}
	if c.QueueLen(3) != 19 || strings.Count(queued(t, c, 3), "=") != 19 {
		t.Fatalf("after three fills site 3 has %d entries: %s", c.QueueLen(3), queued(t, c, 3))
	}
	// A change after the fill replaces the entry, and a fill keeps it.
	if _, err := c.Write(storeRec("item", "r02", "s1", 200), sites); err != nil {
		t.Fatal(err)
	}
	c.Fill(3)
	if c.QueueLen(3) != 19 || !strings.HasSuffix(queued(t, c, 3), "r02=200") {
		t.Fatalf("queue = %s", queued(t, c, 3))
	}
}

func testReconcile(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	before := Router{"s1": {2, 3}, "s2": {5}}
	if _, err := c.Reconcile(before.Members(), before); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		store := []string{"s1", "s2"}[i%2]
		if _, err := c.Write(storeRec("item", fmt.Sprint("r", i), store, i), before); err != nil {
			t.Fatal(err)
		}
	}
	ackAll(t, c, 3)
	ackAll(t, c, 5)
	c.SetInitialisation(5, queue.InitCompleted)
	// s2 moves from site 5 to site 3; site 4 is new with s1; site 5 goes.
	after := Router{"s1": {2, 3, 4}, "s2": {3}}
	res, err := c.Reconcile(after.Members(), after)
	if err != nil {
		t.Fatal(err)
	}
	if got := queued(t, c, 3); got != "r1=1,r3=3" {
		t.Errorf("site 3 (gained s2) = %q", got)
	}
	if got := queued(t, c, 4); got != "r0=0,r2=2" {
		t.Errorf("site 4 (new) = %q", got)
	}
	if s, _ := c.Site(5); c.QueueLen(5) != 0 || s.Initialisation != queue.InitNew || !slices.Equal(res.Removed, []int{5}) {
		t.Errorf("removed site: queue %d, status %s, removed %v", c.QueueLen(5), s.Initialisation, res.Removed)
	}
	// s2 leaves site 3 again: its records are deleted there.
	ackAll(t, c, 3)
	again := Router{"s1": {2, 3, 4}, "s2": {4}}
	c.Reconcile(again.Members(), again)
	if got := queued(t, c, 3); got != "r1=del,r3=del" {
		t.Errorf("site 3 (lost s2) = %q", got)
	}
	// The same membership after a restart changes nothing.
	c.Close()
	c = b.Open(t, "pri")
	if res, err := c.Reconcile(again.Members(), again); err != nil || res.Records != 0 {
		t.Fatalf("second Reconcile = %+v, %v", res, err)
	}
}

func testCentralLog(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	c1, _ := c.Write(rec("unit", "kg", map[string]any{"n": 1}), sites)
	c2, _ := c.Write(rec("unit", "g", map[string]any{"n": 1}), sites)
	c3, _ := c.Write(rec("unit", "kg", map[string]any{"n": 2}), sites)
	if c1 == 0 || c2 <= c1 || c3 <= c2 {
		t.Fatalf("cursors %d %d %d", c1, c2, c3)
	}
	c.Write(storeRec("item", "a", "s1", 1), sites)
	es, maxCur, _ := c.CentralSince(0, 0)
	if len(es) != 2 || es[0].Record.ID != "g" || es[1].Record.ID != "kg" || es[1].Cursor != c3 || maxCur != c3 || dataN(t, es[1].Record) != 2 {
		t.Fatalf("CentralSince(0) = %+v, %d", es, maxCur)
	}
	if es, _, _ := c.CentralSince(c2, 0); len(es) != 1 || es[0].Cursor != c3 {
		t.Fatalf("CentralSince(%d) = %+v", c2, es)
	}
	// A central delete is logged (sites must see it) and replaces the record's entry.
	c4, _ := c.Write(del("unit", "kg"), sites)
	es, _, _ = c.CentralSince(0, 0)
	if len(es) != 2 || es[1].Cursor != c4 || es[1].Record.Action != queue.Delete {
		t.Fatalf("after delete: %+v", es)
	}
	if _, ok, _ := c.Get("unit", "kg"); ok {
		t.Fatal("deleted central record readable")
	}
	c.Close()
	c = b.Open(t, "pri")
	if c5, _ := c.Write(rec("unit", "lb", map[string]any{"n": 1}), sites); c5 <= c4 {
		t.Fatalf("cursor after reopen %d, want > %d", c5, c4)
	}
}

func testSites(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	if s, err := c.Site(7); err != nil || s.SyncID != 7 || s.Initialisation != queue.InitNew || s.HardwareID != "" {
		t.Fatalf("unknown Site = %+v, %v", s, err)
	}
	if s, err := c.Pin(7, "hw-A"); err != nil || s.HardwareID != "hw-A" || s.PinnedAt.IsZero() {
		t.Fatalf("first Pin = %+v, %v", s, err)
	}
	if _, err := c.Pin(7, "hw-A"); err != nil {
		t.Fatalf("same Pin: %v", err)
	}
	_, err := c.Pin(7, "hw-B")
	if !errors.Is(err, queue.ErrHardwareMismatch) || strings.Contains(err.Error(), "hw-A") || !strings.Contains(err.Error(), "clear the pin") {
		t.Fatalf("other Pin: %v", err)
	}
	if err := c.SetInitialisation(7, queue.InitCompleted); err != nil {
		t.Fatal(err)
	}
	if err := c.SetVerified(7, "tok-1"); err != nil {
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
	c = b.Open(t, "pri")
	s, _ := c.Site(7)
	if s.HardwareID != "hw-A" || s.Initialisation != queue.InitCompleted || !s.LastContact.Equal(t0.UTC()) || s.Verified != "tok-1" {
		t.Fatalf("Site after reopen = %+v", s)
	}
	c.Touch(9, t0)
	if ss := c.Sites(); len(ss) != 2 || ss[0].SyncID != 7 || ss[1].SyncID != 9 {
		t.Fatalf("Sites = %+v", ss)
	}
}

func testNewBoxAfterClearPin(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	c.Pin(3, "old-box")
	c.SetInitialisation(3, queue.InitCompleted)
	accept(t, c, 2, inbound("e-1", storeRec("item", "a", "s1", 1)))
	c.ClearPin(3)
	c.Pin(3, "old-box")
	if c.QueueLen(3) != 1 {
		t.Fatalf("same box lost its queue: %d", c.QueueLen(3))
	}
	c.ClearPin(3)
	s, err := c.Pin(3, "new-box")
	if err != nil || c.QueueLen(3) != 0 || s.Initialisation != queue.InitNew {
		t.Fatalf("new box: queue %d, status %s, %v", c.QueueLen(3), s.Initialisation, err)
	}
}

func testRewoundOutbox(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	c.SetInitialisation(2, queue.InitCompleted)
	for i := 1; i <= 3; i++ {
		if res := accept(t, c, 2, inbound(fmt.Sprintf("ep-%020d", i), storeRec("item", fmt.Sprint("r", i), "s1", i))); res.Rewound {
			t.Fatalf("push %d reported rewound", i)
		}
	}
	res := accept(t, c, 2, inbound(fmt.Sprintf("ep-%020d", 2), storeRec("item", "new", "s1", 5)))
	if res.Accepted != 1 || !res.Rewound {
		t.Fatalf("rewound push = %+v", res)
	}
	if s, _ := c.Site(2); s.Rewinds != 1 || s.RewoundAt.IsZero() || s.Initialisation != queue.InitNew {
		t.Fatalf("site state = %+v", s)
	}
	// The reference client numbers with plain change-log cursors.
	c.SetInitialisation(3, queue.InitCompleted)
	accept(t, c, 3, inbound("101", storeRec("item", "x", "s1", 1)))
	if res := accept(t, c, 3, inbound("101", storeRec("item", "y", "s1", 1))); !res.Rewound || res.Accepted != 1 {
		t.Fatalf("reinstalled client = %+v", res)
	}
}

func testCentralSinceLastCursor(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	if _, err := c.Write(queue.Record{Table: "item", ID: "i1", Action: queue.Insert, Data: json.RawMessage(`{"n":1}`)}, sites); err != nil {
		t.Fatal(err)
	}
	got, _, err := c.CentralSince(math.MaxUint64, 10)
	if err != nil || len(got) != 0 {
		t.Errorf("after the largest cursor: %d entries, %v; want none", len(got), err)
	}
}

// A box restored from an older copy reports, in its health block, an
// outbox numbering below what the primary took from it, or fewer entries
// acknowledged than it did: it must initialise again, once.
func testHealthShowsARestoredBox(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	for i := 1; i <= 3; i++ {
		accept(t, c, 2, inbound(fmt.Sprintf("ep-%020d", i), storeRec("item", fmt.Sprint("r", i), "s1", i)))
	}
	ackAll(t, c, 3)
	c.SetInitialisation(2, queue.InitCompleted)
	c.SetInitialisation(3, queue.InitCompleted)
	s3, _ := c.Site(3)
	now := time.Now()
	raw := []byte(`{"ver":"0.3.0","out":0}`)
	if rewound, err := c.NoteHealth(3, raw, queue.Marks{Acked: s3.AckedHigh}, now); err != nil || rewound {
		t.Fatalf("a healthy box: rewound %v, %v", rewound, err)
	}
	if s, _ := c.Site(3); string(s.Health) != string(raw) || s.HealthAt.IsZero() || s.Initialisation != queue.InitCompleted {
		t.Fatalf("health not kept: %+v", s)
	}
	if rewound, _ := c.NoteHealth(3, raw, queue.Marks{Acked: s3.AckedHigh - 1}, now); !rewound {
		t.Fatal("a box that acknowledged less than it did was not noticed")
	}
	if s, _ := c.Site(3); s.Initialisation != queue.InitNew || s.Rewinds != 1 {
		t.Fatalf("restored box: %+v", s)
	}
	if rewound, _ := c.NoteHealth(3, raw, queue.Marks{Acked: s3.AckedHigh - 1}, now); rewound {
		t.Fatal("the same restored box noticed twice")
	}
	if rewound, _ := c.NoteHealth(2, raw, queue.Marks{OutboxSeq: fmt.Sprintf("ep-%020d", 1)}, now); !rewound {
		t.Fatal("a box whose outbox numbering went back was not noticed")
	}
	if rewound, _ := c.NoteHealth(2, raw, queue.Marks{OutboxSeq: fmt.Sprintf("ep-%020d", 4)}, now); rewound {
		t.Fatal("a box numbering on was taken for a restored one")
	}
}

// RESTORE, found by the property test (seed 26): a box restored from a
// copy pushes again a change the primary took long ago, for a store it no
// longer holds. It is a duplicate, but the box must not keep the record:
// it is sent a delete.
func testDuplicateFromAFormerHolderSendsDelete(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	first := inbound("e-1", storeRec("item", "a", "s1", 1))
	accept(t, c, 3, first)
	moved := Router{"s1": {2, 4}, "s2": {5}} // s1 leaves site 3
	if _, err := c.Reconcile(moved.Members(), moved); err != nil {
		t.Fatal(err)
	}
	ackAll(t, c, 3)
	res, err := c.Accept(3, []queue.Inbound{first}, moved)
	if err != nil || res.Duplicate != 1 {
		t.Fatalf("repeat = %+v, %v", res, err)
	}
	if got := queued(t, c, 3); got != "a=del" {
		t.Fatalf("former holder's queue = %q, want a=del", got)
	}
}

// RESTORE, found by the property test (seeds 1311 and 2548): a box
// restored from a copy is noticed and initialises again; restored once more
// from the same copy, it must be noticed again (the marks had been reset to
// the copy's on the first notice); and a box restored to a copy from before
// an initialisation must be noticed (the marks had been reset when it
// initialised).
func testRestoredTwiceFromTheSameCopy(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	c.SetInitialisation(3, queue.InitCompleted)
	accept(t, c, 2, inbound("e-1", storeRec("item", "a", "s1", 1)))
	ackAll(t, c, 3)
	copyAcked := mustSite(t, c, 3).AckedHigh // the copy is taken here
	accept(t, c, 2, inbound("e-2", storeRec("item", "b", "s1", 1)))
	ackAll(t, c, 3)
	now := time.Now()
	if rewound, _ := c.NoteHealth(3, nil, queue.Marks{Acked: copyAcked}, now); !rewound {
		t.Fatal("the first restore was not noticed")
	}
	if rewound, _ := c.NoteHealth(3, nil, queue.Marks{Acked: copyAcked}, now); rewound {
		t.Fatal("a restore already being recovered from was counted again")
	}
	// The box initialises again and pulls everything.
	c.SetInitialisation(3, queue.InitStarted)
	if _, err := c.Fill(3); err != nil {
		t.Fatal(err)
	}
	c.SetInitialisation(3, queue.InitCompleted)
	if rewound, _ := c.NoteHealth(3, nil, queue.Marks{Acked: copyAcked}, now); rewound {
		t.Fatal("a box that initialised again and has not pulled yet was taken for a restored one")
	}
	ackAll(t, c, 3)
	caughtUp := mustSite(t, c, 3).AckedHigh
	if rewound, _ := c.NoteHealth(3, nil, queue.Marks{Acked: caughtUp}, now); rewound { // its next request
		t.Fatal("a box back at the primary's marks was taken for a restored one")
	}
	// Restored again from the same copy.
	if rewound, _ := c.NoteHealth(3, nil, queue.Marks{Acked: copyAcked}, now); !rewound {
		t.Fatal("the same copy restored a second time was not noticed")
	}
	// It initialises again; restored then to a copy from before that.
	c.SetInitialisation(3, queue.InitStarted)
	c.Fill(3)
	c.SetInitialisation(3, queue.InitCompleted)
	ackAll(t, c, 3)
	c.NoteHealth(3, nil, queue.Marks{Acked: mustSite(t, c, 3).AckedHigh}, now)
	if rewound, _ := c.NoteHealth(3, nil, queue.Marks{Acked: caughtUp}, now); !rewound {
		t.Fatal("a copy from before the last initialisation was not noticed")
	}
}

func mustSite(t *testing.T, c queue.PrimaryStore, id int) queue.SiteState {
	t.Helper()
	s, err := c.Site(id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// RESTORE (property test, seed 1311): a copy restored a second time while
// the box was still recovering from the first reports the same marks as
// then; its initialisation generation tells it apart: the box's next
// initialisation has the copy's generation plus one.
func testRestoredCopyOfAnOlderGeneration(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	c.SetInitialisation(3, queue.InitCompleted)
	now := time.Now()
	at := func(gen uint64) queue.Marks { return queue.Marks{OutboxSeq: fmt.Sprintf("ep-%020d", 5), Gen: gen} }
	for _, gen := range []uint64{1, 2, 3} { // the box initialised twice more
		if rewound, _ := c.NoteHealth(3, nil, at(gen), now); rewound {
			t.Fatalf("generation %d taken for a restore", gen)
		}
	}
	if rewound, _ := c.NoteHealth(3, nil, at(1), now); !rewound {
		t.Fatal("a copy of generation 1 after generation 3 was not noticed")
	}
	c.SetInitialisation(3, queue.InitStarted) // the box initialises: generation 2
	c.SetInitialisation(3, queue.InitCompleted)
	if rewound, _ := c.NoteHealth(3, nil, at(2), now); rewound {
		t.Fatal("the recovering box (generation 2) taken for a restore")
	}
	if rewound, _ := c.NoteHealth(3, nil, at(1), now); !rewound {
		t.Fatal("the same copy restored again while the box recovered was not noticed")
	}
	// Another datafile (a reinstall) has generations of its own.
	if rewound, _ := c.NoteHealth(3, nil, queue.Marks{OutboxSeq: fmt.Sprintf("new-%020d", 1), Gen: 1}, now); rewound {
		t.Fatal("a fresh datafile taken for a restore")
	}
}

// testPages protects paging: List by id after a pivot, skipping deleted
// records; the central log by cursor, a page at a time.
func testPages(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		if _, err := c.Write(storeRec("item", id, "s1", 1), sites); err != nil {
			t.Fatal(err)
		}
	}
	c.Write(del("item", "c"), sites)
	ids := func(rs []queue.Record) string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return strings.Join(out, ",")
	}
	if rs, err := c.List("item", "", 2); err != nil || ids(rs) != "a,b" {
		t.Fatalf("first page = %q, %v", ids(rs), err)
	}
	if rs, err := c.List("item", "b", 2); err != nil || ids(rs) != "d,e" {
		t.Fatalf("second page = %q, %v", ids(rs), err)
	}
	if rs, _ := c.List("item", "e", 0); len(rs) != 0 {
		t.Fatalf("past the end = %q", ids(rs))
	}
	if _, err := c.List("it:em", "", 0); err == nil {
		t.Fatal("List of an invalid table name succeeded")
	}
	var cursors []uint64
	for _, id := range []string{"u1", "u2", "u3"} {
		cur, err := c.Write(rec("unit", id, map[string]any{"n": 1}), sites)
		if err != nil {
			t.Fatal(err)
		}
		cursors = append(cursors, cur)
	}
	es, maxCur, err := c.CentralSince(0, 2)
	if err != nil || len(es) != 2 || es[1].Cursor != cursors[1] || maxCur != cursors[2] {
		t.Fatalf("first central page = %+v, max %d, %v", es, maxCur, err)
	}
	if es, _, _ := c.CentralSince(es[1].Cursor, 2); len(es) != 1 || es[0].Record.ID != "u3" {
		t.Fatalf("second central page = %+v", es)
	}
}

// testIdleSite protects what an unknown or idle site reads as: an empty
// queue, no fill running, nothing to acknowledge.
func testIdleSite(t *testing.T, b Backend) {
	c := b.Open(t, "pri")
	if q, n, err := c.Queued(8, 0); err != nil || len(q) != 0 || n != 0 || c.QueueLen(8) != 0 || c.Filling(8) {
		t.Fatalf("unknown site: %d entries, length %d, filling %v, %v", len(q), n, c.Filling(8), err)
	}
	if n, err := c.Ack(8, []string{"1", "2"}); err != nil || n != 0 {
		t.Fatalf("Ack of nothing = %d, %v", n, err)
	}
	if n, err := c.Fill(8); err != nil || n != 0 || c.Filling(8) {
		t.Fatalf("Fill of a site holding nothing = %d, %v, filling %v", n, err, c.Filling(8))
	}
	if _, err := c.Fill(0); err == nil {
		t.Fatal("Fill of site 0 succeeded")
	}
	if _, err := c.Accept(0, nil, sites); err == nil {
		t.Fatal("Accept from site 0 succeeded")
	}
}
