package queue

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Two writes of one record before a push are one outbox entry, the latest.
func TestLocal_WriteCoalesces(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	mustWrite(t, l, storeRec("item", "a", "s1", 1))
	mustWrite(t, l, storeRec("item", "b", "s1", 1))
	mustWrite(t, l, storeRec("item", "a", "s1", 2))
	if got, want := l.OutboxLen(), 2; got != want {
		t.Fatalf("OutboxLen = %d, want %d", got, want)
	}
	es, err := l.Outbox(10, 0)
	if err != nil || len(es) != 2 {
		t.Fatalf("Outbox = %v, %v", ids(es), err)
	}
	// b was written before the second write of a: b is older now.
	if es[0].Record.ID != "b" || es[1].Record.ID != "a" || dataN(t, es[1].Record) != 2 {
		t.Fatalf("Outbox order = %s", ids(es))
	}
}

func TestLocal_OutboxOrderAndLimits(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	for i := range 10 {
		mustWrite(t, l, storeRec("item", fmt.Sprintf("r%d", i), "s1", i))
	}
	es, _ := l.Outbox(3, 0)
	if len(es) != 3 || es[0].Record.ID != "r0" || es[2].Record.ID != "r2" {
		t.Fatalf("Outbox(3) = %s", ids(es))
	}
	for i := 1; i < len(es); i++ {
		if es[i].Seq <= es[i-1].Seq {
			t.Fatalf("seqs not increasing: %d then %d", es[i-1].Seq, es[i].Seq)
		}
	}
	es, _ = l.Outbox(10, es[0].Size*2+es[0].Size/2)
	if len(es) != 2 {
		t.Fatalf("Outbox by bytes = %d entries, want 2", len(es))
	}
	// One entry larger than maxBytes still comes out alone.
	es, _ = l.Outbox(10, 1)
	if len(es) != 1 {
		t.Fatalf("Outbox(maxBytes=1) = %d entries, want 1", len(es))
	}
}

// A write that lands between Outbox and MarkPushed stays pending.
func TestLocal_MarkPushedKeepsNewerWrite(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	mustWrite(t, l, storeRec("item", "a", "s1", 1))
	mustWrite(t, l, storeRec("item", "b", "s1", 1))
	batch, _ := l.Outbox(10, 0)
	newer := mustWrite(t, l, storeRec("item", "a", "s1", 2))
	if err := l.MarkPushed(batch); err != nil {
		t.Fatal(err)
	}
	es, _ := l.Outbox(10, 0)
	if len(es) != 1 || es[0].SyncOutID != newer.SyncOutID || dataN(t, es[0].Record) != 2 {
		t.Fatalf("after MarkPushed outbox = %+v", es)
	}
	if l.OutboxLen() != 1 {
		t.Fatalf("OutboxLen = %d, want 1", l.OutboxLen())
	}
	// Marking the same batch again changes nothing.
	if err := l.MarkPushed(batch); err != nil || l.OutboxLen() != 1 {
		t.Fatalf("second MarkPushed: %v, len %d", err, l.OutboxLen())
	}
}

func TestLocal_DeleteTombstone(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	mustWrite(t, l, storeRec("item", "a", "s1", 1))
	mustWrite(t, l, del("item", "a"))
	if _, ok, _ := l.Get("item", "a"); ok {
		t.Fatal("deleted record still readable")
	}
	es, _ := l.Outbox(10, 0)
	if len(es) != 1 || es[0].Record.Action != Delete || len(es[0].Record.Data) != 0 {
		t.Fatalf("outbox = %+v", es)
	}
	if err := l.MarkPushed(es); err != nil {
		t.Fatal(err)
	}
	var keys int
	l.view(func(tx *buntTx) error {
		return tx.AscendKeys(recPrefix+"*", func(k, v string) bool { keys++; return true })
	})
	if keys != 0 || l.Count() != 0 || l.OutboxLen() != 0 {
		t.Fatalf("pushed tombstone kept: keys %d count %d outbox %d", keys, l.Count(), l.OutboxLen())
	}
}

// A local merge removes mergeIdToDelete and pushes the merge record itself.
func TestLocal_Merge(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	mustWrite(t, l, storeRec("name", "keep", "s1", 1))
	mustWrite(t, l, storeRec("name", "drop", "s1", 2))
	l.MarkPushed(must(l.Outbox(10, 0)))
	m := Record{Table: "name", ID: "keep", Action: "Merge", Data: []byte(`{"mergeIdToKeep":"keep","mergeIdToDelete":"drop"}`)}
	mustWrite(t, l, m)
	if _, ok, _ := l.Get("name", "drop"); ok {
		t.Fatal("merged-away record still readable")
	}
	if _, ok, _ := l.Get("name", "keep"); !ok {
		t.Fatal("kept record gone")
	}
	es, _ := l.Outbox(10, 0)
	if len(es) != 1 || es[0].Record.ID != "keep" || es[0].Record.Action != Merge {
		t.Fatalf("outbox = %+v", es)
	}
	if err := l.MarkPushed(es); err != nil || l.OutboxLen() != 0 {
		t.Fatalf("MarkPushed merge: %v, len %d", err, l.OutboxLen())
	}
}

func TestLocal_OutboxMax(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{OutboxMax: 2})
	mustWrite(t, l, storeRec("item", "a", "s1", 1))
	mustWrite(t, l, storeRec("item", "b", "s1", 1))
	_, err := l.Write(storeRec("item", "c", "s1", 1))
	if !errors.Is(err, ErrOutboxFull) || !strings.Contains(err.Error(), "limit 2") {
		t.Fatalf("third write: %v, want ErrOutboxFull", err)
	}
	if _, ok, _ := l.Get("item", "c"); ok {
		t.Fatal("refused write is readable")
	}
	// Rewriting a pending record adds no entry: allowed.
	mustWrite(t, l, storeRec("item", "a", "s1", 2))
	l.MarkPushed(must(l.Outbox(1, 0)))
	mustWrite(t, l, storeRec("item", "c", "s1", 1))
}

func TestLocal_Apply(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	mustWrite(t, l, storeRec("item", "mine", "s1", 1)) // pending local change
	batch := []Record{
		storeRec("item", "x", "s1", 1),
		storeRec("item", "y", "s1", 1),
		storeRec("item", "x", "s1", 2),
		storeRec("item", "mine", "s1", 99),
		del("item", "y"),
		del("item", "never-existed"),
	}
	res, err := l.Apply(batch)
	if err != nil || res.Applied != 5 || res.Skipped != 1 {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	check := func() {
		t.Helper()
		if x, ok, _ := l.Get("item", "x"); !ok || dataN(t, x) != 2 {
			t.Fatalf("x = %+v %v", x, ok)
		}
		if _, ok, _ := l.Get("item", "y"); ok {
			t.Fatal("y not deleted")
		}
		if m, _, _ := l.Get("item", "mine"); dataN(t, m) != 1 {
			t.Fatal("a pulled record overwrote a pending local change")
		}
		if l.Count() != 2 || l.OutboxLen() != 1 {
			t.Fatalf("count %d outbox %d", l.Count(), l.OutboxLen())
		}
	}
	check()
	// Delivered again after a lost acknowledgement: same state.
	if res, err := l.Apply(batch); err != nil || res.Applied != 5 || res.Skipped != 1 {
		t.Fatalf("second Apply = %+v, %v", res, err)
	}
	check()
	// Pulled records never enter the outbox.
	if es, _ := l.Outbox(10, 0); len(es) != 1 || es[0].Record.ID != "mine" {
		t.Fatalf("outbox = %s", ids(es))
	}
	// Once pushed, the next pulled value wins.
	l.MarkPushed(must(l.Outbox(10, 0)))
	l.Apply([]Record{storeRec("item", "mine", "s1", 7)})
	if m, _, _ := l.Get("item", "mine"); dataN(t, m) != 7 {
		t.Fatal("pulled record did not apply after the local change was pushed")
	}
	// A remote merge removes mergeIdToDelete.
	l.Apply([]Record{{Table: "item", ID: "x", Action: Merge, Data: []byte(`{"mergeIdToKeep":"mine","mergeIdToDelete":"x"}`)}})
	if _, ok, _ := l.Get("item", "x"); ok {
		t.Fatal("merge did not remove mergeIdToDelete")
	}
}

// An invalid pulled record refuses the whole batch.
func TestLocal_ApplyInvalidChangesNothing(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	_, err := l.Apply([]Record{storeRec("item", "x", "s1", 1), {Table: "item", Action: Insert}})
	if err == nil || l.Count() != 0 {
		t.Fatalf("Apply with an invalid record: %v, count %d", err, l.Count())
	}
}

func TestLocal_SetAsideRetry(t *testing.T) {
	path := tempPath(t, "sat.db")
	l := openLocal(t, path, LocalOptions{})
	mustWrite(t, l, storeRec("item", "poison", "s1", 1))
	mustWrite(t, l, storeRec("item", "ok", "s1", 1))
	es, _ := l.Outbox(1, 0)
	if err := l.SetAside(es[0], "primary refuses it: store_not_active"); err != nil {
		t.Fatal(err)
	}
	if es, _ := l.Outbox(10, 0); len(es) != 1 || es[0].Record.ID != "ok" || l.OutboxLen() != 1 {
		t.Fatalf("outbox after SetAside = %s (len %d)", ids(es), l.OutboxLen())
	}
	l.Close()
	l = openLocal(t, path, LocalOptions{})
	as, err := l.Aside()
	if err != nil || len(as) != 1 || as[0].Record.ID != "poison" || as[0].Reason == "" || as[0].SyncOutID != es[0].SyncOutID {
		t.Fatalf("Aside = %+v, %v", as, err)
	}
	if _, ok, _ := l.Get("item", "poison"); !ok {
		t.Fatal("set-aside record is no longer readable")
	}
	if err := l.RetryAside("item", "poison"); err != nil {
		t.Fatal(err)
	}
	if as, _ := l.Aside(); len(as) != 0 {
		t.Fatalf("Aside after retry = %+v", as)
	}
	es2, _ := l.Outbox(10, 0)
	if len(es2) != 2 || es2[1].Record.ID != "poison" || es2[1].Seq <= es[0].Seq {
		t.Fatalf("outbox after retry = %+v", es2)
	}
	if err := l.RetryAside("item", "poison"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("retry of nothing: %v", err)
	}
}

// A set-aside interrupted between its two commits is finished on open.
func TestLocal_SetAsideInterrupted(t *testing.T) {
	path := tempPath(t, "sat.db")
	l := openLocal(t, path, LocalOptions{})
	e := mustWrite(t, l, storeRec("item", "poison", "s1", 1))
	a := asideValue{State: asideState, Seq: e.Seq, SyncOutID: e.SyncOutID, Record: toJSON(e.Record), Reason: "x"}
	s, _ := a.encode()
	l.st.update("test", func(tx *buntTx) error { _, _, err := tx.Set(asideKey(e.Record), s, nil); return err })
	l.Close()
	l = openLocal(t, path, LocalOptions{})
	if l.OutboxLen() != 0 {
		t.Fatalf("OutboxLen = %d, want 0 (set-aside finished on open)", l.OutboxLen())
	}
}

func TestLocal_Requeue(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	var batch []Record
	for i := range 1200 {
		store := "s1"
		if i%2 == 1 {
			store = "s2"
		}
		batch = append(batch, storeRec("item", fmt.Sprintf("r%04d", i), store, i))
	}
	if _, err := l.WriteMany(batch); err != nil {
		t.Fatal(err)
	}
	for l.OutboxLen() > 0 {
		l.MarkPushed(must(l.Outbox(500, 0)))
	}
	mustWrite(t, l, storeRec("item", "r0000", "s1", -1)) // already pending: not counted
	n, err := l.Requeue(func(r Record) bool { return r.StoreID() == "s1" })
	if err != nil || n != 599 {
		t.Fatalf("Requeue = %d, %v; want 599", n, err)
	}
	if l.OutboxLen() != 600 {
		t.Fatalf("OutboxLen = %d, want 600", l.OutboxLen())
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestLocal_SetOutboxMax protects a live limit change: a lower limit refuses
// further writes, a higher one accepts them again.
func TestLocal_SetOutboxMax(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	for i, id := range []string{"a", "b"} {
		if _, err := l.Write(storeRec("t", id, "s1", 1)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	l.SetOutboxMax(2)
	if _, err := l.Write(storeRec("t", "c", "s1", 1)); !errors.Is(err, ErrOutboxFull) {
		t.Fatalf("over the new limit: %v", err)
	}
	l.SetOutboxMax(3)
	if _, err := l.Write(storeRec("t", "c", "s1", 1)); err != nil {
		t.Fatalf("under the raised limit: %v", err)
	}
}
