//go:build linux

package queue

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

// limitFileSize makes writes beyond max bytes fail with EFBIG (as a full
// disk fails with ENOSPC) until the test ends. Go ignores SIGXFSZ.
func limitFileSize(t *testing.T, max uint64) (restore func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skip("getrlimit:", err)
	}
	lim := old
	lim.Cur = max
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skip("setrlimit:", err)
	}
	done := false
	restore = func() {
		if !done {
			done = true
			syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
		}
	}
	t.Cleanup(restore)
	return restore
}

func bigRecord(id string, n int) Record {
	return rec("item", id, map[string]any{StoreField: "s1", "n": n, "pad": strings.Repeat("x", 10000)})
}

// A full disk refuses the write with ErrDiskFull, changes nothing, and the
// next write after space returns succeeds.
func TestLocal_DiskFull(t *testing.T) {
	path := tempPath(t, "sat.db")
	l := openLocal(t, path, LocalOptions{})
	mustWrite(t, l, storeRec("item", "a", "s1", 1))
	restore := limitFileSize(t, uint64(fileSize(t, path))+2000)
	_, err := l.Write(bigRecord("b", 1))
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Write on a full disk: %v, want ErrDiskFull", err)
	}
	if _, ok, _ := l.Get("item", "b"); ok || l.OutboxLen() != 1 || l.Count() != 1 {
		t.Fatalf("refused write changed state: outbox %d count %d", l.OutboxLen(), l.Count())
	}
	restore()
	e := mustWrite(t, l, bigRecord("b", 2))
	l.Close()
	l = openLocal(t, path, LocalOptions{})
	if r, ok, _ := l.Get("item", "b"); !ok || dataN(t, r) != 2 || l.OutboxLen() != 2 {
		t.Fatalf("write after space returned: ok %v outbox %d", ok, l.OutboxLen())
	}
	if es := must(l.Outbox(0, 0)); es[1].SyncOutID != e.SyncOutID {
		t.Fatalf("outbox = %+v", es)
	}
}

// A push whose intent is durable but whose apply hits a full disk is
// applied exactly once: before the next change, and the retried push is a
// duplicate.
func TestCentral_DiskFullDuringApply(t *testing.T) {
	path := tempPath(t, "pri.db")
	c := openCentral(t, path, CentralOptions{})
	batch := []Inbound{inbound("e-1", bigRecord("a", 1))}
	// The intent (~10 kB) fits; the apply (record, two queue entries) does not.
	restore := limitFileSize(t, uint64(fileSize(t, path))+15000)
	if _, err := c.Accept(2, batch, sites); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Accept on a full disk: %v, want ErrDiskFull", err)
	}
	var inbox int
	c.st.view(func(tx *buntTx) error {
		return tx.AscendKeys(inboxPrefix+"*", func(k, v string) bool { inbox++; return true })
	})
	if c.QueueLen(3) != 0 || inbox != 1 {
		t.Fatalf("after a failed apply: QueueLen(3) = %d, %d intents (want 0, 1)", c.QueueLen(3), inbox)
	}
	restore()
	res, err := c.Accept(2, batch, sites)
	if err != nil || res.Accepted != 0 || res.Duplicate != 1 {
		t.Fatalf("retried Accept = %+v, %v; want one duplicate", res, err)
	}
	for _, site := range []int{3, 4} {
		if n := strings.Count(queued(t, c, site), "="); n != 1 {
			t.Fatalf("site %d holds %d entries, want 1", site, n)
		}
	}
	c.Close()
	c = openCentral(t, path, CentralOptions{})
	if c.QueueLen(3) != 1 || c.QueueLen(4) != 1 {
		t.Fatalf("after reopen: %d, %d", c.QueueLen(3), c.QueueLen(4))
	}
}
