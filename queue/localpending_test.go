package queue

import (
	"fmt"
	"maps"
	"strings"
	"testing"
)

// TestLocal_pendingInStep: the outbox kept in memory names exactly the
// records whose value holds a pending seq, after every kind of commit of a
// satellite (the history the power-loss tests replay) and after refused ones.
func TestLocal_pendingInStep(t *testing.T) {
	path := tempPath(t, "sat.db")
	buildLocalHistory(t, path) // every kind of commit; it checks as it goes through checkPending below
	l := openLocal(t, path, LocalOptions{OutboxMax: 4})
	checkPending(t, l, "reopened")
	for i := range 6 { // the last ones are refused: the outbox is full
		l.Write(storeRec("item", fmt.Sprintf("p%d", i), "s1", i))
		checkPending(t, l, fmt.Sprintf("write %d", i))
	}
	l.MarkPushed(must(l.Outbox(2, 0)))
	checkPending(t, l, "mark pushed")
	l.SetAside(must(l.Outbox(1, 0))[0], "refused")
	checkPending(t, l, "set aside")
	_, err := l.Put([]Record{storeRec("item", "q1", "s1", 1), storeRec("item", "q2", "s1", 1)}, func(r *Record, _ Record, _ bool, _ LocalLookup) error {
		if r.ID == "q2" {
			return fmt.Errorf("no")
		}
		return nil
	})
	if err == nil {
		t.Fatal("a refused batch was written")
	}
	checkPending(t, l, "refused batch")
	l.Requeue(func(Record) bool { return true })
	checkPending(t, l, "requeue")
}

// checkPending compares l's outbox in memory with the values on record.
func checkPending(t *testing.T, l *Local, where string) {
	t.Helper()
	want := map[string]uint64{}
	for k, v := range snapshot(t, l.st) {
		if !strings.HasPrefix(k, recPrefix) {
			continue
		}
		if lv := must(decodeLocal(v)); lv.Pending != 0 {
			want[k] = lv.Pending
		}
	}
	got := maps.Clone(l.pending.byKey)
	if !maps.Equal(got, want) || l.pending.bySeq.Len() != len(want) || l.OutboxLen() != len(want) {
		t.Fatalf("%s: outbox in memory %v (%d by seq, OutboxLen %d), datafile %v", where, got, l.pending.bySeq.Len(), l.OutboxLen(), want)
	}
}
