package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"syncagent/queue"
)

// The site registry (queue/registry.go): rows, generation and log change
// together, only at the generation the change was made against, and
// survive a reopen.

func siteConfig(id int, stores ...string) queue.SiteConfig {
	return queue.SiteConfig{SyncID: id, User: fmt.Sprintf("site%d", id), PasswordHash: "pbkdf2-sha256$1$c2FsdHNhbHQ$" + fmt.Sprint(id), Stores: stores}
}

func registryIDs(t *testing.T, c queue.PrimaryStore) ([]int, uint64) {
	t.Helper()
	rows, gen, err := c.Registry()
	if err != nil {
		t.Fatalf("Registry: %v", err)
	}
	ids := make([]int, len(rows))
	for i, r := range rows {
		ids[i] = r.SyncID
	}
	return ids, gen
}

func testRegistry(t *testing.T, b Backend) {
	c := b.Open(t, "reg")
	if ids, gen := registryIDs(t, c); len(ids) != 0 || gen != 0 {
		t.Fatalf("a new registry holds %v at generation %d, want nothing at 0", ids, gen)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	first := queue.RegistryEdit{Put: []queue.SiteConfig{siteConfig(4, "s4"), siteConfig(2, "s2", "s3"), siteConfig(3, "s3")}}
	gen, err := c.ChangeRegistry(0, first, queue.RegistryChange{At: at, By: "uid 0, key 1 seq 7", What: "import 3 rows", Digest: "d1"})
	if err != nil || gen != 1 {
		t.Fatalf("ChangeRegistry = %d, %v; want 1, nil", gen, err)
	}
	rows, _, err := c.Registry()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(rows), fmt.Sprint([]queue.SiteConfig{siteConfig(2, "s2", "s3"), siteConfig(3, "s3"), siteConfig(4, "s4")}); got != want {
		t.Fatalf("rows = %s, want %s (by sync ID)", got, want)
	}
	if g, err := c.RegistryGeneration(); err != nil || g != 1 {
		t.Fatalf("RegistryGeneration = %d, %v; want 1", g, err)
	}

	// A change made against an older generation changes nothing.
	if _, err := c.ChangeRegistry(0, queue.RegistryEdit{Remove: []int{2}}, queue.RegistryChange{By: "late"}); !errors.Is(err, queue.ErrRegistryChanged) {
		t.Fatalf("a change at generation 0 of a registry at 1: %v, want ErrRegistryChanged", err)
	}
	// Refused changes change nothing either, each with its reason.
	for _, tc := range []struct {
		name string
		edit queue.RegistryEdit
		want string
	}{
		{"remove missing", queue.RegistryEdit{Remove: []int{9}}, "no such site"},
		{"user twice", queue.RegistryEdit{Put: []queue.SiteConfig{{SyncID: 5, User: "site2", PasswordHash: "h", Stores: []string{"x"}}}}, "unique"},
		{"sync id 1", queue.RegistryEdit{Put: []queue.SiteConfig{siteConfig(1, "x")}}, "above 1"},
		{"no store", queue.RegistryEdit{Put: []queue.SiteConfig{siteConfig(6)}}, "at least one store"},
		{"twice in one change", queue.RegistryEdit{Put: []queue.SiteConfig{siteConfig(6, "x")}, Remove: []int{6}}, "twice"},
		{"nothing", queue.RegistryEdit{}, "nothing"},
	} {
		if _, err := c.ChangeRegistry(1, tc.edit, queue.RegistryChange{By: "t"}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	if ids, gen := registryIDs(t, c); fmt.Sprint(ids) != "[2 3 4]" || gen != 1 {
		t.Fatalf("after refused changes: %v at %d, want [2 3 4] at 1", ids, gen)
	}

	// Replace one row, remove one, and swap two users within one change.
	swap := queue.RegistryEdit{Put: []queue.SiteConfig{siteConfig(2, "s9"), siteConfig(4, "s4"), siteConfig(5, "s5")}, Remove: []int{3}}
	swap.Put[1].User, swap.Put[2].User = "site5", "site4"
	if gen, err := c.ChangeRegistry(1, swap, queue.RegistryChange{At: at.Add(time.Minute), By: "uid 0", What: "edit", Digest: "d2"}); err != nil || gen != 2 {
		t.Fatalf("second change = %d, %v; want 2, nil", gen, err)
	}
	check := func(c queue.PrimaryStore) {
		t.Helper()
		rows, gen, err := c.Registry()
		if err != nil || gen != 2 {
			t.Fatalf("Registry: generation %d, %v; want 2", gen, err)
		}
		var got []string
		for _, r := range rows {
			got = append(got, fmt.Sprintf("%d:%s:%s", r.SyncID, r.User, strings.Join(r.Stores, ",")))
		}
		if want := "2:site2:s9 4:site5:s4 5:site4:s5"; strings.Join(got, " ") != want {
			t.Fatalf("rows = %s, want %s", strings.Join(got, " "), want)
		}
		log, err := c.RegistryLog(10)
		if err != nil {
			t.Fatal(err)
		}
		want := []queue.RegistryChange{
			{Generation: 2, At: at.Add(time.Minute), By: "uid 0", What: "edit", Digest: "d2", Put: 3, Removed: 1},
			{Generation: 1, At: at, By: "uid 0, key 1 seq 7", What: "import 3 rows", Digest: "d1", Put: 3},
		}
		if fmt.Sprint(log) != fmt.Sprint(want) {
			t.Fatalf("log = %+v\nwant %+v (newest first)", log, want)
		}
	}
	check(c)
	c.Close()
	check(b.Open(t, "reg"))
}

// testRegistryLogBounded: the change log keeps the last RegistryLogMax
// changes.
func testRegistryLogBounded(t *testing.T, b Backend) {
	if testing.Short() {
		t.Skip("makes over a thousand changes")
	}
	c := b.Open(t, "reglog")
	n := queue.RegistryLogMax + 5
	for i := range n {
		if _, err := c.ChangeRegistry(uint64(i), queue.RegistryEdit{Put: []queue.SiteConfig{siteConfig(2+i%3, "s")}}, queue.RegistryChange{By: "t", What: fmt.Sprint(i)}); err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
	}
	log, err := c.RegistryLog(n)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != queue.RegistryLogMax || log[0].Generation != uint64(n) || log[len(log)-1].Generation != uint64(n-queue.RegistryLogMax+1) {
		t.Fatalf("log holds %d entries, generations %d..%d; want %d, %d..%d", len(log), log[len(log)-1].Generation, log[0].Generation,
			queue.RegistryLogMax, n-queue.RegistryLogMax+1, n)
	}
}

// testRegistryLarge: a national registry is written and read in one
// change each way.
func testRegistryLarge(t *testing.T, b Backend) {
	c := b.Open(t, "reglarge")
	const n = 20_000
	put := make([]queue.SiteConfig, n)
	for i := range put {
		put[i] = siteConfig(i+2, fmt.Sprintf("store-%d", i+2))
	}
	if _, err := c.ChangeRegistry(0, queue.RegistryEdit{Put: put}, queue.RegistryChange{By: "t", What: "import"}); err != nil {
		t.Fatal(err)
	}
	remove := make([]int, 0, n/2)
	for i := 2; i < n+2; i += 2 {
		remove = append(remove, i)
	}
	if _, err := c.ChangeRegistry(1, queue.RegistryEdit{Remove: remove}, queue.RegistryChange{By: "t", What: "remove half"}); err != nil {
		t.Fatal(err)
	}
	ids, gen := registryIDs(t, c)
	if len(ids) != n/2 || gen != 2 || slices.ContainsFunc(ids, func(id int) bool { return id%2 == 0 }) {
		t.Fatalf("after removing the even sites: %d rows at generation %d, want %d odd ones at 2", len(ids), gen, n/2)
	}
}

// testQueueLengths: the lengths of every queue in one read are each
// site's QueueLen, acknowledged entries gone.
func testQueueLengths(t *testing.T, b Backend) {
	c := b.Open(t, "qlens")
	accept(t, c, 2, inbound("e-1", storeRec("item", "a", "s1", 1)), inbound("e-2", storeRec("item", "b", "s1", 1)))
	ackAll(t, c, 4)
	got, err := c.QueueLengths()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "map[3:2]" {
		t.Errorf("QueueLengths = %v, want map[3:2] (site 4 acknowledged, 2 pushed, 5 holds nothing)", got)
	}
	for site := 2; site <= 5; site++ {
		if n := c.QueueLen(site); n != got[site] {
			t.Errorf("site %d: QueueLen %d, QueueLengths says %d", site, n, got[site])
		}
	}
}
