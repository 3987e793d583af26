package queue

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Shared by the power-loss tests: snapshots of a datafile after each
// operation, the values a cut may leave, and a sharded loop over offsets.

// fastDir is a directory on tmpfs when there is one: the tests reopen a file
// thousands of times and each repair fsyncs.
func fastDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "queue-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// rawState is every key and value of a datafile.
type rawState map[string]string

func snapshot(t testing.TB, st *store) rawState {
	t.Helper()
	out := rawState{}
	if err := st.view(func(tx *buntTx) error {
		return tx.Ascend("", func(k, v string) bool { out[k] = v; return true })
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkpoint is the file size and the state after an operation returned.
type checkpoint struct {
	name  string
	end   int64
	state rawState
	seq   uint64 // satellite: highest outbox seq handed out so far
	cur   uint64 // primary: highest cursor handed out so far
	gseq  uint64 // primary: highest gseq handed out so far
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// history is what a run of operations left after each of them, with, for
// every checkpoint c, the values each key may hold after a cut past c.
type history struct {
	cps     []checkpoint
	allowed []map[string]map[string]bool // [c][key][value or absent]
}

const absent = "\x00absent"

func newHistory(cps []checkpoint) *history {
	h := &history{cps: cps, allowed: make([]map[string]map[string]bool, len(cps))}
	for c := range cps {
		keys := map[string]bool{}
		for _, cp := range cps[c:] {
			for k := range cp.state {
				keys[k] = true
			}
		}
		m := map[string]map[string]bool{}
		for k := range keys {
			m[k] = map[string]bool{}
			for _, cp := range cps[c:] {
				if v, ok := cp.state[k]; ok {
					m[k][v] = true
				} else {
					m[k][absent] = true
				}
			}
		}
		h.allowed[c] = m
	}
	return h
}

// checkPrefix asserts that got is a state a power cut at offset could leave:
// every key holds the value it had after the last operation that completed
// before the cut, or a value a later operation gave it (that operation's
// commit was cut, and its commands land one by one). It returns the index
// of that last completed operation.
func (h *history) checkPrefix(t testing.TB, offset int64, got rawState) int {
	t.Helper()
	c := lastDone(h.cps, offset)
	allowed := h.allowed[c]
	for k, vals := range allowed {
		v, ok := got[k]
		if !ok {
			v = absent
		}
		if !vals[v] {
			t.Fatalf("cut at %d (after %q): key %s = %q, not a value it had after that point", offset, h.cps[c].name, k, v)
		}
	}
	for k, v := range got {
		if _, ok := allowed[k]; !ok {
			t.Fatalf("cut at %d (after %q): key %s = %q appeared from nowhere", offset, h.cps[c].name, k, v)
		}
	}
	return c
}

// lastDone is the index of the last checkpoint at or before offset.
func lastDone(cps []checkpoint, offset int64) int {
	c := 0
	for i, cp := range cps {
		if cp.end <= offset {
			c = i
		}
	}
	return c
}

// offsets lists the cut offsets to try: all of them, or a sample in -short.
func offsets(from, to int64) []int64 {
	var out []int64
	step := int64(1)
	if testing.Short() {
		step = 7
	}
	for o := from; o <= to; o += step {
		out = append(out, o)
	}
	if out[len(out)-1] != to {
		out = append(out, to)
	}
	return out
}

// eachOffset runs check for every offset, sharded over parallel subtests
// (one file per shard). It returns once all are done.
func eachOffset(t *testing.T, dir string, offs []int64, check func(t *testing.T, path string, o int64)) {
	shards := runtime.GOMAXPROCS(0)
	t.Run("cuts", func(t *testing.T) {
		for s := range shards {
			t.Run(fmt.Sprint(s), func(t *testing.T) {
				t.Parallel()
				path := filepath.Join(dir, fmt.Sprintf("cut%d.db", s))
				for i := s; i < len(offs); i += shards {
					check(t, path, offs[i])
				}
			})
		}
	})
}

// writeCut writes a damaged datafile and removes the copies earlier opens
// set aside.
func writeCut(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, m := range must(filepath.Glob(path + ".corrupt-*")) {
		os.Remove(m)
	}
}
