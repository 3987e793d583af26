package pg

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"syncagent/queue"
	"syncagent/testtools/pgtest"
)

// exactSnapshot is what a site sees of a store, numbers included: the
// syncOutIds it acknowledges, the cursors it reads by, the versions, and
// its registry entry. A migrated store must show the same.
func exactSnapshot(t *testing.T, c queue.PrimaryStore) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(snapshot(t, c))
	for site := 2; site <= 5; site++ {
		q, _, err := c.Queued(site, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range q {
			fmt.Fprintf(&b, "site %d entry %s %s/%s\n", site, e.SyncOutID, e.Record.Table, e.Record.ID)
		}
		s, _ := c.Site(site)
		s.LastContact, s.Health, s.HealthAt = time.Time{}, nil, time.Time{}
		fmt.Fprintf(&b, "site %d state %+v\n", site, s)
		d, _ := c.Diagnostics(site)
		fmt.Fprintf(&b, "site %d diagnostics %+v\n", site, d)
	}
	for _, table := range []string{"item", "head", "line", "unit"} {
		rs, _ := c.List(table, "", 0)
		for _, r := range rs {
			cur, _ := c.Current(r.Table, r.ID)
			fmt.Fprintf(&b, "%s/%s version %d\n", r.Table, r.ID, cur.Version)
		}
	}
	es, maxCursor, err := c.CentralSince(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		fmt.Fprintf(&b, "central cursor %d %s/%s\n", e.Cursor, e.Record.Table, e.Record.ID)
	}
	fmt.Fprintf(&b, "max cursor %d\n", maxCursor)
	rows, gen, err := c.Registry()
	if err != nil {
		t.Fatal(err)
	}
	log, _ := c.RegistryLog(10)
	for i := range log {
		log[i].At = log[i].At.UTC().Truncate(time.Microsecond)
	}
	fmt.Fprintf(&b, "registry %d %+v log %+v\n", gen, rows, log)
	return b.String()
}

// TestStore_ImportFromCentral protects `syncagent central migrate`: a
// BuntDB primary's state, copied into an empty database, shows exactly the
// same through the contract (syncOutIds, cursors, versions, pins, marks);
// a push repeated after the move is recognised as a repeat; and the same
// operations on both afterwards leave both the same.
func TestStore_ImportFromCentral(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			ops := makeScript(seed+10, 200)
			bunt, err := queue.OpenCentral(filepath.Join(t.TempDir(), "central.db"), queue.CentralOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer bunt.Close()
			sb, sp := &scriptRun{shared}, &scriptRun{shared}
			half := len(ops) / 2
			var lastPush op
			for _, o := range ops[:half] {
				o.run(t, bunt, sb)
				if o.kind == "push" {
					lastPush = o
				}
			}
			if err := bunt.RequestDiagnostics(3, "logs", time.Unix(1700000000, 0)); err != nil {
				t.Fatal(err)
			}
			if _, err := bunt.NoteHealth(2, []byte(`{"v":"x"}`), queue.Marks{}, time.Unix(1700000000, 0)); err != nil {
				t.Fatal(err)
			}
			if _, err := bunt.ChangeRegistry(0, queue.RegistryEdit{Put: []queue.SiteConfig{{SyncID: 40, User: "reg-40", PasswordHash: "h", Stores: []string{"s9"}}}},
				queue.RegistryChange{By: "test", What: "add site 40", Digest: "d"}); err != nil {
				t.Fatal(err)
			}
			if err := bunt.SetVerified(4, "token-of-site-4"); err != nil {
				t.Fatal(err)
			}
			sp.router = sb.router

			st := openStore(t, pgtest.DSN(t), Options{LogPartition: 7}) // several partitions
			sum, err := st.Import(context.Background(), bunt.Export)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Records == 0 || sum.CentralLog == 0 || len(sum.Sites) == 0 {
				t.Fatalf("the script left too little to test: %+v", sum)
			}
			want := exactSnapshot(t, bunt)
			if got := exactSnapshot(t, st); got != want {
				t.Fatalf("the imported store differs:\n%s", diff(want, got))
			}
			if _, err := st.Import(context.Background(), bunt.Export); err == nil || !strings.Contains(err.Error(), "already holds") {
				t.Errorf("a second import into the same database: %v", err)
			}

			// The last push again, as a site whose answer was lost in the move.
			rb, err := bunt.Accept(lastPush.site, lastPush.in, sb.router)
			if err != nil {
				t.Fatal(err)
			}
			rp, err := st.Accept(lastPush.site, lastPush.in, sp.router)
			if err != nil {
				t.Fatal(err)
			}
			if outcomes(rb) != outcomes(rp) {
				t.Errorf("the repeated push: embedded %+v, imported %+v", rb, rp)
			}
			for _, o := range ops[half:] {
				o.run(t, bunt, sb)
				o.run(t, st, sp)
			}
			if want, got := snapshot(t, bunt), snapshot(t, st); got != want {
				t.Fatalf("after more operations on both:\n%s", diff(want, got))
			}
		})
	}
}

func outcomes(r queue.AcceptResult) string {
	s := fmt.Sprintf("accepted %d duplicate %d refused %d rewound %v:", r.Accepted, r.Duplicate, r.Refused, r.Rewound)
	for _, o := range r.Outcomes {
		s += fmt.Sprintf(" %v/%d", o.Duplicate, o.Version)
		if o.Refused != nil {
			s += fmt.Sprintf("/%+v", *o.Refused)
		}
	}
	return s
}
