package pg

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"syncagent/queue"
	"syncagent/queue/storetest"
	"syncagent/testtools/pgtest"
)

// TestStore_KilledMidPush protects "nothing lost, nothing applied twice"
// when a node's connections die mid-transaction: while site 2 pushes
// batches, site 3 acknowledges and the primary writes central data, another
// session terminates the node's backends at random (pg_terminate_backend)
// and some calls have their context cancelled at a random moment. Each
// failed call is retried as a satellite would (the same batch, the same
// syncOutIds). Afterwards every record holds its last value, site 3 gets
// each once, site 2 gets nothing back, the queue lengths are exact, no
// placeholder row is left, and the last batch pushed again is a repeat.
func TestStore_KilledMidPush(t *testing.T) {
	dsn := pgtest.DSN(t)
	app := fmt.Sprintf("victim%d", time.Now().UnixNano())
	victim := openStore(t, dsn, Options{ApplicationName: app, MaxConns: 4})
	admin := testPool(t, dsn)
	router := storetest.Router{"s1": {2, 3}}

	stop := make(chan struct{})
	var kills atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the killer
		defer wg.Done()
		rng := rand.New(rand.NewPCG(7, 7))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(2+rng.IntN(40)) * time.Millisecond):
			}
			// One session, preferably one inside a transaction.
			var n int64
			admin.QueryRow(context.Background(), `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM (
				SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()
				ORDER BY state = 'idle in transaction' OR state = 'active' DESC, random() LIMIT 1) p) k`, app).Scan(&n)
			kills.Add(n)
		}
	}()

	const batches, size, keys = 40, 50, 120
	rng := rand.New(rand.NewPCG(1, 2))
	last := map[string]int{}
	var pushed [][]queue.Inbound
	var failures, cancels int
	retry := func(what string, fn func(ctx context.Context) error) {
		t.Helper()
		for attempt := 0; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if rng.IntN(4) == 0 {
				cancel2 := cancel
				ctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(8000))*time.Microsecond)
				defer cancel2()
				cancels++
			}
			err := fn(ctx)
			cancel()
			if err == nil {
				return
			}
			failures++
			if testing.Verbose() && failures <= 400 {
				t.Logf("%s cut: %v", what, err)
			}
			if attempt > 200 {
				t.Fatalf("%s: still failing: %v", what, err)
			}
		}
	}
	ackSome := func() {
		retry("ack", func(ctx context.Context) error {
			ids, err := victim.queuedIDs(ctx, 3, 1+rng.IntN(40))
			if err != nil {
				return err
			}
			_, err = victim.ack(ctx, 3, ids)
			return err
		})
	}
	seq := 0
	for b := range batches {
		var in []queue.Inbound
		for _, k := range rng.Perm(keys)[:size] { // distinct records in a batch
			seq++
			id := fmt.Sprint("r", k)
			in = append(in, queue.Inbound{SyncOutID: fmt.Sprint("e-", seq), Record: storeRecord("item", id, "s1", seq)})
			last[id] = seq
		}
		pushed = append(pushed, in)
		retry("push", func(ctx context.Context) error { _, _, err := victim.accept(ctx, 2, in, router); return err })
		if b%3 == 0 {
			u := unit(fmt.Sprint("u", b%7), b)
			last["unit/"+u.ID] = b
			retry("write", func(ctx context.Context) error {
				_, _, err := victim.accept(ctx, 0, []queue.Inbound{{Record: u}}, router)
				return err
			})
		}
		ackSome()
	}
	close(stop)
	wg.Wait()
	if kills.Load() == 0 || failures == 0 {
		t.Fatalf("the killer killed %d sessions and %d calls failed: the test did not test", kills.Load(), failures)
	}
	t.Logf("%d sessions killed, %d calls cut (%d with a cancelled context)", kills.Load(), failures, cancels)

	// Every record holds its last value.
	for id, n := range last {
		table := "item"
		if len(id) > 5 && id[:5] == "unit/" {
			table, id = "unit", id[5:]
		}
		r, ok, err := victim.Get(table, id)
		var d struct{ N int }
		json.Unmarshal(r.Data, &d)
		if err != nil || !ok || d.N != n {
			t.Errorf("%s/%s = %s (%v, %v), want n=%d", table, id, r.Data, ok, err, n)
		}
	}
	// Site 3 gets each record once, with its last value; site 2 nothing.
	q, n, err := victim.Queued(3, 100000)
	if err != nil || n != len(q) {
		t.Fatalf("site 3: %d entries, length %d, %v", len(q), n, err)
	}
	for _, e := range q {
		var d struct{ N int }
		json.Unmarshal(e.Record.Data, &d)
		if d.N != last[e.Record.ID] {
			t.Errorf("site 3 is queued %s=%d, last %d", e.Record.ID, d.N, last[e.Record.ID])
		}
	}
	if q2, n2, _ := victim.Queued(2, 0); len(q2) != 0 || n2 != 0 {
		t.Errorf("site 2 was sent %d of its own records back (length %d)", len(q2), n2)
	}
	var placeholders, units int
	admin.QueryRow(context.Background(), "SELECT count(*) FROM records WHERE version = 0").Scan(&placeholders)
	if placeholders != 0 {
		t.Errorf("%d placeholder rows left", placeholders)
	}
	es, _, _ := victim.CentralSince(0, 0)
	seen := map[string]bool{}
	for _, e := range es {
		if seen[e.Record.ID] {
			t.Errorf("central record %s logged twice", e.Record.ID)
		}
		seen[e.Record.ID] = true
		units++
	}
	if units != 7 {
		t.Errorf("%d central records logged, want 7", units)
	}
	// The last batch (its changes are the records' last) was recorded:
	// pushing it again is a repeat.
	in := pushed[len(pushed)-1]
	if res, err := victim.Accept(2, in, router); err != nil || res.Duplicate != len(in) {
		t.Fatalf("last batch again: accepted %d, duplicate %d, %v", res.Accepted, res.Duplicate, err)
	}
	if _, err := victim.Write(unit("after", 1), router); err != nil {
		t.Fatalf("a write after the kills: %v", err)
	}
}

func (s *Store) queuedIDs(ctx context.Context, site, limit int) ([]string, error) {
	q, _, err := s.queued(ctx, site, limit)
	var ids []string
	for _, e := range q {
		ids = append(ids, e.SyncOutID)
	}
	return ids, err
}
