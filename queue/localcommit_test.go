package queue

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestLocal_GroupCommit: concurrent writers share fsyncs, and every answered
// write is there with its outbox entry.
func TestLocal_GroupCommit(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	const writers, each = 16, 100
	before := l.st.updates
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := l.Write(storeRec("item", fmt.Sprintf("w%d-%d", w, i), "s1", i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got, want := l.Count(), writers*each; got != want {
		t.Errorf("Count = %d, want %d", got, want)
	}
	if got, want := l.OutboxLen(), writers*each; got != want {
		t.Errorf("OutboxLen = %d, want %d", got, want)
	}
	fsyncs := l.st.updates - before
	t.Logf("%d puts, %d commits", writers*each, fsyncs)
	if fsyncs >= writers*each {
		t.Errorf("%d commits for %d puts: writers did not share a commit", fsyncs, writers*each)
	}
	seqs := map[uint64]bool{}
	for _, e := range must(l.Outbox(writers*each, 0)) {
		if seqs[e.Seq] {
			t.Fatalf("seq %d handed out twice", e.Seq)
		}
		seqs[e.Seq] = true
	}
}

// TestLocal_commitBatchRefusesAlone: a request refused inside a group
// commit changes nothing and does not hold back the others in it.
func TestLocal_commitBatchRefusesAlone(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{OutboxMax: 3})
	mustWrite(t, l, storeRec("item", "a", "s1", 1))
	no := func(r *Record, _ Record, _ bool, _ LocalLookup) error {
		if r.ID == "bad" {
			return errors.New("refused")
		}
		return nil
	}
	req := func(check Check, rs ...Record) *writeRequest {
		for i := range rs {
			rs[i] = must(normalize(rs[i]))
		}
		return &writeRequest{recs: rs, check: check}
	}
	ok1 := req(nil, storeRec("item", "b", "s1", 1))
	bad := req(no, storeRec("item", "c", "s1", 1), storeRec("item", "bad", "s1", 1))
	full := req(nil, storeRec("item", "d", "s1", 1), storeRec("item", "e", "s1", 1))
	ok2 := req(nil, storeRec("item", "a", "s1", 2)) // already waiting: adds nothing
	l.commitBatch([]*writeRequest{ok1, bad, full, ok2})
	var re *RecordError
	if !errors.As(bad.err, &re) || re.Index != 1 {
		t.Errorf("bad: err = %v, want a RecordError at index 1", bad.err)
	}
	if !errors.Is(full.err, ErrOutboxFull) {
		t.Errorf("full: err = %v, want ErrOutboxFull", full.err)
	}
	if ok1.err != nil || ok2.err != nil {
		t.Fatalf("ok1: %v, ok2: %v", ok1.err, ok2.err)
	}
	for id, want := range map[string]bool{"a": true, "b": true, "c": false, "d": false, "e": false} {
		if _, found, _ := l.Get("item", id); found != want {
			t.Errorf("item/%s found = %v, want %v", id, found, want)
		}
	}
	if got := l.OutboxLen(); got != 2 {
		t.Errorf("OutboxLen = %d, want 2", got)
	}
	// The seqs of refused requests are not burnt: the next write follows on.
	if got, want := ok2.entries[0].Seq, ok1.entries[0].Seq+1; got != want {
		t.Errorf("seq after a refused request = %d, want %d", got, want)
	}
}

// TestLocal_GuardCommits: the guard is asked once a commit, not once a
// write, and a commit it refuses writes nothing and answers every writer.
func TestLocal_GuardCommits(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	var mu sync.Mutex
	var asked int
	var refuse error
	l.GuardCommits(func() error {
		mu.Lock()
		defer mu.Unlock()
		asked++
		return refuse
	})
	const writers, each = 16, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				mustWrite(t, l, storeRec("item", fmt.Sprintf("w%d-%d", w, i), "s1", i))
			}
		}()
	}
	wg.Wait()
	if asked == 0 || asked >= writers*each {
		t.Errorf("guard asked %d times for %d writes in %d commits; want once a commit", asked, writers*each, l.st.updates)
	}
	gone := errors.New("the datafile was deleted")
	mu.Lock()
	refuse = gone
	mu.Unlock()
	before := l.st.updates
	_, err := l.Put([]Record{storeRec("item", "x", "s1", 1), storeRec("item", "y", "s1", 1)}, nil)
	var re *RefusedError
	if !errors.As(err, &re) || !errors.Is(err, gone) {
		t.Errorf("a write the guard refused: %v, want a RefusedError wrapping its reason", err)
	}
	if _, found, _ := l.Get("item", "x"); found || l.st.updates != before {
		t.Errorf("a refused commit wrote: x found %v, %d commits", found, l.st.updates-before)
	}
	if got := l.OutboxLen(); got != writers*each {
		t.Errorf("OutboxLen = %d, want %d", got, writers*each)
	}
}

// TestLocal_PutCheck: a check sees what the commit sees (the records before
// it in the same request too) and may turn an upsert into an insert.
func TestLocal_PutCheck(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	mustWrite(t, l, storeRec("transact", "T1", "s1", 1))
	var seen []string
	check := func(r *Record, held Record, found bool, lookup LocalLookup) error {
		if !found {
			r.Action = Insert
		}
		_, parent, _ := lookup("transact", "T2")
		seen = append(seen, fmt.Sprintf("%s:%v:%v", r.ID, found, parent))
		return nil
	}
	up := func(id string) Record { r := storeRec("transact", id, "s1", 2); r.Action = Update; return r }
	es, err := l.Put([]Record{up("T1"), up("T2"), up("T3")}, check)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(seen, " "), "T1:true:false T2:false:false T3:false:true"; got != want {
		t.Errorf("check saw %s, want %s", got, want)
	}
	if es[0].Record.Action != Update || es[1].Record.Action != Insert {
		t.Errorf("actions %s %s, want update insert", es[0].Record.Action, es[1].Record.Action)
	}
}

// TestLocal_CloseWithWritersWaiting: Close commits what is waiting, and a
// write after Close fails with ErrClosed instead of hanging.
func TestLocal_CloseWithWritersWaiting(t *testing.T) {
	path := tempPath(t, "sat.db")
	l := must(OpenLocal(path, LocalOptions{}))
	var wg sync.WaitGroup
	answered := make(chan string, 400)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				if _, err := l.Write(storeRec("item", id, "s1", i)); err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("write after close: %v, want ErrClosed", err)
					}
					return
				}
				select {
				case answered <- id:
				default:
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	l.Close()
	wg.Wait()
	close(answered)
	l = openLocal(t, path, LocalOptions{})
	for id := range answered {
		if _, found, _ := l.Get("item", id); !found {
			t.Errorf("answered write %s is missing", id)
		}
	}
}

// TestLocal_KillWriterMidCommit: a writer process SIGKILLed while group
// commits are in flight loses no write it was answered for.
func TestLocal_KillWriterMidCommit(t *testing.T) {
	if path := os.Getenv("SYNCAGENT_QUEUE_KILL_WRITER"); path != "" {
		killWriterChild(path)
		return
	}
	for round := range 3 {
		path := tempPath(t, "sat.db")
		cmd := exec.Command(os.Args[0], "-test.run=^TestLocal_KillWriterMidCommit$")
		cmd.Env = append(os.Environ(), "SYNCAGENT_QUEUE_KILL_WRITER="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var acked []string
		sc := bufio.NewScanner(out)
		for sc.Scan() && len(acked) < 300+200*round {
			if id, ok := strings.CutPrefix(sc.Text(), "ok "); ok {
				acked = append(acked, id)
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		for sc.Scan() { // what it said before it died counts too
			if id, ok := strings.CutPrefix(sc.Text(), "ok "); ok {
				acked = append(acked, id)
			}
		}
		cmd.Wait()
		if len(acked) < 300 {
			t.Fatalf("round %d: the writer answered only %d puts", round, len(acked))
		}
		l := openLocal(t, path, LocalOptions{})
		for _, id := range acked {
			if _, found, err := l.Get("item", id); err != nil || !found {
				t.Fatalf("round %d: answered put %s lost after SIGKILL (err %v)", round, id, err)
			}
		}
		if l.OutboxLen() < len(acked) {
			t.Errorf("round %d: outbox %d < %d answered puts", round, l.OutboxLen(), len(acked))
		}
		l.Close()
	}
}

// killWriterChild writes from 16 goroutines until killed, printing each
// put once it is answered.
func killWriterChild(path string) {
	l, err := OpenLocal(path, LocalOptions{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	for g := range 16 {
		go func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				if _, err := l.Write(storeRec("item", id, "s1", i)); err != nil {
					fmt.Println("write:", err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintf(w, "ok %s\n", id)
				w.Flush()
				mu.Unlock()
			}
		}()
	}
	select {}
}

// TestLocalValue_encodeMatchesMarshal: the hand encoder writes what
// encoding/json writes, and both decoders read it back the same.
func TestLocalValue_encodeMatchesMarshal(t *testing.T) {
	for _, v := range []localValue{
		{Action: Insert},
		{Pending: 1<<64 - 1, Version: 3, Gen: 7, Action: Update, Data: []byte(`{"store_ID":"s1","n":1}`)},
		{Pending: 5, Version: 1, Action: Merge, Tomb: true, PushID: "keep \"é\"", Data: []byte(`{"mergeIdToKeep":"a","mergeIdToDelete":"b"}`)},
		{Version: 2, Action: Delete, Tomb: true},
	} {
		want, _ := marshal(localValueJSON{pad(v.Pending), v.Version, v.Gen, v.Action, v.Tomb, v.PushID, v.Data})
		got := must(v.encode())
		if got != string(want) {
			t.Errorf("encode:\n got %s\nwant %s", got, want)
		}
		fast, err1 := decodeLocal(got)
		slow, err2 := decodeLocalSlow(got)
		if err1 != nil || err2 != nil || fmt.Sprint(fast) != fmt.Sprint(slow) || fmt.Sprint(fast) != fmt.Sprint(v) {
			t.Errorf("decode %s:\n fast %v %v\n slow %v %v", got, fast, err1, slow, err2)
		}
	}
}

// FuzzDecodeLocal: the fast decoder reads every valid value as encoding/json
// does (or both refuse it).
func FuzzDecodeLocal(f *testing.F) {
	f.Add(`{"pending":"00000000000000000001","version":1,"action":"insert","data":{"a":1}}`)
	f.Add(`{"pending":"00000000000000000000","version":2,"gen":3,"action":"delete","tomb":true}`)
	f.Add(`{"pending":"0000000000000000000x","version":1,"action":"insert"}`)
	f.Add(`{"version":1,"action":"Update","pending":"00000000000000000009","rid":"a\u00e9"}`)
	f.Fuzz(func(t *testing.T, s string) {
		if !jsonValid(s) {
			return
		}
		fast, err1 := decodeLocal(s)
		slow, err2 := decodeLocalSlow(s)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("%s: fast err %v, slow err %v", s, err1, err2)
		}
		if err1 == nil && fmt.Sprintf("%v %s", fast, fast.Data) != fmt.Sprintf("%v %s", slow, slow.Data) {
			t.Fatalf("%s:\n fast %v\n slow %v", s, fast, slow)
		}
	})
}

func jsonValid(s string) bool { return json.Valid([]byte(s)) }
