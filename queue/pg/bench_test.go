package pg

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"syncagent/queue"
	"syncagent/queue/storetest"
	"syncagent/testtools/pgtest"
)

// benchPushers push from this many sites at once, each through its own
// goroutine (one node, one pool).
const benchPushers = 4

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchAccept pushes b.N batches of 500 records, split between
// benchPushers sites; each site's store is held by one other site, so
// every record is queued once. update rewrites the records a first round
// created. It reports records/s, and µs of CPU per record in this process
// (the node) and in the database server.
func benchAccept(b *testing.B, update bool) {
	const size = 500
	dsn := pgtest.DSN(b)
	cluster := pgtest.Shared(b)
	s := openStore(b, dsn, Options{MaxConns: 2 * benchPushers})
	router := storetest.Router{}
	for p := range benchPushers {
		router[fmt.Sprint("s", p)] = []int{10 + p, 20 + p}
	}
	batch := func(p, i, n int) []queue.Inbound {
		in := make([]queue.Inbound, size)
		for k := range in {
			id := fmt.Sprintf("p%d-%d-%d", p, i, k)
			in[k] = queue.Inbound{SyncOutID: fmt.Sprintf("e%d-%d", n, i*size+k),
				Record: storeRecord("stock_line", id, fmt.Sprint("s", p), i, "item_ID", "item-"+id, "batch", "B-2024-0001", "note", "a line of about two hundred bytes of data, as a stock line has")}
		}
		return in
	}
	per := (b.N + benchPushers - 1) / benchPushers
	var cpu0, db0 time.Duration
	run := func(round int) time.Duration {
		batches := make([][][]queue.Inbound, benchPushers)
		for p := range batches {
			for i := range per {
				batches[p] = append(batches[p], batch(p, i, round))
			}
		}
		var wg sync.WaitGroup
		cpu0, db0 = cpuTime(), cluster.CPU()
		start := time.Now()
		for p := range benchPushers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					if _, err := s.Accept(10+p, batches[p][i], router); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	if update {
		run(0)
	}
	b.ResetTimer()
	elapsed := run(1)
	cpu, db := cpuTime()-cpu0, cluster.CPU()-db0
	b.StopTimer()
	recs := float64(per * benchPushers * size)
	b.ReportMetric(recs/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(cpu.Microseconds())/recs, "node-µs/record")
	b.ReportMetric(float64(db.Microseconds())/recs, "db-µs/record")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkStore_AcceptNew: 500-record pushes of new records from 4 sites
// at once.
func BenchmarkStore_AcceptNew(b *testing.B) { benchAccept(b, false) }

// BenchmarkStore_AcceptUpdate: the same records pushed again with new
// values (every row exists: the common case of a busy site).
func BenchmarkStore_AcceptUpdate(b *testing.B) { benchAccept(b, true) }

// BenchmarkStore_PullAck: a site reads its queue 500 at a time and
// acknowledges each page.
func BenchmarkStore_PullAck(b *testing.B) {
	const size = 500
	dsn := pgtest.DSN(b)
	cluster := pgtest.Shared(b)
	s := openStore(b, dsn, Options{})
	router := storetest.Router{"s1": {2, 3}}
	for i := range b.N {
		in := make([]queue.Inbound, size)
		for k := range in {
			in[k] = queue.Inbound{SyncOutID: fmt.Sprint("e-", i*size+k), Record: storeRecord("stock_line", fmt.Sprintf("r%d-%d", i, k), "s1", k)}
		}
		if _, err := s.Accept(2, in, router); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	cpu0, db0, start := cpuTime(), cluster.CPU(), time.Now()
	for range b.N {
		q, _, err := s.Queued(3, size)
		if err != nil || len(q) != size {
			b.Fatalf("Queued = %d, %v", len(q), err)
		}
		ids := make([]string, len(q))
		for k, e := range q {
			ids[k] = e.SyncOutID
		}
		if n, err := s.Ack(3, ids); err != nil || n != size {
			b.Fatalf("Ack = %d, %v", n, err)
		}
	}
	elapsed, cpu, db := time.Since(start), cpuTime()-cpu0, cluster.CPU()-db0
	recs := float64(b.N * size)
	b.ReportMetric(recs/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(cpu.Microseconds())/recs, "node-µs/record")
	b.ReportMetric(float64(db.Microseconds())/recs, "db-µs/record")
	b.ReportMetric(0, "ns/op")
}
