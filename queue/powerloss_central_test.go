package queue

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// centralOp is one step of the primary's history; atomic steps must be all
// or nothing after a cut (counters aside).
type centralOp struct {
	name   string
	atomic bool
	run    func(c *Central) error
}

func buildCentralHistory(t *testing.T, path string) ([]checkpoint, []byte) {
	c := openCentral(t, path, CentralOptions{})
	c.Pin(2, "hw-2")
	c.Pin(3, "hw-3")
	c.Accept(2, []Inbound{inbound("e-1", storeRec("item", "a", "s1", 1), 3, 4), inbound("e-2", storeRec("item", "b", "s1", 1), 3, 4)})
	c.Write(rec("unit", "kg", map[string]any{"n": 1}), nil)
	var cps []checkpoint
	mark := func(name string) {
		cps = append(cps, checkpoint{name: name, end: fileSize(t, path), state: snapshot(t, c.st), cur: c.maxCursor, gseq: c.lastGseq})
	}
	mark("base")
	push := []Inbound{
		inbound("e-3", storeRec("item", "c", "s1", 1), 3, 4),
		inbound("e-4", storeRec("item", "a", "s1", 2), 3, 4),
		inbound("e-5", rec("unit", "g", map[string]any{"n": 1}), 3, 4),
	}
	ops := []centralOp{
		{"accept", true, func(c *Central) error { _, err := c.Accept(2, push); return err }},
		{"accept again", true, func(c *Central) error { _, err := c.Accept(2, push); return err }},
		{"write central", true, func(c *Central) error { _, err := c.Write(rec("unit", "kg", map[string]any{"n": 2}), nil); return err }},
		{"write delete", true, func(c *Central) error { _, err := c.Write(del("item", "b"), []int{3, 4}); return err }},
		{"ack", false, func(c *Central) error {
			q, _, _ := c.Queued(3, 3)
			_, err := c.Ack(3, []string{q[0].SyncOutID, q[2].SyncOutID})
			return err
		}},
		{"fill", false, func(c *Central) error { _, err := c.Fill(5, func(Record) bool { return true }); return err }},
		{"site", false, func(c *Central) error { _, err := c.Pin(5, "hw-5"); return err }},
		{"accept merge", true, func(c *Central) error {
			_, err := c.Accept(4, []Inbound{inbound("m-1", Record{Table: "item", ID: "a", Action: Merge,
				Data: []byte(`{"mergeIdToKeep":"a","mergeIdToDelete":"c"}`)}, 2, 3)})
			return err
		}},
		{"delete central", true, func(c *Central) error { _, err := c.Write(del("unit", "g"), nil); return err }},
	}
	for _, op := range ops {
		if err := op.run(c); err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		mark(op.name)
		cps[len(cps)-1].gseq = c.lastGseq
	}
	c.Close()
	for i := range cps[1:] {
		if !ops[i].atomic {
			cps[i+1].name += " (not atomic)"
		}
	}
	return cps, must(os.ReadFile(path))
}

// checkCentralConsistent checks what must hold in any primary datafile.
func checkCentralConsistent(t testing.TB, c *Central, st rawState, cp checkpoint, where string) {
	t.Helper()
	qlen := map[int]int{}
	var maxClog, maxGseq uint64
	for k := range st {
		switch {
		case strings.HasPrefix(k, inboxPrefix):
			t.Fatalf("%s: intent %s left after open", where, k)
		case strings.HasPrefix(k, queuePrefix):
			site, id, _ := strings.Cut(k[len(queuePrefix):], ":")
			var s int
			fmt.Sscan(site, &s)
			qlen[s]++
			g, _, _ := parseQueueID(id)
			maxGseq = max(maxGseq, g)
		case strings.HasPrefix(k, clogPrefix):
			maxClog = max(maxClog, must(parseUint(k[len(clogPrefix):])))
		}
	}
	for _, s := range []int{2, 3, 4, 5} {
		if c.QueueLen(s) != qlen[s] {
			t.Fatalf("%s: QueueLen(%d) = %d, file holds %d", where, s, c.QueueLen(s), qlen[s])
		}
	}
	if c.maxCursor < maxClog || c.maxCursor < cp.cur || c.lastGseq < maxGseq || c.lastGseq < cp.gseq {
		t.Fatalf("%s: counters would reuse an id: cursor %d (log max %d, issued %d), gseq %d (queue max %d, issued %d)",
			where, c.maxCursor, maxClog, cp.cur, c.lastGseq, maxGseq, cp.gseq)
	}
	// One log entry per record, pointing back at it.
	seen := map[string]bool{}
	for k, v := range st {
		if !strings.HasPrefix(k, clogPrefix) {
			continue
		}
		r := must(decodeRecord(v))
		key := recKey(r.Table, targetID(r))
		if seen[key] {
			t.Fatalf("%s: two central log entries for %s", where, key)
		}
		seen[key] = true
		var cv centralValue
		if s, ok := st[key]; ok {
			cv = must(decodeCentralValue(s))
		}
		if cv.Cursor != must(parseUint(k[len(clogPrefix):])) {
			t.Fatalf("%s: log entry %s but %s has cursor %d", where, k, key, cv.Cursor)
		}
	}
}

func decodeCentralValue(s string) (centralValue, error) {
	var v centralValue
	err := jsonUnmarshal(s, &v)
	return v, err
}

// POWER LOSS: a primary file cut at every byte of its last commits opens
// with every intent applied, each push all or nothing, nothing accepted
// lost, and no cursor or queue id reused.
func TestCentral_PowerLossEveryOffset(t *testing.T) {
	dir := fastDir(t)
	cps, full := buildCentralHistory(t, filepath.Join(dir, "build.db"))
	h := newHistory(cps)
	offs := offsets(cps[0].end, int64(len(full)))
	eachOffset(t, dir, offs, func(t *testing.T, path string, o int64) {
		if err := os.WriteFile(path, full[:o], 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := OpenCentral(path, CentralOptions{Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("cut at %d: open: %v", o, err)
		}
		defer c.Close()
		got := snapshot(t, c.st)
		i := h.checkPrefix(t, o, got)
		where := fmt.Sprintf("cut at %d (after %q)", o, cps[i].name)
		checkCentralConsistent(t, c, got, cps[i], where)
		if i+1 < len(cps) && !strings.HasSuffix(cps[i+1].name, "(not atomic)") {
			checkAllOrNothing(t, cps[i].state, cps[i+1].state, got, where)
		}
		if o%11 == 0 || o == int64(len(full)) {
			cur, err := c.Write(rec("unit", "after", map[string]any{"n": 1}), []int{3})
			if err != nil || cur <= cps[i].cur {
				t.Fatalf("%s: write after reopen: cursor %d (issued before %d), %v", where, cur, cps[i].cur, err)
			}
			q, _, _ := c.Queued(3, 0)
			if g, _, _ := parseQueueID(q[len(q)-1].SyncOutID); g <= cps[i].gseq {
				t.Fatalf("%s: queue id %s reuses a gseq (issued before %d)", where, q[len(q)-1].SyncOutID, cps[i].gseq)
			}
		}
	})
	tried := len(offs)
	t.Logf("%d offsets over %d bytes of %d operations", tried, int64(len(full))-cps[0].end, len(cps)-1)
}

// checkAllOrNothing: the keys an atomic step changes are all old or all new.
func checkAllOrNothing(t testing.TB, before, after, got rawState, where string) {
	t.Helper()
	var old, nw []string
	for _, k := range unionKeys(before, after) {
		if strings.HasPrefix(k, sysPrefix) || strings.HasPrefix(k, inboxPrefix) {
			continue
		}
		b, bok := before[k]
		a, aok := after[k]
		if b == a && bok == aok {
			continue
		}
		g, gok := got[k]
		switch {
		case g == a && gok == aok:
			nw = append(nw, k)
		case g == b && gok == bok:
			old = append(old, k)
		}
	}
	if len(old) > 0 && len(nw) > 0 {
		t.Fatalf("%s: half a step applied: new %v, old %v", where, nw, old)
	}
}

func unionKeys(a, b rawState) []string {
	var out []string
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func TestCentral_GarbageTailAndMiddle(t *testing.T) {
	dir := fastDir(t)
	cps, full := buildCentralHistory(t, filepath.Join(dir, "build.db"))
	path := filepath.Join(dir, "cut.db")
	last := cps[len(cps)-1]
	for name, tail := range badTails {
		writeCut(t, path, append(slices.Clone(full), tail...))
		c, err := OpenCentral(path, CentralOptions{Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("%s: open: %v", name, err)
		}
		if got := snapshot(t, c.st); !mapsEqual(got, last.state) || c.Recovered() != "" {
			t.Fatalf("%s: state changed by a garbage tail (recovered %q)", name, c.Recovered())
		}
		c.Close()
	}
	// Damage in the middle: moved aside, readable items kept, reported.
	damaged := slices.Clone(full)
	i := bytes.Index(damaged[len(damaged)/3:], []byte("\r\n$")) + len(damaged)/3 + 3
	damaged[i] = 'x'
	writeCut(t, path, damaged)
	c, err := OpenCentral(path, CentralOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Recovered() == "" || len(must(filepath.Glob(path+".corrupt-*"))) != 1 {
		t.Fatalf("middle damage not reported: %q", c.Recovered())
	}
	got := snapshot(t, c.st)
	kept := 0
	for k := range last.state {
		if _, ok := got[k]; ok {
			kept++
		}
	}
	if kept < len(last.state)*2/3 {
		t.Fatalf("kept %d of %d keys", kept, len(last.state))
	}
	checkCentralConsistentLoose(t, c, got)
}

// checkCentralConsistentLoose: after a salvage only the derived counts must agree.
func checkCentralConsistentLoose(t testing.TB, c *Central, st rawState) {
	t.Helper()
	n := 0
	for k := range st {
		if strings.HasPrefix(k, queuePrefix+padSite(3)+":") {
			n++
		}
	}
	if c.QueueLen(3) != n {
		t.Fatalf("QueueLen(3) = %d, file holds %d", c.QueueLen(3), n)
	}
}
