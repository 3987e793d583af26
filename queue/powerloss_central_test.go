package queue

import (
	"bytes"
	"encoding/json"
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
	c.Reconcile(sites.members(), sites)
	c.Accept(2, []Inbound{inbound("e-1", storeRec("item", "a", "s1", 1)), inbound("e-2", storeRec("item", "b", "s1", 1))}, sites)
	c.Write(rec("unit", "kg", map[string]any{"n": 1}), sites)
	var cps []checkpoint
	mark := func(name string) {
		cps = append(cps, checkpoint{name: name, end: fileSize(t, path), state: centralSnapshot(t, c), cur: c.maxCentral, gseq: c.version})
	}
	mark("base")
	line := func(id, head string, n int) Record { return rec("line", id, map[string]any{"head_ID": head, "n": n}) }
	push := []Inbound{
		inbound("e-3", storeRec("item", "c", "s1", 1)),
		inbound("e-4", storeRec("item", "a", "s1", 2)),
		inbound("e-5", line("l1", "h", 1)),
		inbound("e-6", storeRec("head", "h", "s1", 1)),
	}
	moved := testRouter{"s1": {2, 3}, "s2": {4, 5}}
	ops := []centralOp{
		{"accept", true, func(c *Central) error { _, err := c.Accept(2, push, sites); return err }},
		{"accept again", true, func(c *Central) error { _, err := c.Accept(2, push, sites); return err }},
		{"repeats in one push", true, func(c *Central) error { // written once each, at the last change
			_, err := c.Accept(2, []Inbound{inbound("e-7", storeRec("item", "c", "s1", 2)), inbound("e-8", line("l1", "h", 2)),
				inbound("e-9", storeRec("item", "c", "s1", 3)), inbound("e-10", line("l1", "h", 3))}, sites)
			return err
		}},
		{"own push supersedes", true, func(c *Central) error {
			_, err := c.Accept(3, []Inbound{inbound("f-1", storeRec("item", "a", "s1", 3))}, sites)
			return err
		}},
		{"write central", true, func(c *Central) error {
			_, err := c.Write(rec("unit", "kg", map[string]any{"n": 2}), sites)
			return err
		}},
		{"write delete", true, func(c *Central) error { _, err := c.Write(del("item", "b"), sites); return err }},
		{"refused", true, func(c *Central) error {
			_, err := c.Accept(5, []Inbound{inbound("z-1", storeRec("item", "c", "s2", 9)), inbound("z-2", storeRec("item", "z", "s2", 1))}, sites)
			return err
		}},
		{"ack", false, func(c *Central) error {
			q, _, _ := c.Queued(4, 3)
			_, err := c.Ack(4, []string{q[0].SyncOutID, q[2].SyncOutID})
			return err
		}},
		{"fill", false, func(c *Central) error { _, err := c.Fill(4); return err }},
		{"site", false, func(c *Central) error { _, err := c.Pin(5, "hw-5"); return err }},
		{"accept merge", true, func(c *Central) error {
			_, err := c.Accept(4, []Inbound{inbound("m-1", Record{Table: "item", ID: "a", Action: Merge,
				Data: []byte(`{"mergeIdToKeep":"a","mergeIdToDelete":"c"}`)})}, sites)
			return err
		}},
		{"delete central", true, func(c *Central) error { _, err := c.Write(del("unit", "kg"), sites); return err }},
		{"membership", false, func(c *Central) error { _, err := c.Reconcile(moved.members(), moved); return err }},
	}
	for _, op := range ops {
		if err := op.run(c); err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		mark(op.name)
	}
	c.Close()
	for i := range cps[1:] {
		if !ops[i].atomic {
			cps[i+1].name += " (not atomic)"
		}
	}
	return cps, must(os.ReadFile(path))
}

// centralSnapshot is the datafile's state without the intents (bookkeeping
// of a change in progress, deleted by the next commit).
func centralSnapshot(t testing.TB, c *Central) rawState {
	st := snapshot(t, c.st)
	for k := range st {
		if strings.HasPrefix(k, inboxPrefix) {
			delete(st, k)
		}
	}
	return st
}

// checkCentralConsistent checks what must hold in any primary datafile.
func checkCentralConsistent(t testing.TB, c *Central, st rawState, cp checkpoint, where string) {
	t.Helper()
	qlen := map[int]int{}
	var maxClog, maxVer uint64
	for k, v := range st {
		switch {
		case strings.HasPrefix(k, inboxPrefix):
			t.Fatalf("%s: intent %s left after open", where, k)
		case strings.HasPrefix(k, queuePrefix):
			site, ord, _, ok := parseQueueValue(v)
			if !ok || !strings.HasPrefix(k, queueKeyPrefix(site)) {
				t.Fatalf("%s: queue entry %s = %q", where, k, v)
			}
			qlen[site]++
			maxVer = max(maxVer, ord)
		case strings.HasPrefix(k, clogPrefix):
			maxClog = max(maxClog, must(parseUint(k[len(clogPrefix):])))
		case strings.HasPrefix(k, recPrefix):
			maxVer = max(maxVer, must(decodeCentralValue(v)).Version)
		}
	}
	for _, s := range []int{2, 3, 4, 5} {
		if c.QueueLen(s) != qlen[s] {
			t.Fatalf("%s: QueueLen(%d) = %d, file holds %d", where, s, c.QueueLen(s), qlen[s])
		}
	}
	if c.maxCentral < maxClog || c.maxCentral < cp.cur || c.version < maxVer || c.version < cp.gseq {
		t.Fatalf("%s: counters would reuse a version: cursor %d (log max %d, issued %d), version %d (file max %d, issued %d)",
			where, c.maxCentral, maxClog, cp.cur, c.version, maxVer, cp.gseq)
	}
	// One log entry per central record, and it points at the record's version.
	for k, v := range st {
		if !strings.HasPrefix(k, clogPrefix) {
			continue
		}
		var ref Ref
		if err := json.Unmarshal([]byte(v), &ref); err != nil {
			t.Fatalf("%s: log entry %s = %q", where, k, v)
		}
		cv := must(decodeCentralValue(st[recKey(ref.Table, ref.ID)]))
		if !cv.Central || cv.Version != must(parseUint(k[len(clogPrefix):])) {
			t.Fatalf("%s: log entry %s but %s/%s is at version %d", where, k, ref.Table, ref.ID, cv.Version)
		}
	}
	// Every entry of a site's queue is for a record it holds or must delete.
	for k, v := range st {
		if !strings.HasPrefix(k, queuePrefix) {
			continue
		}
		site, _, del, _ := parseQueueValue(v)
		table, id, _ := strings.Cut(strings.TrimPrefix(k, queueKeyPrefix(site)), ":")
		cv, err := decodeCentralValue(st[recKey(table, id)])
		if err != nil {
			t.Fatalf("%s: queue entry %s for a record the primary lacks", where, k)
		}
		if !del && !cv.holds(site) {
			t.Fatalf("%s: queue entry %s for a record site %d does not hold (holders %v)", where, k, site, cv.Holders)
		}
	}
}

func decodeCentralValue(s string) (RecordState, error) {
	var v RecordState
	err := jsonUnmarshal(s, &v)
	return v, err
}

// POWER LOSS: a primary file cut at every byte of its last commits opens
// with every intent applied, each push all or nothing, nothing accepted
// lost, and no cursor or queue id reused.
// openCutCentral opens, as the primary would after a power cut, the datafile
// full cut at o bytes (written to path); the caller closes it before the
// next cut reuses path.
func openCutCentral(t *testing.T, path string, full []byte, o int64) *Central {
	t.Helper()
	if err := os.WriteFile(path, full[:o], 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := OpenCentral(path, CentralOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("cut at %d: open: %v", o, err)
	}
	return c
}

func TestCentral_PowerLossEveryOffset(t *testing.T) {
	dir := fastDir(t)
	cps, full := buildCentralHistory(t, filepath.Join(dir, "build.db"))
	h := newHistory(cps)
	offs := offsets(cps[0].end, int64(len(full)))
	eachOffset(t, dir, offs, func(t *testing.T, path string, o int64) {
		c := openCutCentral(t, path, full, o)
		defer c.Close()
		got := centralSnapshot(t, c)
		i := h.checkPrefix(t, o, got)
		where := fmt.Sprintf("cut at %d (after %q)", o, cps[i].name)
		checkCentralConsistent(t, c, got, cps[i], where)
		if i+1 < len(cps) && !strings.HasSuffix(cps[i+1].name, "(not atomic)") {
			checkAllOrNothing(t, cps[i].state, cps[i+1].state, got, where)
		}
		if o%11 == 0 || o == int64(len(full)) {
			cur, err := c.Write(rec("unit", "after", map[string]any{"n": 1}), sites)
			if err != nil || cur <= cps[i].cur || cur <= cps[i].gseq {
				t.Fatalf("%s: write after reopen: version %d (issued before %d), %v", where, cur, cps[i].gseq, err)
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
		if got := centralSnapshot(t, c); !mapsEqual(got, last.state) || c.Recovered() != "" {
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
