package queue

import (
	"fmt"
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
