package queue

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// The outbox churn (write, push, write again) is compacted away and every
// record, pending entry and index survives the rewrite and a reopen.
func TestLocal_Compaction(t *testing.T) {
	path := fastDir(t) + "/sat.db"
	l := openLocal(t, path, LocalOptions{})
	l.st.minCompact = 16 << 10
	for round := range 40 {
		var batch []Record
		for i := range 20 {
			batch = append(batch, storeRec("item", fmt.Sprintf("r%02d", i), "s1", round))
		}
		if _, err := l.WriteMany(batch); err != nil {
			t.Fatal(err)
		}
		if round < 39 {
			if err := l.MarkPushed(must(l.Outbox(0, 0))); err != nil {
				t.Fatal(err)
			}
		}
	}
	l.mu.Lock()
	before := fileSize(t, path)
	err := l.st.compact()
	l.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	after := fileSize(t, path)
	if after >= before/4 {
		t.Fatalf("compaction left %d of %d bytes", after, before)
	}
	check := func(l *Local) {
		t.Helper()
		es, err := l.Outbox(0, 0)
		if err != nil || len(es) != 20 || l.OutboxLen() != 20 || l.Count() != 20 {
			t.Fatalf("outbox %d entries (%v), len %d, count %d", len(es), err, l.OutboxLen(), l.Count())
		}
		if r, _, _ := l.Get("item", "r07"); dataN(t, r) != 39 {
			t.Fatalf("r07 = %s", r.Data)
		}
	}
	check(l)
	mustWrite(t, l, storeRec("item", "x", "s1", 1))
	l.Close()
	os.WriteFile(path+compactSuffix, []byte("half a compaction"), 0o600) // a crash mid-compaction
	l = openLocal(t, path, LocalOptions{})
	if _, err := os.Stat(path + compactSuffix); !os.IsNotExist(err) {
		t.Fatal("leftover compaction file not removed")
	}
	l.MarkPushed(must(l.Outbox(1, 0)))
	if _, ok, _ := l.Get("item", "x"); !ok || l.OutboxLen() != 20 {
		t.Fatalf("after reopen: outbox %d", l.OutboxLen())
	}
}

// New records are live data, not garbage: a datafile that grows by inserts
// (a first sync, a burst of new records) is not rewritten at every
// doubling; rewrites of the same records still get compacted away.
func TestLocal_insertsAreNotCompacted(t *testing.T) {
	path := fastDir(t) + "/sat.db"
	l := openLocal(t, path, LocalOptions{})
	l.st.minCompact = 8 << 10
	write := func(round, n int) {
		t.Helper()
		for b := 0; b < n; b += 20 {
			var batch []Record
			for i := b; i < b+20; i++ {
				batch = append(batch, storeRec("item", fmt.Sprintf("r%05d", i), "s1", round))
			}
			if _, err := l.WriteMany(batch); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(0, 4000) // 200 commits, the file grows ~100x past minCompact
	if got := l.st.compactions; got != 0 {
		t.Errorf("%d compactions of a file that only grew by new records (%d bytes)", got, fileSize(t, path))
	}
	for round := 1; round <= 3; round++ {
		write(round, 4000)
	}
	if l.st.compactions == 0 {
		t.Errorf("no compaction after every record was rewritten three times (%d bytes)", fileSize(t, path))
	}
	if l.Count() != 4000 {
		t.Errorf("Count = %d, want 4000", l.Count())
	}
}

// Writers, the push loop, the pull loop, readers and automatic compaction
// run at once; the counters still match the file. Run with -race.
func TestLocal_Concurrent(t *testing.T) {
	path := fastDir(t) + "/sat.db"
	l := openLocal(t, path, LocalOptions{})
	l.st.minCompact = 8 << 10
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := range 150 {
				if _, err := l.Write(storeRec("item", fmt.Sprintf("w%d-%d", w, i%20), "s1", i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() { // push loop
		for range 100 {
			es, err := l.Outbox(7, 0)
			if err == nil {
				err = l.MarkPushed(es)
			}
			if err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Go(func() { // pull loop
		for i := range 100 {
			if _, err := l.Apply([]Record{storeRec("item", fmt.Sprintf("w0-%d", i%20), "s1", -i), storeRec("remote", fmt.Sprint(i%9), "s1", i)}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Go(func() { // readers
		for range 200 {
			l.Get("item", "w1-3")
			l.List("item", "", 10)
			l.OutboxLen()
		}
	})
	wg.Wait()
	if l.st.compactions == 0 {
		t.Error("no compaction ran")
	}
	checkLocalConsistent(t, l, snapshot(t, l.st), 0, "after concurrent use")
	l.Close()
	l = openLocal(t, path, LocalOptions{})
	checkLocalConsistent(t, l, snapshot(t, l.st), 0, "after reopen")
	if l.Count() != 69 {
		t.Fatalf("Count = %d, want 69", l.Count())
	}
}

func TestCentral_Concurrent(t *testing.T) {
	path := fastDir(t) + "/pri.db"
	c := openCentral(t, path, CentralOptions{})
	c.st.minCompact = 8 << 10
	var wg sync.WaitGroup
	for site := 2; site <= 4; site++ {
		wg.Go(func() { // each site pushes and pulls
			for i := range 60 {
				if _, err := c.Accept(site, []Inbound{inbound(fmt.Sprintf("%d-%d", site, i), storeRec("item", fmt.Sprintf("s%d-%d", site, i%10), "s1", i))}, sites); err != nil {
					t.Error(err)
					return
				}
				q, _, err := c.Queued(site, 5)
				if err != nil {
					t.Error(err)
					return
				}
				var acks []string
				for _, e := range q {
					acks = append(acks, e.SyncOutID)
				}
				if _, err := c.Ack(site, acks); err != nil {
					t.Error(err)
					return
				}
				c.Touch(site, time.Now())
			}
		})
	}
	wg.Go(func() {
		for i := range 60 {
			if _, err := c.Write(rec("unit", fmt.Sprint(i%7), map[string]any{"n": i}), sites); err != nil {
				t.Error(err)
			}
			c.CentralSince(0, 3)
		}
	})
	wg.Wait()
	c.mu.Lock()
	if c.st.pending != nil { // an online compaction still copying: see it through
		c.st.finishCompaction(true)
	}
	c.mu.Unlock()
	if c.st.compactions == 0 {
		t.Error("no compaction ran")
	}
	st := centralSnapshot(t, c)
	checkCentralConsistent(t, c, st, checkpoint{}, "after concurrent use")
	total := c.QueueLen(2) + c.QueueLen(3) + c.QueueLen(4)
	c.Close()
	c = openCentral(t, path, CentralOptions{})
	if got := c.QueueLen(2) + c.QueueLen(3) + c.QueueLen(4); got != total {
		t.Fatalf("queued after reopen %d, before %d", got, total)
	}
	checkCentralConsistent(t, c, snapshot(t, c.st), checkpoint{}, "after reopen")
	if es, _, _ := c.CentralSince(0, 0); len(es) != 7 {
		t.Fatalf("central log holds %d entries, want 7 (one per record)", len(es))
	}
}
