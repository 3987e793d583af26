package queue

import (
	"fmt"
	"testing"

	"github.com/tidwall/buntdb"
)

// A record pushed several times in one batch is written once, at its last
// state: one record write and one queue entry per holder in the plan, the
// same queues and records as pushing the changes one by one, and queue
// lengths that a reopen (which counts the file) confirms.
func TestCentral_Accept_RecordRepeatedInBatch(t *testing.T) {
	batch := []Inbound{
		inbound("e-1", storeRec("item", "a", "s1", 1)),
		inbound("e-2", storeRec("item", "b", "s1", 1)),
		inbound("e-3", storeRec("item", "a", "s1", 2)),
		inbound("e-4", rec("line", "l", map[string]any{"head_ID": "h", "n": 1})),
		inbound("e-5", storeRec("head", "h", "s1", 1)),
		inbound("e-6", rec("line", "l", map[string]any{"head_ID": "h", "n": 2})),
		inbound("e-7", storeRec("item", "a", "s1", 3)),
	}

	one := openCentral(t, tempPath(t, "one.db"), CentralOptions{})
	var plan Plan
	if err := one.st.view(func(tx *buntdb.Tx) error {
		var err error
		plan, _, err = Decide(buntReader{tx: tx}, 2, batch, sites, func() uint64 { return 0 })
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got, want := len(plan.Recs), 4; got != want { // a, b, l, h
		t.Fatalf("plan writes %d records, want %d: %+v", got, want, plan.Recs)
	}
	// Sites 3 and 4 get a, b, l, h; the pusher's own entries are removed.
	if got, want := len(plan.Queue), 12; got != want {
		t.Fatalf("plan has %d queue ops, want %d: %+v", got, want, plan.Queue)
	}
	if res := accept(t, one, 2, batch...); res.Accepted != len(batch) {
		t.Fatalf("accepted %+v", res)
	}

	each := openCentral(t, tempPath(t, "each.db"), CentralOptions{})
	for _, x := range batch {
		accept(t, each, 2, x)
	}
	for _, s := range []int{2, 3, 4} {
		if got, want := queued(t, one, s), queued(t, each, s); got != want {
			t.Fatalf("site %d queue: one batch %q, one by one %q", s, got, want)
		}
	}
	for _, id := range [][2]string{{"item", "a"}, {"item", "b"}, {"line", "l"}, {"head", "h"}} {
		a, _ := one.Current(id[0], id[1])
		b, _ := each.Current(id[0], id[1])
		if string(a.Record.Data) != string(b.Record.Data) || fmt.Sprint(a.Holders) != fmt.Sprint(b.Holders) || a.Held != b.Held {
			t.Fatalf("%s/%s: one batch %+v, one by one %+v", id[0], id[1], a, b)
		}
	}

	path := one.st.path
	want := map[int]int{3: one.QueueLen(3), 4: one.QueueLen(4), 2: one.QueueLen(2)}
	one.Close()
	again := openCentral(t, path, CentralOptions{})
	for s, n := range want {
		if got := again.QueueLen(s); got != n {
			t.Fatalf("site %d: queue length %d before the reopen, %d counted from the file", s, n, got)
		}
	}
}

// coalesce keeps the last write of each key, in order, and leaves a plan
// without repeats as it is.
func TestPlan_coalesce(t *testing.T) {
	p := Plan{
		Recs:  []PlanRecord{{Key: "rec:t:a", Val: RecordState{Version: 1}}, {Key: "rec:t:b", Val: RecordState{Version: 2}}, {Key: "rec:t:a", Val: RecordState{Version: 3}}},
		Queue: []QueueOp{{Site: 3, Table: "t", ID: "a", Ord: 1}, {Site: 2, Table: "t", ID: "a", Ord: 1, Remove: true}, {Site: 3, Table: "t", ID: "a", Ord: 3, Del: true}},
		Kids:  []KidOp{{Key: "k1"}, {Key: "k1", Del: true}, {Key: "k2"}},
	}
	p.coalesce()
	if got, want := fmt.Sprint(p.Recs), "[{rec:t:b {2  false  false [] <nil> false map[] []}} {rec:t:a {3  false  false [] <nil> false map[] []}}]"; got != want {
		t.Fatalf("records %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(p.Queue), "[{2 t a 1 false true} {3 t a 3 true false}]"; got != want {
		t.Fatalf("queue %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(p.Kids), "[{k1 true} {k2 false}]"; got != want {
		t.Fatalf("kids %s, want %s", got, want)
	}
	q := []QueueOp{{Site: 3, Table: "t", ID: "a"}, {Site: 4, Table: "t", ID: "a"}}
	if got := lastOfEach(q, func(o QueueOp) int { return o.Site }); &got[0] != &q[0] || len(got) != 2 {
		t.Fatalf("a plan without repeats was copied: %v", got)
	}
}

// A child row held in one push of a group is routed when a later push of
// the same group brings its parent, and only that parent's children are
// (the group's child index is looked up by parent; ids may hold ':').
func TestCentral_GroupCommit_ChildrenAcrossPushes(t *testing.T) {
	c := openCentral(t, tempPath(t, "pri.db"), CentralOptions{})
	line := func(id, head string) Record { return rec("line", id, map[string]any{"head_ID": head, "n": 1}) }
	got := pushesInOneGroup(t, c, []pushRequest{
		{origin: 2, in: []Inbound{inbound("e-1", line("l1", "h:1")), inbound("e-2", line("l2", "h")), inbound("e-3", line("l3", "h:1:x"))}, router: sites},
		{origin: 3, in: []Inbound{inbound("f-1", storeRec("head", "h:1", "s1", 1))}, router: sites},
	})
	for i, p := range got {
		if p.err != nil || p.res.Accepted == 0 {
			t.Fatalf("push %d: %+v, %v", i, p.res, p.err)
		}
	}
	if got, want := queued(t, c, 4), "h:1=1,l1=1"; got != want {
		t.Fatalf("site 4 queue = %q, want %q", got, want)
	}
	for _, id := range []string{"l2", "l3"} {
		if cur, _ := c.Current("line", id); !cur.Held {
			t.Fatalf("line %s of a parent not pushed was routed: %+v", id, cur)
		}
	}
}

func TestKidPrefixOf(t *testing.T) {
	for _, p := range []Ref{{"transact", "t1"}, {"transact", "a:b:"}, {"transact", ""}, {"t", "12:3"}} {
		for _, child := range []Ref{{"trans_line", "x"}, {"trans_line", "x:y"}} {
			if got, ok := kidPrefixOf(kidKey(p, child)); !ok || got != kidParentPrefix(p) {
				t.Errorf("kidPrefixOf(%q) = %q, %v; want %q", kidKey(p, child), got, ok, kidParentPrefix(p))
			}
		}
	}
	for _, k := range []string{"kid:", "kid:t:x:y", "kid:t:5:ab:c", "rec:t:1:a:b"} {
		if got, ok := kidPrefixOf(k); ok {
			t.Errorf("kidPrefixOf(%q) = %q, want not ok", k, got)
		}
	}
}

// New records and queue entries count as live data: an ingest of new
// records (whose intents are the only garbage) does not compact the file at
// every doubling, while rewriting the same records does.
func TestCentral_NewRecordsDoNotCompact(t *testing.T) {
	c := openCentral(t, tempPath(t, "pri.db"), CentralOptions{})
	c.st.minCompact = 8 << 10
	for i := range 300 {
		batch := make([]Inbound, 10)
		for j := range batch {
			n := i*10 + j
			batch[j] = inbound(fmt.Sprintf("e-%d", n), storeRec("item", fmt.Sprintf("r%d", n), "s1", n))
		}
		accept(t, c, 2, batch...)
	}
	if size := fileSize(t, c.st.path); c.st.compactions != 0 || c.st.pending != nil || size < 32*c.st.minCompact {
		t.Fatalf("%d compactions (pending %v) of a %d-byte file of new records", c.st.compactions, c.st.pending != nil, size)
	}
	for i := 0; c.st.pending == nil && c.st.compactions == 0; i++ {
		if i > 20000 {
			t.Fatal("rewriting the same records never compacted the file")
		}
		accept(t, c, 2, inbound(fmt.Sprintf("u-%d", i), storeRec("item", fmt.Sprintf("r%d", i%10), "s1", i)))
	}
}

// The child index is looked up only for tables known to have children
// (Central.parents): a table learns it when its first child row is
// applied, and again from the file at open, so a parent pushed later — in
// the next push, or after a restart — still routes its held children.
func TestCentral_ChildrenOfANewParentTable(t *testing.T) {
	path := tempPath(t, "pri.db")
	c := openCentral(t, path, CentralOptions{})
	line := func(id, head string) Record { return rec("line", id, map[string]any{"head_ID": head, "n": 1}) }
	accept(t, c, 2, inbound("e-1", line("l1", "h1")))
	accept(t, c, 2, inbound("e-2", storeRec("head", "h1", "s1", 1)))
	if got, want := queued(t, c, 4), "h1=1,l1=1"; got != want {
		t.Fatalf("site 4 queue after the parent came in the next push = %q, want %q", got, want)
	}
	accept(t, c, 2, inbound("e-3", line("l2", "h2")))
	accept(t, c, 5, inbound("g-1", storeRec("item", "z", "s2", 1))) // its commit deletes the line's intent: the reopen reads the file
	c.Close()
	c = openCentral(t, path, CentralOptions{})
	accept(t, c, 2, inbound("e-4", storeRec("head", "h2", "s1", 1)))
	if got, want := queued(t, c, 4), "h1=1,l1=1,h2=1,l2=1"; got != want {
		t.Fatalf("site 4 queue after the parent came after a reopen = %q, want %q", got, want)
	}
}

// Answers to the same record twice in a batch (a refusal pushed twice) are
// coalesced too: the pusher is queued the record once.
func TestCentral_Accept_RefusedTwiceInBatch(t *testing.T) {
	c := openCentral(t, tempPath(t, "pri.db"), CentralOptions{})
	accept(t, c, 5, inbound("g-1", storeRec("item", "z", "s2", 1)))
	var plan Plan
	if err := c.st.view(func(tx *buntdb.Tx) error {
		var err error
		plan, _, err = Decide(buntReader{tx: tx}, 2, []Inbound{inbound("e-1", storeRec("item", "z", "s2", 2)), inbound("e-2", storeRec("item", "z", "s2", 3))}, sites, func() uint64 { return 0 })
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(plan.Queue) != 1 || plan.Queue[0].Site != 2 || !plan.Queue[0].Del {
		t.Fatalf("queue ops %+v, want one delete for site 2", plan.Queue)
	}
}
