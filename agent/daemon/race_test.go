package daemon

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReload_raceDuringCyclesAndStartup protects prefs changes from racing
// what runs: the prefs file is rewritten and reloaded without pause (through
// the file watch and the local API) while the agent starts, serves local API
// calls and runs cycles against two primaries. Under -race this used to
// flag the control socket serving before the sync loop was set, and a reload
// swapping the satellite's request sizers under a running cycle. At the end
// the last prefs written are the ones in force.
func TestReload_raceDuringCyclesAndStartup(t *testing.T) {
	b := newBox(t)
	a, other := newFakePrimary(t), newFakePrimary(t)
	base := satellite12(a.url())
	b.write(b.render(base))
	b.start()
	b.openWindow(base) // kept in the ledger: any locked change applies, also at the next start
	b.stop()

	variant := func(i int) spec {
		s := base
		s.rows = slices.Clone(base.rows)
		s.interval = 1 + i%5
		s.requestSize = []string{"", "3", "50"}[i%3]
		s.stores = [][]string{{"a"}, {"a", "b"}}[i%2]
		s.rows[0].url = []string{a.url(), other.url()}[(i/2)%2]
		return s
	}
	writeAtomically := func(text string) {
		tmp := b.prefs + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o644); err == nil {
			os.Rename(tmp, b.prefs)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	loop := func(f func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				f(i)
			}
		}()
	}
	ctx := context.Background()
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 10*time.Second) }
	// The prefs change all the time, from before the agent starts.
	loop(func(i int) {
		writeAtomically(b.render(variant(i)))
		if i%3 == 0 {
			c, cancel := short()
			b.client.Reload(c)
			cancel()
		}
		time.Sleep(time.Duration(3+i%7) * time.Millisecond)
	})
	// Local API calls from before the agent serves.
	loop(func(i int) {
		c, cancel := short()
		defer cancel()
		b.client.Status(c)
		b.client.Sites(c)
		b.client.History(c)
		if i%5 == 0 {
			b.client.Check(c)
		}
		time.Sleep(time.Millisecond)
	})
	time.Sleep(30 * time.Millisecond)
	b.start()
	// Cycles, one after another and on request.
	loop(func(i int) {
		c, cancel := short()
		defer cancel()
		b.client.Sync(c, i%4 == 3)
	})
	loop(func(i int) {
		c, cancel := short()
		defer cancel()
		b.client.PutRecord(c, "stock", strconv.Itoa(i%20), []byte(`{"store_ID":"a"}`))
		time.Sleep(2 * time.Millisecond)
	})
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("requests to the primaries: %d and %d; prefs applied %d times", a.count(), other.count(), strings.Count(b.logged(), "prefs applied"))

	last := variant(7) // request_size 3, stores a and b, the other primary
	b.write(b.render(last))
	if r := b.reload(); r.State != "ok" {
		t.Fatalf("final reload: %s", r.State)
	}
	n := other.count()
	if c := b.sync(); c.Error != "" {
		t.Fatalf("sync after the storm: %s", c.Error)
	}
	calls, _ := other.since(n)
	if len(calls) == 0 {
		t.Fatal("the final prefs' primary got no request")
	}
	for _, c := range calls {
		if c.limit != "" && c.limit != "3" {
			t.Errorf("%s with limit %s, want the final request_size 3", c.path, c.limit)
		}
	}
	st := b.status()
	if st.PrimaryURL != other.url() || st.Interval != last.interval2() || st.RequestSize != "3" || st.Prefs.Digest != b.digest(last) {
		t.Errorf("status after the storm: url %s interval %s size %s", st.PrimaryURL, st.Interval, st.RequestSize)
	}
}

func (s spec) interval2() string { return (time.Duration(s.interval) * time.Minute).String() }
