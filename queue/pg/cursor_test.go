package pg

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"syncagent/queue"
	"syncagent/queue/storetest"
	"syncagent/testtools/pgtest"
)

var central = storetest.Router{"s1": {2, 3}}

func unit(id string, n int) queue.Record {
	return queue.Record{Table: "unit", ID: id, Action: queue.Update, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}
}

// TestStore_CentralCursorsCommittedOutOfOrder protects a reader from
// skipping a cursor drawn early and committed late: node A draws cursor c1
// and stalls before writing; node B writes c2 > c1 and commits. Until A
// commits, a reader gets neither, and its bound stays below c1.
func TestStore_CentralCursorsCommittedOutOfOrder(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := openStore(t, dsn, Options{}), openStore(t, dsn, Options{})
	c0, err := a.Write(unit("before", 0), central)
	if err != nil {
		t.Fatal(err)
	}
	drawn, release := make(chan uint64, 1), make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // a failed check must not leave the write (and Close) waiting
	a.testHookApply = func(ap applied) {
		for _, c := range ap.cursors {
			drawn <- c
		}
		<-release
	}
	var c1 uint64
	var werr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		c1, werr = a.Write(unit("early", 1), central)
	}()
	early := <-drawn
	c2, err := b.Write(unit("late", 2), central)
	if err != nil || c2 <= early {
		t.Fatalf("second write = %d, %v; want a cursor above %d", c2, err, early)
	}
	es, maxCur, err := b.CentralSince(c0, 0)
	if err != nil || len(es) != 0 || maxCur >= early {
		t.Fatalf("while %d is in flight: %d entries, max cursor %d, %v; want none and a bound below it", early, len(es), maxCur, err)
	}
	unblock()
	<-done
	if werr != nil || c1 != early {
		t.Fatalf("first write = %d, %v", c1, werr)
	}
	es, maxCur, err = b.CentralSince(c0, 0)
	if err != nil || len(es) != 2 || es[0].Cursor != c1 || es[1].Cursor != c2 || maxCur != c2 {
		t.Fatalf("after both: %+v, max %d, %v", es, maxCur, err)
	}
}

// TestStore_CentralReaderNeverSkips protects the same under load: writers
// on two nodes rewrite central records while a reader pulls by cursor as a
// satellite does (its cursor is the last entry it got); once the writers
// stop and it catches up, it holds every record's last value.
func TestStore_CentralReaderNeverSkips(t *testing.T) {
	dsn := pgtest.DSN(t)
	nodes := []*Store{openStore(t, dsn, Options{LogPartition: 50}), openStore(t, dsn, Options{LogPartition: 50})}
	const writers, writes, keys = 4, 60, 40
	final := make([]map[string]int, writers)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range writers {
		final[w] = map[string]int{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range writes {
				id := fmt.Sprintf("w%d-k%d", w, i%keys)
				if _, err := nodes[w%2].Write(unit(id, i), central); err != nil {
					t.Error(err)
					return
				}
				final[w][id] = i
			}
		}()
	}
	seen := map[string]int{}
	var cursor uint64
	pull := func() {
		for {
			es, maxCur, err := nodes[1].CentralSince(cursor, 7)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				if e.Cursor <= cursor {
					t.Fatalf("cursor %d after %d", e.Cursor, cursor)
				}
				cursor = e.Cursor
				var d struct{ N int }
				json.Unmarshal(e.Record.Data, &d)
				seen[e.Record.ID] = d.N
			}
			if len(es) == 0 || cursor >= maxCur {
				return
			}
		}
	}
	go func() { wg.Wait(); close(stop) }()
	for running := true; running; {
		select {
		case <-stop:
			running = false
		case <-time.After(time.Millisecond):
		}
		pull()
	}
	pull()
	for w := range writers {
		for id, n := range final[w] {
			if got, ok := seen[id]; !ok || got != n {
				t.Errorf("%s: reader holds %d (%v), last written %d", id, got, ok, n)
			}
		}
	}
}
