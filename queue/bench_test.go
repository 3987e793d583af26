package queue

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkLocal_Write is one app write: one key, one fsync.
func BenchmarkLocal_Write(b *testing.B) {
	l := openLocal(b, tempPath(b, "sat.db"), LocalOptions{})
	r := storeRec("item", "", "s1", 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.ID = fmt.Sprintf("r%d", i%1000)
		if _, err := l.Write(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLocal_WriteMany100 is 100 app writes in one commit.
func BenchmarkLocal_WriteMany100(b *testing.B) {
	l := openLocal(b, tempPath(b, "sat.db"), LocalOptions{})
	batch := make([]Record, 100)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for j := range batch {
			batch[j] = storeRec("item", fmt.Sprintf("r%d", (i*100+j)%5000), "s1", i)
		}
		if _, err := l.WriteMany(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkCentral_Accept is one pushed batch of 100 records routed to two
// sites: two commits (intent, apply; the intent is deleted by the next).
func BenchmarkCentral_Accept(b *testing.B) {
	c := openCentral(b, tempPath(b, "pri.db"), CentralOptions{})
	batch := make([]Inbound, 100)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for j := range batch {
			batch[j] = inbound(fmt.Sprintf("e-%d-%d", i, j), storeRec("item", fmt.Sprintf("r%d", j), "s1", i))
		}
		if _, err := c.Accept(2, batch, sites); err != nil {
			b.Fatal(err)
		}
		if q, _, _ := c.Queued(3, 100); len(q) > 0 && i%2 == 0 {
			ids := make([]string, len(q))
			for k, e := range q {
				ids[k] = e.SyncOutID
			}
			c.Ack(3, ids)
			c.Ack(4, ids)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkCentral_Fill100k is a new site's initialisation on the primary:
// a site added to a store holding 100,000 of the 200,000 records held (the
// other half is another store's): Reconcile, Fill and its first page. Issue 15's target: ready
// in under 10 s.
func BenchmarkCentral_Fill100k(b *testing.B) {
	c := openCentral(b, tempPath(b, "pri.db"), CentralOptions{})
	pad := strings.Repeat("x", 200)
	for start := 0; start < 200_000; start += 1000 {
		for origin, store := range map[int]string{2: "s1", 5: "s2"} {
			batch := make([]Inbound, 0, 500)
			for j := start; j < start+500; j++ {
				id := fmt.Sprintf("%s-%07d", store, j)
				batch = append(batch, inbound("f-"+id, rec("item", id, map[string]any{StoreField: store, "pad": pad})))
			}
			if _, err := c.Accept(origin, batch, sites); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		site := 100 + i // a new site each time, holding s2
		router := testRouter{"s1": {2, 3, 4}, "s2": {5, site}}
		// The site's row names s2 (Reconcile queues what it now holds),
		// then it initialises (Fill finds it all queued).
		if _, err := c.Reconcile(router.members(), router); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Fill(site); err != nil || c.QueueLen(site) != 100_000 {
			b.Fatalf("queue of the new site: %d (%v), want 100000", c.QueueLen(site), err)
		}
		if q, _, err := c.Queued(site, 1000); err != nil || len(q) != 1000 {
			b.Fatalf("first page: %d (%v)", len(q), err)
		}
	}
}

// BenchmarkLocal_Write16 is app writes from 16 writers at once, sharing
// commits (localcommit.go); it reports the writes a commit took.
func BenchmarkLocal_Write16(b *testing.B) {
	l := openLocal(b, tempPath(b, "sat.db"), LocalOptions{})
	before, syncs := l.st.updates, l.st.fsync.syncs.Load()
	b.SetParallelism(8) // 16 writers on 2 CPUs
	b.ReportAllocs()
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		w := n.Add(1)
		r := storeRec("item", "", "s1", 1)
		for i := 0; pb.Next(); i++ {
			r.ID = fmt.Sprintf("w%d-%d", w, i)
			if _, err := l.Write(r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/float64(l.st.updates-before), "writes/commit")
	b.ReportMetric(float64(b.N)/float64(l.st.fsync.syncs.Load()-syncs), "writes/fsync")
}
