package queue

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"testing"
	"time"
)

// stages blocks the online compaction's goroutine at each stage until the
// test has written what it wants there.
type stages struct {
	at      chan string
	release chan struct{}
}

func hookStages(t *testing.T) *stages {
	s := &stages{at: make(chan string), release: make(chan struct{})}
	compactHook = func(stage string) { s.at <- stage; <-s.release }
	t.Cleanup(func() { compactHook = nil })
	return s
}

// next waits for the goroutine to reach stage.
func (s *stages) next(t *testing.T, stage string) {
	t.Helper()
	select {
	case got := <-s.at:
		if got != stage {
			t.Fatalf("compaction at %q, want %q", got, stage)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("compaction never reached %q", stage)
	}
}

// churn writes until an online compaction has started.
func churn(t *testing.T, c *Central) {
	t.Helper()
	for i := 0; c.st.pending == nil; i++ {
		if i > 20000 {
			t.Fatal("no compaction started")
		}
		if _, err := c.Write(rec("unit", fmt.Sprint(i%20), map[string]any{"n": i, "pad": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}), sites); err != nil {
			t.Fatal(err)
		}
	}
}

// unlocked runs fn and fails the test if it waits for the compaction: the
// owner's lock must be free while the goroutine works.
func unlocked(t *testing.T, what string, fn func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s waited for the compaction", what)
	}
}

// TestCentral_OnlineCompaction protects the primary's requests from
// compaction: writes go on while the live items are copied and loaded, the
// writes made at each stage end up in the new file (copied from the
// datafile's tail, or replayed at the swap), and the swap changes nothing a
// reader can see, before or after a reopen.
func TestCentral_OnlineCompaction(t *testing.T) {
	path := fastDir(t) + "/pri.db"
	c := openCentral(t, path, CentralOptions{})
	c.st.minCompact = 8 << 10
	st := hookStages(t)
	churn(t, c)

	st.next(t, "copied")
	unlocked(t, "writes while the live items are copied", func() error {
		for i := range 30 {
			if _, err := c.Write(rec("unit", fmt.Sprint(i), map[string]any{"n": 1000 + i}), sites); err != nil {
				return err
			}
		}
		_, err := c.Write(del("unit", "25"), sites)
		return err
	})
	st.release <- struct{}{}
	st.next(t, "synced")
	unlocked(t, "writes while the copy is loaded", writeUnits(c, sites, 2000))
	st.release <- struct{}{}

	before := snapshot(t, c.st)
	sizeBefore := fileSize(t, path)
	c.mu.Lock()
	c.st.finishCompaction(true)
	c.mu.Unlock()
	if c.st.compactions != 1 {
		t.Fatalf("%d compactions, want 1", c.st.compactions)
	}
	if after := snapshot(t, c.st); !maps.Equal(before, after) {
		t.Fatalf("the swap changed what readers see: %d keys before, %d after", len(before), len(after))
	}
	if size := fileSize(t, path); size >= sizeBefore/2 {
		t.Fatalf("compaction left %d of %d bytes", size, sizeBefore)
	}
	for id, want := range map[string]int{"0": 2000, "3": 2003, "9": 2009, "10": 1010, "29": 1029} {
		if r, ok, err := c.Get("unit", id); err != nil || !ok || dataN(t, r) != want {
			t.Errorf("unit %s = %s (%v, %v), want n %d", id, r.Data, ok, err, want)
		}
	}
	for _, id := range []string{"25", "4"} {
		if r, ok, _ := c.Get("unit", id); ok && r.Action != Delete {
			t.Errorf("unit %s deleted at a stage of the compaction is back: %s", id, r.Data)
		}
	}
	checkCentralConsistent(t, c, centralSnapshot(t, c), checkpoint{}, "after the swap")
	if _, err := c.Write(rec("unit", "new", map[string]any{"n": 1}), sites); err != nil {
		t.Fatal(err)
	}
	want := centralSnapshot(t, c) // without the intents a reopen applies
	c.Close()
	c = openCentral(t, path, CentralOptions{})
	if got := centralSnapshot(t, c); !maps.Equal(want, got) {
		t.Fatalf("after a reopen: %d keys, want %d", len(got), len(want))
	}
}

// A commit that fails while the copy is made spoils it: the compaction is
// dropped, the datafile keeps every answered write, and a later size check
// compacts again.
func TestCentral_OnlineCompactionSpoiledByAFailedCommit(t *testing.T) {
	path := fastDir(t) + "/pri.db"
	c := openCentral(t, path, CentralOptions{})
	c.st.minCompact = 8 << 10
	st := hookStages(t)
	churn(t, c)
	st.next(t, "copied")
	restore := limitFileSize(t, uint64(fileSize(t, path))+2000)
	if _, err := c.Write(bigRecord("big", 1), sites); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("write on a full disk: %v", err)
	}
	restore()
	st.release <- struct{}{}
	st.next(t, "synced")
	st.release <- struct{}{}
	c.mu.Lock()
	c.st.finishCompaction(true)
	c.mu.Unlock()
	if c.st.compactions != 0 || c.st.pending != nil {
		t.Fatalf("a spoiled compaction was kept (%d compactions)", c.st.compactions)
	}
	if _, err := c.Write(rec("unit", "after", map[string]any{"n": 7}), sites); err != nil {
		t.Fatal(err)
	}
	compactHook = nil
	churn(t, c) // compacts again
	c.mu.Lock()
	c.st.finishCompaction(true)
	c.mu.Unlock()
	if c.st.compactions != 1 {
		t.Fatalf("%d compactions after the spoiled one, want 1", c.st.compactions)
	}
	c.Close()
	c = openCentral(t, path, CentralOptions{})
	if r, ok, _ := c.Get("unit", "after"); !ok || dataN(t, r) != 7 {
		t.Fatal("a write answered after the spoiled compaction is lost")
	}
	if _, ok, _ := c.Get("item", "big"); ok {
		t.Fatal("the refused write is in the datafile")
	}
}

// Closing the store while a compaction runs stops it and leaves no temp file.
func TestCentral_CloseDuringOnlineCompaction(t *testing.T) {
	path := fastDir(t) + "/pri.db"
	c := openCentral(t, path, CentralOptions{})
	c.st.minCompact = 8 << 10
	st := hookStages(t)
	churn(t, c)
	st.next(t, "copied")
	go func() { st.release <- struct{}{} }()
	c.Close()
	if _, err := os.Stat(path + compactSuffix); err == nil {
		t.Fatal("temp file left after close")
	}
	c = openCentral(t, path, CentralOptions{})
	if _, ok, _ := c.Get("unit", "1"); !ok {
		t.Fatal("records lost")
	}
}

// Writes made while the copy is loaded are replayed on the goroutine, not
// all at the swap under the owner's lock (under a heavy ingest they are
// tens of MB): the copy it hands over already reaches past them, and the
// new file holds them.
func TestCentral_OnlineCompactionReplaysOnTheGoroutine(t *testing.T) {
	path := fastDir(t) + "/pri.db"
	c := openCentral(t, path, CentralOptions{})
	c.st.minCompact = 8 << 10
	saved := catchUpSmall
	catchUpSmall = 0
	t.Cleanup(func() { catchUpSmall = saved })
	st := hookStages(t)
	churn(t, c)
	st.next(t, "copied")
	st.release <- struct{}{}
	st.next(t, "synced")
	unlocked(t, "writes while the copy is loaded", writeUnits(c, sites, 3000))
	written := fileSize(t, path)
	st.release <- struct{}{}
	st.next(t, "replayed")
	unlocked(t, "a write after a round", func() error {
		_, err := c.Write(rec("unit", "late", map[string]any{"n": 1}), sites)
		return err
	})
	compactHook = func(string) {} // no further stops
	st.release <- struct{}{}

	c.mu.Lock()
	res := <-c.st.pending.done
	if res.err != nil || res.upTo < written {
		c.mu.Unlock()
		t.Fatalf("the copy reaches offset %d (%v); the writes while it loaded end at %d", res.upTo, res.err, written)
	}
	c.st.pending.done <- res
	c.st.finishCompaction(true)
	c.mu.Unlock()
	if c.st.compactions != 1 || c.st.grown != 0 {
		t.Fatalf("%d compactions, want 1; %d bytes of new keys counted after it, want 0 (the new file holds them)", c.st.compactions, c.st.grown)
	}
	c.Close()
	c = openCentral(t, path, CentralOptions{})
	for id, want := range map[string]int{"0": 3000, "9": 3009, "late": 1} {
		if r, ok, err := c.Get("unit", id); err != nil || !ok || dataN(t, r) != want {
			t.Errorf("unit %s = %s (%v, %v), want n %d", id, r.Data, ok, err, want)
		}
	}
	if r, ok, _ := c.Get("unit", "4"); ok {
		t.Errorf("unit 4, deleted while the copy loaded, is back: %s", r.Data)
	}
	checkCentralConsistent(t, c, centralSnapshot(t, c), checkpoint{}, "after the reopen")
}

// writeUnits writes units 0–9 with n = base+i and deletes unit 4.
func writeUnits(c *Central, sites Router, base int) func() error {
	return func() error {
		for i := range 10 {
			if _, err := c.Write(rec("unit", fmt.Sprint(i), map[string]any{"n": base + i}), sites); err != nil {
				return err
			}
		}
		_, err := c.Write(del("unit", "4"), sites)
		return err
	}
}
