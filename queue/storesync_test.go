package queue

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// holdFsyncs makes every fsync of l's datafile wait until release is
// called; started receives a value as each one begins to wait.
func holdFsyncs(t *testing.T, l *Local) (started <-chan struct{}, release func()) {
	t.Helper()
	gate, begun := make(chan struct{}), make(chan struct{}, 64)
	setSyncHook(l, func() error {
		select {
		case begun <- struct{}{}:
		default:
		}
		<-gate
		return nil
	})
	var released bool
	release = func() {
		if !released {
			released = true
			close(gate)
		}
	}
	t.Cleanup(release)
	return begun, release
}

func setSyncHook(l *Local, hook func() error) {
	fs := l.st.fsync
	fs.mu.Lock()
	fs.hook = hook
	fs.mu.Unlock()
}

func within[T any](ch <-chan T, d time.Duration) (T, bool) {
	select {
	case v := <-ch:
		return v, true
	case <-time.After(d):
		var zero T
		return zero, false
	}
}

// TestLocal_answeredOnlyOnceDurable: the satellite fsyncs its datafile
// itself; a write is answered only once that fsync has returned, and no
// reader sees the write before then.
func TestLocal_answeredOnlyOnceDurable(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	mustWrite(t, l, storeRec("item", "before", "s1", 0))
	started, release := holdFsyncs(t, l)

	wrote := make(chan error, 1)
	go func() { _, err := l.Write(storeRec("item", "a", "s1", 1)); wrote <- err }()
	if _, ok := within(started, 5*time.Second); !ok {
		t.Fatal("no fsync began for the write")
	}
	if _, ok := within(wrote, 100*time.Millisecond); ok {
		t.Fatal("a write was answered before its fsync returned")
	}
	type got struct {
		found bool
		err   error
	}
	read := make(chan got, 1)
	go func() { _, found, err := l.Get("item", "a"); read <- got{found, err} }()
	if _, ok := within(read, 100*time.Millisecond); ok {
		t.Fatal("a reader was answered while the write it could see was on its way to the disk")
	}
	release()
	if err, ok := within(wrote, 5*time.Second); !ok || err != nil {
		t.Fatalf("write after its fsync: answered %v, err %v", ok, err)
	}
	if g, ok := within(read, 5*time.Second); !ok || g.err != nil || !g.found {
		t.Fatalf("reader after the fsync: answered %v, found %v, err %v", ok, g.found, g.err)
	}
}

// TestLocal_failedFsyncEndsTheDatafile: an fsync that fails is not dropped
// (BuntDB's own drops it): the write it covered is refused, and so is every
// later call, until a reopen rereads what the disk holds.
func TestLocal_failedFsyncEndsTheDatafile(t *testing.T) {
	path := tempPath(t, "sat.db")
	l, err := OpenLocal(path, LocalOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, l, storeRec("item", "kept", "s1", 0))
	setSyncHook(l, func() error { return errors.New("input/output error") })

	if _, err := l.Write(storeRec("item", "lost", "s1", 1)); err == nil || !strings.Contains(err.Error(), "cannot fsync") {
		t.Fatalf("write under a failing fsync: err %v, want it refused with the fsync's error", err)
	}
	if _, err := l.Write(storeRec("item", "later", "s1", 2)); err == nil || !strings.Contains(err.Error(), "restart the agent") {
		t.Fatalf("write after a failed fsync: err %v, want the datafile refused until a restart", err)
	}
	if _, _, err := l.Get("item", "kept"); err == nil {
		t.Fatal("read after a failed fsync answered: what memory holds may not be on disk")
	}
	l.Close()

	l2 := openLocal(t, path, LocalOptions{})
	if _, found, err := l2.Get("item", "kept"); err != nil || !found {
		t.Fatalf("after a reopen: kept found %v, err %v", found, err)
	}
	if _, err := l2.Write(storeRec("item", "again", "s1", 3)); err != nil {
		t.Fatalf("write after a reopen: %v", err)
	}
}

// TestLocal_fsyncFollowsCompaction: a compaction renames a new file over
// the datafile; the descriptor the store fsyncs must follow it, or every
// later fsync would flush the old, unlinked file.
func TestLocal_fsyncFollowsCompaction(t *testing.T) {
	path := tempPath(t, "sat.db")
	l := openLocal(t, path, LocalOptions{})
	for i := range 50 {
		mustWrite(t, l, storeRec("item", "r", "s1", i)) // garbage to compact
	}
	l.mu.Lock()
	err := l.st.compact()
	l.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if l.st.compactions != 1 {
		t.Fatalf("compactions = %d, want 1", l.st.compactions)
	}
	mustWrite(t, l, storeRec("item", "after", "s1", 1))
	onDisk, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	fs := l.st.fsync
	fs.mu.Lock()
	synced, err := fs.f.Stat()
	fs.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(onDisk, synced) {
		t.Fatal("after a compaction the store fsyncs a file that is no longer the datafile")
	}
}
