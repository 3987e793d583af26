package queue

import (
	"fmt"
	"testing"
)

// TestLocal_SweepOlder protects a clean re-initialisation: after the
// generation is raised, records delivered again, written locally, pushed or
// still waiting to be pushed stay; everything else an older generation left
// is removed, and the counts follow. A reopen keeps the generation.
func TestLocal_SweepOlder(t *testing.T) {
	path := tempPath(t, "sat.db")
	l := openLocal(t, path, LocalOptions{})
	if _, err := l.Apply([]Record{storeRec("item", "again", "s1", 1), storeRec("item", "gone", "s1", 1), storeRec("item", "same", "s1", 1)}); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, l, storeRec("item", "pending", "s1", 1)) // waits to be pushed across the re-initialisation
	mustWrite(t, l, storeRec("item", "pushed", "s1", 1))  // pushed during it
	if l.Generation() != 0 {
		t.Fatalf("generation of a new file = %d, want 0", l.Generation())
	}
	if err := l.SetGeneration(1); err != nil {
		t.Fatal(err)
	}
	if err := l.SetGeneration(1); err != nil || l.Generation() != 1 {
		t.Fatalf("SetGeneration again: %v, generation %d", err, l.Generation())
	}
	es := must(l.Outbox(0, 0))
	if err := l.MarkPushed(es[1:]); err != nil { // "pushed" only
		t.Fatal(err)
	}
	// "same" comes again unchanged: it must still be stamped.
	if _, err := l.Apply([]Record{storeRec("item", "again", "s1", 2), storeRec("item", "same", "s1", 1)}); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, l, storeRec("item", "written", "s1", 1))
	n, err := l.SweepOlder(1)
	if err != nil || n != 1 {
		t.Fatalf("SweepOlder = %d, %v; want 1 (gone)", n, err)
	}
	for id, want := range map[string]bool{"again": true, "same": true, "gone": false, "pending": true, "pushed": true, "written": true} {
		if _, ok, _ := l.Get("item", id); ok != want {
			t.Errorf("item %s present = %v, want %v", id, ok, want)
		}
	}
	if l.Count() != 5 || l.OutboxLen() != 2 {
		t.Errorf("count %d outbox %d, want 5 and 2", l.Count(), l.OutboxLen())
	}
	if n, err := l.SweepOlder(1); err != nil || n != 0 {
		t.Errorf("second sweep = %d, %v; want 0", n, err)
	}
	l.Close()
	l = openLocal(t, path, LocalOptions{})
	if l.Generation() != 1 || l.Count() != 5 {
		t.Errorf("reopened: generation %d count %d, want 1 and 5", l.Generation(), l.Count())
	}
}

// TestLocal_SweepOlderBatches protects the sweep of a big datafile: it
// commits in batches and still removes every stale record exactly once.
func TestLocal_SweepOlderBatches(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	var recs []Record
	for i := range 1234 {
		recs = append(recs, storeRec("item", fmt.Sprintf("r%05d", i), "s1", i))
	}
	if _, err := l.Apply(recs); err != nil {
		t.Fatal(err)
	}
	if err := l.SetGeneration(3); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Apply(recs[:34]); err != nil {
		t.Fatal(err)
	}
	if n, err := l.SweepOlder(3); err != nil || n != 1200 || l.Count() != 34 {
		t.Fatalf("SweepOlder = %d, %v, count %d; want 1200 removed, 34 left", n, err, l.Count())
	}
}

// TestLocal_OutboxUpTo protects fair cycles: a cycle pushes what waited
// when it started; later writes (a new record, or a newer value of one that
// waited) get higher seqs and wait for the next cycle.
func TestLocal_OutboxUpTo(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	for i := range 5 {
		mustWrite(t, l, storeRec("item", fmt.Sprint(i), "s1", i))
	}
	last := l.LastSeq()
	mustWrite(t, l, storeRec("item", "late", "s1", 1))
	mustWrite(t, l, storeRec("item", "0", "s1", 100)) // rewritten: moves past last
	if got := l.OutboxLenUpTo(last); got != 4 {
		t.Errorf("OutboxLenUpTo = %d, want 4", got)
	}
	if got := l.OutboxLenUpTo(l.LastSeq()); got != 6 {
		t.Errorf("OutboxLenUpTo(LastSeq) = %d, want 6", got)
	}
	es := must(l.OutboxUpTo(last, 0, 0))
	if ids(es) != "item/1 item/2 item/3 item/4 " {
		t.Fatalf("OutboxUpTo = %s", ids(es))
	}
	if es := must(l.OutboxUpTo(last, 3, 0)); len(es) != 3 {
		t.Fatalf("OutboxUpTo limited to 3 = %d entries", len(es))
	}
	if err := l.MarkPushed(es); err != nil {
		t.Fatal(err)
	}
	if es := must(l.OutboxUpTo(last, 0, 0)); len(es) != 0 {
		t.Fatalf("after pushing: OutboxUpTo = %s, want nothing", ids(es))
	}
	if got := l.OutboxLenUpTo(last); got != 0 {
		t.Errorf("OutboxLenUpTo after pushing = %d, want 0", got)
	}
}
