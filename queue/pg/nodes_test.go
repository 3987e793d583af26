package pg

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"syncagent/queue"
	"syncagent/queue/storetest"
	"syncagent/testtools/pgtest"
)

// Several nodes on one database: what one node does, any node sees, and
// nodes working at once leave what one node would.

var shared = storetest.Router{"s1": {2, 3, 4}, "s2": {4, 5}}

func storeRecord(table, id, store string, n int, extra ...string) queue.Record {
	m := map[string]any{queue.StoreField: store, "n": n}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	b, _ := json.Marshal(m)
	return queue.Record{Table: table, ID: id, Action: queue.Update, Data: b}
}

func lineRecord(id, head string, n int) queue.Record {
	b, _ := json.Marshal(map[string]any{"head_ID": head, "n": n})
	return queue.Record{Table: "line", ID: id, Action: queue.Update, Data: b}
}

// script is a seeded list of operations on the contract.
type op struct {
	kind string // push, write, ack, fill, pin, reconcile
	site int
	in   []queue.Inbound
	rec  queue.Record
	k    int
}

func makeScript(seed uint64, n int) []op {
	rng := rand.New(rand.NewPCG(seed, 1))
	var ops []op
	sid := map[int]int{}
	for range n {
		site := 2 + rng.IntN(4)
		switch x := rng.IntN(20); {
		case x < 10:
			var in []queue.Inbound
			for range 1 + rng.IntN(6) {
				sid[site]++
				store := "s1"
				if site == 5 || (site == 4 && rng.IntN(2) == 0) {
					store = "s2"
				}
				id := fmt.Sprintf("r%d", rng.IntN(30))
				var r queue.Record
				switch y := rng.IntN(10); {
				case y < 2:
					r = lineRecord("l"+id, "h"+fmt.Sprint(rng.IntN(5)), rng.IntN(100))
				case y < 3:
					r = storeRecord("head", "h"+fmt.Sprint(rng.IntN(5)), store, rng.IntN(100))
				case y < 4:
					r = queue.Record{Table: "item", ID: id, Action: queue.Delete}
				case y < 5:
					keep := fmt.Sprintf("r%d", rng.IntN(30))
					r = queue.Record{Table: "item", ID: keep, Action: queue.Merge,
						Data: json.RawMessage(fmt.Sprintf(`{"mergeIdToKeep":%q,"mergeIdToDelete":%q}`, keep, id))}
				default:
					r = storeRecord("item", id, store, rng.IntN(100))
				}
				in = append(in, queue.Inbound{SyncOutID: fmt.Sprintf("e%d-%d", site, sid[site]), Record: r})
			}
			ops = append(ops, op{kind: "push", site: site, in: in})
			if rng.IntN(5) == 0 { // the same push again (its answer was lost)
				ops = append(ops, op{kind: "push", site: site, in: in})
			}
		case x < 12:
			r := storeRecord("item", fmt.Sprintf("r%d", rng.IntN(30)), "s1", rng.IntN(100))
			if rng.IntN(2) == 0 {
				r = unit(fmt.Sprintf("u%d", rng.IntN(5)), rng.IntN(100))
			}
			ops = append(ops, op{kind: "write", rec: r})
		case x < 17:
			ops = append(ops, op{kind: "ack", site: site, k: rng.IntN(8)})
		case x < 18:
			ops = append(ops, op{kind: "fill", site: site})
		case x < 19:
			if rng.IntN(3) == 0 {
				ops = append(ops, op{kind: "reconcile", k: rng.IntN(len(routers))})
				break
			}
			ops = append(ops, op{kind: "pin", site: site, rec: queue.Record{ID: fmt.Sprintf("hw-%d-%d", site, rng.IntN(2))}})
		default:
			ops = append(ops, op{kind: "clearpin", site: site})
		}
	}
	return ops
}

// routers are the site rows a script moves between (reconcile): store s2
// moves from sites 4 and 5 to 3 and 5, site 2 leaves s1 and comes back.
var routers = []storetest.Router{shared, {"s1": {3, 4}, "s2": {3, 5}}, {"s1": {2, 3, 4}, "s2": {3, 5}}}

// script state: the rows in force (the same for every store the script runs on).
type scriptRun struct{ router storetest.Router }

func (o op) run(t *testing.T, c queue.PrimaryStore, st *scriptRun) {
	t.Helper()
	var err error
	switch o.kind {
	case "reconcile":
		st.router = routers[o.k]
		_, err = c.Reconcile(st.router.Members(), st.router)
	case "push":
		_, err = c.Accept(o.site, o.in, st.router)
	case "write":
		_, err = c.Write(o.rec, st.router)
	case "ack":
		q, _, qerr := c.Queued(o.site, o.k)
		if qerr != nil {
			t.Fatal(qerr)
		}
		var ids []string
		for _, e := range q {
			ids = append(ids, e.SyncOutID)
		}
		_, err = c.Ack(o.site, ids)
	case "fill":
		_, err = c.Fill(o.site)
	case "pin":
		_, err = c.Pin(o.site, o.rec.ID)
		if err != nil && strings.Contains(err.Error(), "pinned to another box") {
			err = nil
		}
	case "clearpin":
		err = c.ClearPin(o.site)
	}
	if err != nil {
		t.Fatalf("%s %d: %v", o.kind, o.site, err)
	}
}

// snapshot is what the contract shows of a store, without version numbers
// (backends number differently; the order is what must agree).
func snapshot(t *testing.T, c queue.PrimaryStore) string {
	t.Helper()
	var b strings.Builder
	for site := 2; site <= 5; site++ {
		q, n, err := c.Queued(site, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "site %d (%d/%d):", site, n, c.QueueLen(site))
		for _, e := range q {
			fmt.Fprintf(&b, " %s/%s %s %s", e.Record.Table, e.Record.ID, e.Record.Action, e.Record.Data)
		}
		s, _ := c.Site(site)
		fmt.Fprintf(&b, "\n  pin %q cleared %q init %s\n", s.HardwareID, s.ClearedHardwareID, s.Initialisation)
	}
	for _, table := range []string{"item", "head", "line", "unit"} {
		rs, err := c.List(table, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			cur, _ := c.Current(r.Table, r.ID)
			fmt.Fprintf(&b, "%s/%s %s owner %q holders %v held %v\n", r.Table, r.ID, r.Data, cur.Owner, cur.Holders, cur.Held)
		}
	}
	es, _, err := c.CentralSince(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		fmt.Fprintf(&b, "central %s/%s %s %s\n", e.Record.Table, e.Record.ID, e.Record.Action, e.Record.Data)
	}
	return b.String()
}

// TestStore_TwoNodesSameAsOne protects statelessness: the same operations
// give the same state whether one node runs them, two nodes take turns, or
// the embedded backend runs them.
func TestStore_TwoNodesSameAsOne(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			ops := makeScript(seed, 150)
			bunt, err := queue.OpenCentral(filepath.Join(t.TempDir(), "central.db"), queue.CentralOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer bunt.Close()
			one := openStore(t, pgtest.DSN(t), Options{})
			dsn := pgtest.DSN(t)
			two := []*Store{openStore(t, dsn, Options{}), openStore(t, dsn, Options{})}
			var sb, s1, s2 = &scriptRun{shared}, &scriptRun{shared}, &scriptRun{shared}
			for i, o := range ops {
				o.run(t, bunt, sb)
				o.run(t, one, s1)
				o.run(t, two[i%2], s2)
			}
			want := snapshot(t, bunt)
			if got := snapshot(t, one); got != want {
				t.Fatalf("one node differs from the embedded backend:\n%s", diff(want, got))
			}
			for i, n := range two {
				if got := snapshot(t, n); got != want {
					t.Fatalf("node %d of two differs:\n%s", i, diff(want, got))
				}
			}
		})
	}
}

func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := range max(len(w), len(g)) {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a != c {
			fmt.Fprintf(&b, "- %s\n+ %s\n", a, c)
		}
	}
	return b.String()
}

// TestStore_TwoNodesConcurrent protects the same with nodes working at
// once: four sites push their own records (stores shared, so each push fans
// out), through both nodes in turn, acknowledging as they go; then each
// site drains its queue. Every site ends up holding the last value of every
// record it must hold, each delivered once per change at most, and the
// queue lengths agree with the queues.
func TestStore_TwoNodesConcurrent(t *testing.T) {
	dsn := pgtest.DSN(t)
	nodes := []*Store{openStore(t, dsn, Options{}), openStore(t, dsn, Options{})}
	router := storetest.Router{"s1": {2, 3, 4, 5}}
	const pushes, batch, keys = 30, 8, 20
	held := make([]map[string]int, 6) // what each site holds after applying its pulls
	for s := 2; s <= 5; s++ {
		held[s] = map[string]int{}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for site := 2; site <= 5; site++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(site), 2))
			seq := 0
			for p := range pushes {
				var in []queue.Inbound
				for range batch {
					seq++
					id := fmt.Sprintf("s%d-%d", site, rng.IntN(keys))
					in = append(in, queue.Inbound{SyncOutID: fmt.Sprintf("e%d-%d", site, seq), Record: storeRecord("item", id, "s1", seq)})
					held[site][id] = seq // its own change
				}
				node := nodes[(site+p)%2]
				if _, err := node.Accept(site, in, router); err != nil {
					errs <- err
					return
				}
				// Pull a little and acknowledge it, through the other node.
				other := nodes[(site+p+1)%2]
				q, _, err := other.Queued(site, 5)
				if err != nil {
					errs <- err
					return
				}
				var ids []string
				for _, e := range q {
					var d struct{ N int }
					json.Unmarshal(e.Record.Data, &d)
					held[site][e.Record.ID] = d.N
					ids = append(ids, e.SyncOutID)
				}
				if _, err := other.Ack(site, ids); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for site := 2; site <= 5; site++ {
		for {
			q, n, err := nodes[site%2].Queued(site, 50)
			if err != nil {
				t.Fatal(err)
			}
			if n != nodes[(site+1)%2].QueueLen(site) {
				t.Fatalf("site %d: nodes disagree on the queue length", site)
			}
			if len(q) == 0 {
				if n != 0 {
					t.Fatalf("site %d: empty queue of length %d", site, n)
				}
				break
			}
			var ids []string
			for _, e := range q {
				var d struct{ N int }
				json.Unmarshal(e.Record.Data, &d)
				held[site][e.Record.ID] = d.N
				ids = append(ids, e.SyncOutID)
			}
			if got, err := nodes[site%2].Ack(site, ids); err != nil || got != len(ids) {
				t.Fatalf("site %d: Ack removed %d of %d, %v", site, got, len(ids), err)
			}
		}
	}
	// Every site holds the primary's copy of every record.
	recs, err := nodes[0].List("item", "", 0)
	if err != nil || len(recs) == 0 {
		t.Fatalf("List = %d, %v", len(recs), err)
	}
	for _, r := range recs {
		var d struct{ N int }
		json.Unmarshal(r.Data, &d)
		for site := 2; site <= 5; site++ {
			if got, ok := held[site][r.ID]; !ok || got != d.N {
				t.Errorf("site %d holds %s=%d (%v), primary %d", site, r.ID, got, ok, d.N)
			}
		}
	}
}

// TestStore_SameNewRecordFromTwoNodes protects the placeholder lock: two
// sites create the same record at once on two nodes; one change is decided
// after the other, so the loser's site is sent the winner's value and the
// winner's site gets nothing back.
func TestStore_SameNewRecordFromTwoNodes(t *testing.T) {
	dsn := pgtest.DSN(t)
	nodes := []*Store{openStore(t, dsn, Options{}), openStore(t, dsn, Options{})}
	router := storetest.Router{"s1": {2, 3, 4}}
	for i := range 30 {
		id := fmt.Sprint("new", i)
		var wg sync.WaitGroup
		vers := make([]uint64, 2)
		for k, site := range []int{2, 3} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := nodes[k].Accept(site, []queue.Inbound{{SyncOutID: fmt.Sprintf("x%d-%d", site, i), Record: storeRecord("item", id, "s1", site)}}, router)
				if err != nil || res.Accepted != 1 {
					t.Errorf("site %d: %+v, %v", site, res, err)
					return
				}
				vers[k] = res.Outcomes[0].Version
			}()
		}
		wg.Wait()
		if vers[0] == vers[1] {
			t.Fatalf("both changes got version %d", vers[0])
		}
		winner, loser := 2, 3
		if vers[1] > vers[0] {
			winner, loser = 3, 2
		}
		r, _, _ := nodes[0].Get("item", id)
		var d struct{ N int }
		json.Unmarshal(r.Data, &d)
		if d.N != winner {
			t.Fatalf("%s: primary holds %d, last change was site %d's", id, d.N, winner)
		}
		entries := func(site int) []string {
			q, _, _ := nodes[1].Queued(site, 0)
			var out []string
			for _, e := range q {
				if e.Record.ID == id {
					out = append(out, string(e.Record.Data))
				}
			}
			return out
		}
		if w, l, o := entries(winner), entries(loser), entries(4); len(w) != 0 || len(l) != 1 || len(o) != 1 {
			t.Fatalf("%s: winner %v, loser %v, other %v", id, w, l, o)
		}
	}
}

// TestStore_ChildAndParentFromTwoNodes protects the child index under
// concurrency: a head's lines and the head itself arrive at once through
// two nodes; whichever commits first, the lines end up routed with the
// head, never held.
func TestStore_ChildAndParentFromTwoNodes(t *testing.T) {
	dsn := pgtest.DSN(t)
	nodes := []*Store{openStore(t, dsn, Options{}), openStore(t, dsn, Options{})}
	router := storetest.Router{"s1": {2, 3}}
	for i := range 20 {
		head := fmt.Sprint("h", i)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			in := []queue.Inbound{{SyncOutID: fmt.Sprint("l-", i, "-1"), Record: lineRecord(head+"-l1", head, 1)},
				{SyncOutID: fmt.Sprint("l-", i, "-2"), Record: lineRecord(head+"-l2", head, 2)}}
			if _, err := nodes[0].Accept(2, in, router); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			in := []queue.Inbound{{SyncOutID: fmt.Sprint("h-", i), Record: storeRecord("head", head, "s1", 0)}}
			if _, err := nodes[1].Accept(2, in, router); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		for _, l := range []string{head + "-l1", head + "-l2"} {
			cur, err := nodes[0].Current("line", l)
			if err != nil || cur.Held || !slices.Equal(cur.Holders, []int{2, 3}) {
				t.Fatalf("%s: %+v, %v", l, cur, err)
			}
		}
		q, _, _ := nodes[1].Queued(3, 0)
		got := 0
		for _, e := range q {
			if strings.HasPrefix(e.Record.ID, head) && (e.Record.ID == head || strings.HasPrefix(e.Record.ID, head+"-")) {
				got++
			}
		}
		if got != 3 {
			t.Fatalf("%s: site 3 has %d of the head and its lines queued, want 3", head, got)
		}
	}
}
