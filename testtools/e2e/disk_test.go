package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"syncagent/agent/control"
)

// Limits and a full disk, through whole agents: a local write that cannot
// be kept is refused with a clear error (never dropped silently), nothing
// is half-written, sync keeps draining, and the agent recovers by itself.

func stock(store string, qty int) string {
	return fmt.Sprintf(`{"store_ID":%q,"qty":%d}`, store, qty)
}

// refusedWith fails unless err is the local API's refusal with status and
// a message containing each of words.
func refusedWith(t *testing.T, what string, err error, status int, words ...string) {
	t.Helper()
	var ce *control.Error
	if !errors.As(err, &ce) || ce.Status != status {
		t.Fatalf("%s: %v, want a refusal with HTTP %d", what, err, status)
	}
	for _, w := range words {
		if !strings.Contains(ce.Msg, w) {
			t.Errorf("%s: message %q does not say %q", what, ce.Msg, w)
		}
	}
}

// TestLimits_outboxFull protects [limits] outbox_max_records: at the limit
// a new local write is refused with 507 and a message saying why and what
// to do, nothing of it is kept; a change to a record already waiting is
// still taken (it adds no entry); sync drains the outbox and writes are
// taken again; every accepted write arrives once.
func TestLimits_outboxFull(t *testing.T) {
	s := newAgents(t, nil, map[string]int{"sat-a": 5})
	a, b := s.get("sat-a"), s.get("sat-b")
	a.mustSync(t)
	b.mustSync(t)
	for i := 0; i < 5; i++ {
		a.mustPut(t, "stock", fmt.Sprintf("r%d", i), stock("shared", i))
	}
	err := a.put(t, "stock", "r5", stock("shared", 5))
	refusedWith(t, "6th write at the limit", err, http.StatusInsufficientStorage, "outbox is full", "limit 5", "retry after the next sync")
	if _, err := a.client.GetRecord(t.Context(), "stock", "r5"); err == nil {
		t.Fatal("a refused write was kept")
	}
	a.mustPut(t, "stock", "r0", stock("shared", 100)) // already waiting: replaces its entry
	if st := a.status(t); st.OutboxLength != 5 || st.Records != 5+storeRows {
		t.Fatalf("at the limit: outbox %d, records %d; want 5, 5", st.OutboxLength, st.Records-storeRows)
	}
	if c := a.mustSync(t); c.Pushed != 5 {
		t.Fatalf("pushed %d, want 5", c.Pushed)
	}
	for i := 5; i < 10; i++ {
		a.mustPut(t, "stock", fmt.Sprintf("r%d", i), stock("shared", i))
	}
	refusedWith(t, "11th write", a.put(t, "stock", "r10", stock("shared", 10)), http.StatusInsufficientStorage, "outbox is full")
	a.mustSync(t)
	b.mustSync(t)
	got := b.records(t, "stock")
	if len(got) != 10 || got["r0"] != stock("shared", 100) || got["r9"] != stock("shared", 9) {
		t.Errorf("sat-b holds %d records (r0 %s): %v", len(got), got["r0"], got)
	}
	if n := s.queueOf(t, "sat-b"); n != 0 {
		t.Errorf("sat-b's queue = %d after its sync, want 0", n)
	}
}

// smallDisk mounts a tmpfs of size bytes at a new directory for the test
// (root only; skipped otherwise) and returns it.
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("full-disk test: needs root to mount a small tmpfs (run as root, e.g. in CI's container)")
	}
	dir := filepath.Join(t.TempDir(), "small-disk")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("full-disk test: cannot mount a tmpfs (%v: %s); needs CAP_SYS_ADMIN", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a ballast file until dir's file system is full and returns
// its path; removing it gives the space back.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "ballast")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return path
			}
			t.Fatal(err)
		}
	}
}

// TestDiskFull_satellite protects a satellite whose state directory fills
// up: a write is refused with 507 and says so, nothing is half-written
// (also after a restart), the agent keeps running, pulls are not
// acknowledged while they cannot be kept, and once space returns writes
// and sync work again without a restart, each record arriving once.
func TestDiskFull_satellite(t *testing.T) {
	disk := smallDisk(t, 4<<20)
	s := newAgents(t, map[string]string{"sat-a": filepath.Join(disk, "state")}, nil)
	a, b := s.get("sat-a"), s.get("sat-b")
	a.mustSync(t)
	b.mustSync(t)
	for i := 0; i < 20; i++ {
		a.mustPut(t, "stock", fmt.Sprintf("r%d", i), stock("shared", i))
	}
	a.mustSync(t)

	ballast := fill(t, disk)
	big := fmt.Sprintf(`{"store_ID":"shared","note":%q}`, strings.Repeat("n", 8<<10))
	refusedWith(t, "new record on a full disk", a.put(t, "stock", "full-1", big), http.StatusInsufficientStorage, "no space left", "nothing was changed")
	refusedWith(t, "update on a full disk", a.put(t, "stock", "r3", big), http.StatusInsufficientStorage, "no space left")
	if _, err := a.client.GetRecord(t.Context(), "stock", "full-1"); err == nil {
		t.Error("a write refused for lack of space was kept")
	}
	if r, err := a.client.GetRecord(t.Context(), "stock", "r3"); err != nil || string(r.Data) != stock("shared", 3) {
		t.Errorf("r3 after a refused update: %s %v", r.Data, err)
	}
	if st := a.status(t); st.OutboxLength != 0 || st.Records != 20+storeRows {
		t.Errorf("on a full disk: outbox %d, records %d; want 0, 20", st.OutboxLength, st.Records-storeRows)
	}
	// Records for sat-a arrive meanwhile; they cannot be kept, so they are
	// not acknowledged and stay queued on the primary.
	bigB := func(i int) string {
		return fmt.Sprintf(`{"store_ID":"shared","qty":%d,"note":%q}`, i, strings.Repeat("b", 8<<10))
	}
	for i := 0; i < 3; i++ {
		b.mustPut(t, "stock", fmt.Sprintf("b%d", i), bigB(i))
	}
	b.mustSync(t)
	if _, err := a.sync(t); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("sat-a's cycle on a full disk: %v, want a failure that says no space left", err)
	}
	if n := s.queueOf(t, "sat-a"); n != 3 {
		t.Errorf("sat-a's queue = %d after a pull it could not keep, want 3", n)
	}
	if got := a.records(t, "stock"); len(got) != 20 {
		t.Errorf("sat-a holds %d records after a failed apply, want 20", len(got))
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	a.mustPut(t, "stock", "full-1", big) // no restart: space is back, writes are taken
	a.mustSync(t)
	b.mustSync(t)
	if n := s.queueOf(t, "sat-a"); n != 0 {
		t.Errorf("sat-a's queue = %d once space returned, want 0", n)
	}
	got := a.records(t, "stock")
	if len(got) != 24 || got["b2"] != bigB(2) || got["full-1"] != big {
		t.Errorf("sat-a holds %d records, want 24 (20 own, full-1, b0..b2)", len(got))
	}
	if got := b.records(t, "stock"); len(got) != 24 || got["full-1"] != big {
		t.Errorf("sat-b holds %d records, want 24", len(got))
	}
	a.stop() // and the datafile opens whole after a restart
	a.start()
	if st := a.status(t); st.Records != 24+storeRows || st.OutboxLength != 0 {
		t.Errorf("after a restart: records %d, outbox %d; want 24, 0", st.Records-storeRows, st.OutboxLength)
	}
}

// TestDiskFull_primary protects the primary's full disk: a push is refused
// with 503 storage_error, the satellite keeps the record in its outbox (a
// lone record is not set aside for it), and once space returns it is
// pushed and delivered once.
func TestDiskFull_primary(t *testing.T) {
	disk := smallDisk(t, 4<<20)
	s := newAgents(t, map[string]string{"primary": filepath.Join(disk, "state")}, nil)
	a, b := s.get("sat-a"), s.get("sat-b")
	a.mustSync(t)
	b.mustSync(t)
	ballast := fill(t, disk)
	a.mustPut(t, "stock", "lone", fmt.Sprintf(`{"store_ID":"shared","note":%q}`, strings.Repeat("n", 8<<10)))
	for i := 0; i < 3; i++ {
		_, err := a.sync(t)
		if err == nil || !strings.Contains(err.Error(), "storage_error") {
			t.Fatalf("push to a primary with a full disk: %v, want storage_error", err)
		}
	}
	if st := a.status(t); st.OutboxLength != 1 || st.SetAside != 0 {
		t.Fatalf("after pushes refused for the primary's disk: outbox %d, set aside %d; want 1, 0", st.OutboxLength, st.SetAside)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	if c := a.mustSync(t); c.Pushed != 1 {
		t.Errorf("pushed %d once the primary has space, want 1", c.Pushed)
	}
	b.mustSync(t)
	if got := b.records(t, "stock"); len(got) != 1 {
		t.Errorf("sat-b holds %d records, want 1", len(got))
	}
	if n := s.queueOf(t, "sat-b"); n != 0 {
		t.Errorf("sat-b's queue = %d, want 0", n)
	}
}
