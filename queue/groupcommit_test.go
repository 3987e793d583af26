package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// pushesInOneGroup holds Central's lock while every push is queued, in the
// order given, then lets them all commit as one group; it returns each
// push's answer.
func pushesInOneGroup(t *testing.T, c *Central, pushes []pushRequest) []pushRequest {
	t.Helper()
	out := make([]pushRequest, len(pushes))
	var wg sync.WaitGroup
	c.mu.Lock()
	for i, p := range pushes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].res, out[i].err = c.Accept(p.origin, p.in, p.router)
		}()
		for deadline := time.Now().Add(5 * time.Second); ; { // keep the order
			c.group.mu.Lock()
			n := len(c.group.waiting)
			c.group.mu.Unlock()
			if n == i+1 {
				break
			}
			if time.Now().After(deadline) {
				c.mu.Unlock()
				t.Fatalf("push %d never queued", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	c.mu.Unlock()
	wg.Wait()
	return out
}

// Concurrent pushes from different sites share one group: two fsynced
// commits in all (intents, then their application), not two per push;
// each sees the ones before it (the last change of a record wins, and
// supersedes the earlier pusher's queue entry only for itself).
func TestCentral_GroupCommit_SharesCommits(t *testing.T) {
	c := openCentral(t, tempPath(t, "pri.db"), CentralOptions{})
	before, groups := c.st.updates, c.GroupCommits()
	got := pushesInOneGroup(t, c, []pushRequest{
		{origin: 2, in: []Inbound{inbound("e-1", storeRec("item", "a", "s1", 1)), inbound("e-2", storeRec("item", "b", "s1", 1))}, router: sites},
		{origin: 3, in: []Inbound{inbound("f-1", storeRec("item", "a", "s1", 2))}, router: sites},
		{origin: 5, in: []Inbound{inbound("g-1", storeRec("item", "z", "s2", 1))}, router: sites},
	})
	for i, p := range got {
		if p.err != nil || p.res.Accepted != []int{2, 1, 1}[i] {
			t.Fatalf("push %d: %+v, %v", i, p.res, p.err)
		}
	}
	if n, g := c.st.updates-before, c.GroupCommits()-groups; n != 2 || g != 1 {
		t.Fatalf("%d commits in %d groups for three pushes, want 2 in 1", n, g)
	}
	if got, want := queued(t, c, 2), "a=2"; got != want {
		t.Fatalf("site 2 queue = %q, want %q", got, want)
	}
	if got, want := queued(t, c, 3), "b=1"; got != want {
		t.Fatalf("site 3 queue = %q, want %q", got, want)
	}
	if got, want := queued(t, c, 4), "b=1,a=2"; got != want {
		t.Fatalf("site 4 queue = %q, want %q", got, want)
	}
	// The same push again is a duplicate, grouped or not.
	again := pushesInOneGroup(t, c, []pushRequest{
		{origin: 3, in: []Inbound{inbound("f-1", storeRec("item", "a", "s1", 2))}, router: sites},
		{origin: 5, in: []Inbound{inbound("g-1", storeRec("item", "z", "s2", 1))}, router: sites},
	})
	for i, p := range again {
		if p.err != nil || p.res.Duplicate != 1 {
			t.Fatalf("push %d again: %+v, %v", i, p.res, p.err)
		}
	}
}

// A push refused while its group is decided (its destination queue is
// full) changes nothing and does not hold back the pushes around it, and
// the queue limit counts what the group's earlier pushes queued.
func TestCentral_GroupCommit_RefusedPushAlone(t *testing.T) {
	c := openCentral(t, tempPath(t, "pri.db"), CentralOptions{QueueMax: 2})
	got := pushesInOneGroup(t, c, []pushRequest{
		{origin: 2, in: []Inbound{inbound("e-1", storeRec("item", "a", "s1", 1)), inbound("e-2", storeRec("item", "b", "s1", 1))}, router: sites},
		{origin: 3, in: []Inbound{inbound("f-1", storeRec("item", "c", "s1", 1))}, router: sites}, // site 4 would hold 3
		{origin: 5, in: []Inbound{inbound("g-1", storeRec("item", "z", "s2", 1))}, router: sites},
	})
	if got[0].err != nil || got[0].res.Accepted != 2 {
		t.Fatalf("first push: %+v, %v", got[0].res, got[0].err)
	}
	if !errors.Is(got[1].err, ErrQueueFull) {
		t.Fatalf("push over the limit: %v, want ErrQueueFull", got[1].err)
	}
	if got[2].err != nil || got[2].res.Accepted != 1 {
		t.Fatalf("push after the refused one: %+v, %v", got[2].res, got[2].err)
	}
	if _, ok, _ := c.Get("item", "c"); ok {
		t.Fatal("the refused push changed the datafile")
	}
	if _, ok, _ := c.Get("item", "z"); !ok {
		t.Fatal("the push after the refused one is missing")
	}
	if got, want := queued(t, c, 4), "a=1,b=1"; got != want {
		t.Fatalf("site 4 queue = %q, want %q", got, want)
	}
}

// Two pushes of one site never share a group: the second is decided after
// the first is applied (its syncOutId marks come from the site's state).
func TestCentral_GroupCommit_OneGroupPerSitePush(t *testing.T) {
	c := openCentral(t, tempPath(t, "pri.db"), CentralOptions{})
	groups := c.GroupCommits()
	got := pushesInOneGroup(t, c, []pushRequest{
		{origin: 2, in: []Inbound{inbound("e-1", storeRec("item", "a", "s1", 1))}, router: sites},
		{origin: 2, in: []Inbound{inbound("e-2", storeRec("item", "a", "s1", 2))}, router: sites},
	})
	for i, p := range got {
		if p.err != nil || p.res.Accepted != 1 {
			t.Fatalf("push %d: %+v, %v", i, p.res, p.err)
		}
	}
	if g := c.GroupCommits() - groups; g != 2 {
		t.Fatalf("%d groups for two pushes of one site, want 2", g)
	}
	if got, want := queued(t, c, 3), "a=2"; got != want {
		t.Fatalf("site 3 queue = %q, want %q", got, want)
	}
}

// POWER LOSS in a group commit: a file cut at every byte of a group of two
// pushes opens with each push all or nothing on its own (a cut may keep
// one push's intent and lose the other's: neither was answered), every
// intent applied, and the queues consistent with the records.
func TestCentral_GroupCommit_PowerLossEveryOffset(t *testing.T) {
	dir := fastDir(t)
	path := filepath.Join(dir, "build.db")
	c := openCentral(t, path, CentralOptions{})
	for _, s := range []int{2, 3, 4, 5} {
		c.Pin(s, fmt.Sprintf("hw-%d", s))
	}
	c.Reconcile(sites.members(), sites)
	accept(t, c, 2, inbound("e-1", storeRec("item", "a", "s1", 1)))
	base := checkpoint{name: "base", end: fileSize(t, path), state: centralSnapshot(t, c), cur: c.maxCentral, gseq: c.version}
	got := pushesInOneGroup(t, c, []pushRequest{
		{origin: 2, in: []Inbound{inbound("e-2", storeRec("item", "p", "s1", 1)), inbound("e-3", storeRec("item", "a", "s1", 2))}, router: sites},
		{origin: 5, in: []Inbound{inbound("g-1", storeRec("item", "z", "s2", 1)), inbound("g-2", storeRec("item", "y", "s2", 1))}, router: sites},
	})
	for i, p := range got {
		if p.err != nil {
			t.Fatalf("push %d: %v", i, p.err)
		}
	}
	c.Close()
	full := must(os.ReadFile(path))
	offs := offsets(base.end, int64(len(full)))
	eachOffset(t, dir, offs, func(t *testing.T, path string, o int64) {
		c := openCutCentral(t, path, full, o)
		defer c.Close()
		where := fmt.Sprintf("cut at %d", o)
		checkCentralConsistent(t, c, centralSnapshot(t, c), base, where)
		n := func(id string) int {
			r, ok, err := c.Get("item", id)
			if err != nil {
				t.Fatalf("%s: Get %s: %v", where, id, err)
			}
			if !ok {
				return 0
			}
			return dataN(t, r)
		}
		first, second := n("p") == 1, n("z") == 1
		if first != (n("a") == 2) || second != (n("y") == 1) {
			t.Fatalf("%s: a push half applied: p=%d a=%d, z=%d y=%d", where, n("p"), n("a"), n("z"), n("y"))
		}
		if first {
			if q := queued(t, c, 3); q != "a=1,p=1,a=2" && q != "p=1,a=2" {
				t.Fatalf("%s: site 3 queue = %q", where, q)
			}
		} else if q := queued(t, c, 3); q != "a=1" {
			t.Fatalf("%s: site 3 queue without the push = %q", where, q)
		}
		if o == int64(len(full)) && !(first && second) {
			t.Fatalf("the whole file lacks a push: %v %v", first, second)
		}
	})
	t.Logf("%d offsets over %d bytes", len(offs), int64(len(full))-base.end)
}
