package queue

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// These tests cut a datafile at every byte offset inside its last
// transactions (a power cut during a commit), or append garbage, or damage
// its middle, and reopen it.

// buildLocalHistory runs a satellite through every kind of commit and records a
// checkpoint after each.
func buildLocalHistory(t *testing.T, path string) ([]checkpoint, []byte) {
	l := openLocal(t, path, LocalOptions{})
	for i := range 4 {
		mustWrite(t, l, storeRec("item", fmt.Sprintf("base%d", i), "s1", i))
	}
	l.MarkPushed(must(l.Outbox(2, 0)))
	l.SetCursor("central", 7)
	var cps []checkpoint
	mark := func(name string) {
		checkPending(t, l, name)
		cps = append(cps, checkpoint{name: name, end: fileSize(t, path), state: snapshot(t, l.st), seq: l.nextSeq - 1})
	}
	mark("base")
	step := func(name string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		mark(name)
	}
	_, err := l.Write(storeRec("item", "new", "s1", 1))
	step("write new", err)
	_, err = l.Write(storeRec("item", "base3", "s1", 33))
	step("write coalesced", err)
	_, err = l.WriteMany([]Record{storeRec("item", "m1", "s1", 1), storeRec("item", "m2", "s1", 2), storeRec("name", "m3", "s1", 3)})
	step("write many", err)
	_, err = l.Write(del("item", "new"))
	step("delete", err)
	step("mark pushed", l.MarkPushed(must(l.Outbox(3, 0))))
	_, err = l.Apply([]Record{storeRec("item", "r1", "s1", 1), storeRec("item", "m2", "s1", 99), del("item", "base0"), storeRec("item", "base1", "s1", 11)})
	step("apply", err)
	step("set aside", l.SetAside(must(l.Outbox(1, 0))[0], "refused"))
	_, err = l.Requeue(func(r Record) bool { return strings.HasPrefix(r.ID, "base") })
	step("requeue", err)
	step("cursor", l.SetCursor("central", 8))
	_, err = l.Write(Record{Table: "item", ID: "r1", Action: Merge, Data: []byte(`{"mergeIdToKeep":"r1","mergeIdToDelete":"base1"}`)})
	step("merge", err)
	as := must(l.Aside())
	step("retry aside", l.RetryAside(as[0].Record.Table, as[0].Record.ID))
	// A clean re-initialisation: a new generation, a delivery, the sweep.
	step("set generation", l.SetGeneration(1))
	_, err = l.Apply([]Record{storeRec("item", "m2", "s1", 100), storeRec("item", "base2", "s1", 22)})
	step("apply new generation", err)
	_, err = l.SweepOlder(1)
	step("sweep", err)
	l.Close()
	return cps, must(os.ReadFile(path))
}

// checkLocalConsistent checks what must hold in any satellite datafile.
func checkLocalConsistent(t testing.TB, l *Local, st rawState, issued uint64, where string) {
	t.Helper()
	live, pending := 0, 0
	var maxPending, maxGen uint64
	for k, v := range st {
		if !strings.HasPrefix(k, recPrefix) {
			continue
		}
		lv, err := decodeLocal(v)
		if err != nil {
			t.Fatalf("%s: %s unreadable: %v", where, k, err)
		}
		if lv.live() {
			live++
		}
		maxGen = max(maxGen, lv.Gen)
		if lv.Pending != 0 {
			pending++
			maxPending = max(maxPending, lv.Pending)
		}
	}
	if l.Count() != live || l.OutboxLen() != pending {
		t.Fatalf("%s: Count %d OutboxLen %d, file has %d live and %d pending", where, l.Count(), l.OutboxLen(), live, pending)
	}
	if l.gen < maxGen {
		t.Fatalf("%s: generation %d is below a record's %d", where, l.gen, maxGen)
	}
	if l.nextSeq <= maxPending || l.nextSeq <= issued {
		t.Fatalf("%s: next seq %d would reuse one (max pending %d, issued %d)", where, l.nextSeq, maxPending, issued)
	}
	es, err := l.Outbox(0, 0)
	if err != nil || len(es) != pending {
		t.Fatalf("%s: Outbox = %d entries, %v; want %d", where, len(es), err, pending)
	}
	for i := 1; i < len(es); i++ {
		if es[i].Seq <= es[i-1].Seq {
			t.Fatalf("%s: outbox not in seq order", where)
		}
	}
}

// POWER LOSS: a satellite file cut at every byte of its last commits opens,
// holds a consistent prefix, and reuses no seq.
func TestLocal_PowerLossEveryOffset(t *testing.T) {
	dir := fastDir(t)
	cps, full := buildLocalHistory(t, filepath.Join(dir, "build.db"))
	h := newHistory(cps)
	offs := offsets(cps[0].end, int64(len(full)))
	eachOffset(t, dir, offs, func(t *testing.T, path string, o int64) {
		if err := os.WriteFile(path, full[:o], 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := OpenLocal(path, LocalOptions{Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("cut at %d: open: %v", o, err)
		}
		defer func() { l.Close() }()
		got := snapshot(t, l.st)
		c := h.checkPrefix(t, o, got)
		where := fmt.Sprintf("cut at %d (after %q)", o, cps[c].name)
		checkLocalConsistent(t, l, got, cps[c].seq, where)
		if l.Recovered() != "" {
			t.Fatalf("%s: reported a recovery for a torn tail: %s", where, l.Recovered())
		}
		// The repaired file takes new commits that survive a reopen.
		if o%11 == 0 || o == int64(len(full)) {
			e, err := l.Write(storeRec("item", "after", "s1", 1))
			if err != nil {
				t.Fatalf("%s: write after reopen: %v", where, err)
			}
			l.Close()
			l = must(OpenLocal(path, LocalOptions{Logger: testLogger(t)}))
			if r, ok, _ := l.Get("item", "after"); !ok || dataN(t, r) != 1 {
				t.Fatalf("%s: write after reopen lost", where)
			}
			if es := must(l.Outbox(0, 0)); es[len(es)-1].SyncOutID != e.SyncOutID {
				t.Fatalf("%s: outbox tail %s, want %s", where, es[len(es)-1].SyncOutID, e.SyncOutID)
			}
		}
	})
	tried := len(offs)
	t.Logf("%d offsets over %d bytes of %d commits", tried, int64(len(full))-cps[0].end, len(cps)-1)
}

// tails a power cut or a bad disk can leave after the last good command.
var badTails = map[string][]byte{
	"nul":            bytes.Repeat([]byte{0}, 4096),
	"garbage":        []byte("hello, this is not a command\n\x01\x02"),
	"nul then torn":  append(bytes.Repeat([]byte{0}, 10), "*3\r\n$3\r\nset\r\n$4\r\nrec:"...),
	"bad verb":       []byte("*1\r\n$1\r\nx\r\n"), // makes buntdb v1.3.0 panic
	"empty command":  []byte("*0\r\n"),
	"bad length":     []byte("*3\r\n$3\r\nset\r\n$2\r\nabc\r\n$1\r\nx\r\n"),
	"bad expiry":     []byte("*5\r\n$3\r\nset\r\n$1\r\nk\r\n$1\r\n1\r\n$2\r\nae\r\n$2\r\nzz\r\n"),
	"garbage+binary": nil, // filled with random bytes below
}

// Garbage or NUL bytes after the last good command are cut (the original is
// copied aside) and nothing good is lost.
func TestLocal_GarbageTail(t *testing.T) {
	dir := fastDir(t)
	cps, full := buildLocalHistory(t, filepath.Join(dir, "build.db"))
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 3000)
	for i := range random {
		random[i] = byte(rng.UintN(256))
	}
	badTails["garbage+binary"] = random
	path := filepath.Join(dir, "cut.db")
	for _, c := range []int{2, len(cps) - 1} {
		for name, tail := range badTails {
			where := fmt.Sprintf("after %q + %s", cps[c].name, name)
			writeCut(t, path, append(slices.Clip(full[:cps[c].end]), tail...))
			l, err := OpenLocal(path, LocalOptions{Logger: testLogger(t)})
			if err != nil {
				t.Fatalf("%s: open: %v", where, err)
			}
			got := snapshot(t, l.st)
			if !mapsEqual(got, cps[c].state) {
				t.Fatalf("%s: state differs from before the garbage", where)
			}
			if fileSize(t, path) != cps[c].end {
				t.Fatalf("%s: file is %d bytes, want %d", where, fileSize(t, path), cps[c].end)
			}
			if len(must(filepath.Glob(path+".corrupt-*"))) != 1 {
				t.Fatalf("%s: original not copied aside", where)
			}
			mustWrite(t, l, storeRec("item", "after", "s1", 5))
			l.Close()
			l = must(OpenLocal(path, LocalOptions{Logger: testLogger(t)}))
			if r, ok, _ := l.Get("item", "after"); !ok || dataN(t, r) != 5 {
				t.Fatalf("%s: write after repair lost", where)
			}
			checkLocalConsistent(t, l, snapshot(t, l.st), cps[c].seq, where)
			l.Close()
		}
	}
}

func mapsEqual(a, b rawState) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// A file damaged in the middle is moved aside and reported; the unpushed
// local changes are carried into the fresh file under a new epoch.
func TestLocal_MiddleCorruption(t *testing.T) {
	dir := fastDir(t)
	cps, full := buildLocalHistory(t, filepath.Join(dir, "build.db"))
	final := cps[len(cps)-1].state
	wantPending := map[string]bool{}
	for k, v := range final {
		if lv, err := decodeLocal(v); err == nil && strings.HasPrefix(k, recPrefix) && lv.Pending != 0 {
			wantPending[k] = true
		}
	}
	// Each damage returns the damaged file and the key it destroys ("" if
	// the damage hits only superseded commands).
	for name, damage := range map[string]func([]byte) ([]byte, string){
		// A length digit of an early command: the framing breaks.
		"framing": func(b []byte) ([]byte, string) {
			i := bytes.Index(b[100:], []byte("\r\n$")) + 100 + 3
			b[i] = 'x'
			return b, ""
		},
		// A byte inside the last (live) value: the framing holds, the JSON does not.
		"value": func(b []byte) ([]byte, string) {
			i := bytes.LastIndex(b, []byte(`{"pending"`))
			b[i] = '['
			j := bytes.LastIndex(b[:i], []byte("rec:"))
			return b, string(b[j : i-len("\r\n$000\r\n")+1])
		},
		// A hole of NULs between good commands.
		"hole": func(b []byte) ([]byte, string) {
			i := bytes.Index(b[200:], []byte("*3\r\n")) + 200
			return append(append(slices.Clip(b[:i]), make([]byte, 512)...), b[i:]...), ""
		},
	} {
		damaged, lost := damage(slices.Clone(full))
		path := filepath.Join(dir, name+".db")
		writeCut(t, path, damaged)
		os.WriteFile(path+salvageSuffix, []byte("a rebuild cut short"), 0o600) // a crash mid-rebuild
		l, err := OpenLocal(path, LocalOptions{Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("%s: open: %v", name, err)
		}
		if l.Recovered() == "" || !strings.Contains(l.Recovered(), "initialise") {
			t.Fatalf("%s: Recovered() = %q", name, l.Recovered())
		}
		if len(must(filepath.Glob(path+".corrupt-*"))) != 1 {
			t.Fatalf("%s: corrupt file not copied aside", name)
		}
		if _, err := os.Stat(path + salvageSuffix); !os.IsNotExist(err) {
			t.Fatalf("%s: rebuild temp file left behind", name)
		}
		if l.epoch == must(decodeEpoch(final[epochKey])) {
			t.Fatalf("%s: fresh file kept the old epoch", name)
		}
		got := snapshot(t, l.st)
		for k := range wantPending {
			if _, ok := got[k]; !ok && k != lost {
				t.Errorf("%s: unpushed change %s not carried over", name, k)
			}
		}
		checkLocalConsistent(t, l, got, 0, name)
		if len(must(l.Aside())) != 0 {
			t.Fatalf("%s: aside entries appeared", name)
		}
		// The rebuilt file is clean: the next open reports nothing.
		l.Close()
		l = must(OpenLocal(path, LocalOptions{Logger: testLogger(t)}))
		if l.Recovered() != "" {
			t.Fatalf("%s: second open reports %q", name, l.Recovered())
		}
		l.Close()
	}
}

func decodeEpoch(v string) (string, error) {
	return strings.Trim(v, `"`), nil
}
