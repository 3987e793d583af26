package queue

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/tidwall/buntdb"
)

// Group commit. Every app write (Write, WriteMany, Put) goes to one commit
// loop owned by the Local: it takes every write waiting, applies them all in
// one BuntDB transaction, fsyncs once, then answers each writer. A write is
// answered only once it is durable, and each request is all or nothing on
// its own: a request refused (outbox full, a Check that says no) changes
// nothing and does not hold back the others in the same commit.

// Check vets one app write inside its commit, against what the datafile
// holds at that moment: held is the live record at the write's key (found
// false when none or a tombstone), and lookup reads any other record as
// the commit sees it. It may change r.Action (an upsert of a new record
// becomes an insert). An error refuses the write's whole request. It runs
// on the commit loop with the Local locked: it must be quick and must not
// call the Local's methods (read through lookup).
type Check func(r *Record, held Record, found bool, lookup LocalLookup) error

// LocalLookup reads the live record table/id as the commit in progress sees it.
type LocalLookup func(table, id string) (Record, bool, error)

// RecordError is a refused write in a request of several: Index is the
// position of the record in the request (from 0).
type RecordError struct {
	Index int
	Err   error
}

func (e *RecordError) Error() string { return fmt.Sprintf("record %d: %v", e.Index+1, e.Err) }
func (e *RecordError) Unwrap() error { return e.Err }

// Bounds of one group commit: a commit stops taking requests once it holds
// this many records or bytes of data (a single request above them is still
// committed, alone). Writers beyond the queue wait to be taken.
const (
	commitMaxRecords = 20000
	commitMaxBytes   = 16 << 20
	commitQueue      = 256
)

// writeRequest is one caller's records, waiting for the commit loop.
type writeRequest struct {
	recs    []Record // normalized
	check   Check
	entries []OutboxEntry
	err     error
	done    chan struct{}
}

func (w *writeRequest) bytes() int {
	n := 0
	for _, r := range w.recs {
		n += len(r.Data) + len(r.ID) + len(r.Table)
	}
	return n
}

// committer is the commit loop's side of a Local.
type committer struct {
	mu      sync.RWMutex // guards closed against a send racing Close
	closed  bool
	queue   chan *writeRequest
	stopped chan struct{} // closed when the loop has answered everything
	guard   atomic.Pointer[func() error]
}

// GuardCommits has every group commit ask ok first, once for all the
// writes it takes (a check per commit, not per write, e.g. that the
// datafile is still the file at its path). When ok says no, every write of
// that commit is refused with a *RefusedError and nothing is written.
func (l *Local) GuardCommits(ok func() error) { l.commits.guard.Store(&ok) }

// RefusedError is a write refused by the guard of its commit.
type RefusedError struct{ Err error }

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

func (l *Local) startCommits() {
	l.commits = &committer{queue: make(chan *writeRequest, commitQueue), stopped: make(chan struct{})}
	go l.commitLoop()
}

// stopCommits lets the loop commit what is waiting, then stops it.
func (l *Local) stopCommits() {
	c := l.commits
	if c == nil {
		return
	}
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.queue)
	}
	c.mu.Unlock()
	<-c.stopped
}

// submit hands w to the commit loop and waits for its answer.
func (l *Local) submit(w *writeRequest) ([]OutboxEntry, error) {
	c := l.commits
	w.done = make(chan struct{})
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return nil, ErrClosed
	}
	c.queue <- w // Close waits for this send: the loop is still taking
	c.mu.RUnlock()
	<-w.done
	return w.entries, w.err
}

// commitLoop is the one goroutine that commits app writes.
func (l *Local) commitLoop() {
	defer close(l.commits.stopped)
	var batch []*writeRequest
	for w := range l.commits.queue {
		batch = append(batch[:0], w)
		recs, size := len(w.recs), w.bytes()
	take:
		for recs < commitMaxRecords && size < commitMaxBytes {
			select {
			case w, ok := <-l.commits.queue:
				if !ok {
					break take
				}
				batch = append(batch, w)
				recs, size = recs+len(w.recs), size+w.bytes()
			default:
				break take
			}
		}
		l.commitBatch(batch)
		for _, w := range batch {
			close(w.done)
		}
		clear(batch)
	}
}

// commitBatch applies batch in one transaction (one fsync) and sets each
// request's answer.
func (l *Local) commitBatch(batch []*writeRequest) {
	if ok := l.commits.guard.Load(); ok != nil {
		if err := (*ok)(); err != nil {
			for _, w := range batch {
				w.err, w.entries = &RefusedError{Err: err}, nil
			}
			return
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var added, liveDelta int
	seq := l.nextSeq
	err := l.update("write records", func(tx *buntdb.Tx) error {
		added, liveDelta, seq = 0, 0, l.nextSeq
		for _, w := range batch {
			w.entries, w.err = nil, nil
			st, err := l.stageLocked(tx, w, seq, added)
			if err != nil {
				w.err = err
				continue
			}
			for _, s := range st.keys {
				if err := l.setLocalRaw(tx, s.key, s.val, s.lv.Pending); err != nil {
					return err
				}
			}
			w.entries = st.entries
			added += st.added
			liveDelta += st.liveDelta
			seq += uint64(len(w.recs))
		}
		if seq == l.nextSeq {
			return errNothing
		}
		_, _, err := tx.Set(seqKey, formatUint(seq-1), nil)
		return err
	})
	if err == errNothing {
		return
	}
	// Seqs are never reused, even those of a failed commit.
	l.nextSeq = max(l.nextSeq, seq)
	if err != nil {
		for _, w := range batch {
			if w.err == nil {
				w.err, w.entries = err, nil
			}
		}
		return
	}
	l.outboxLen += added
	l.noteOutboxLocked()
	l.count += liveDelta
}

// errNothing ends a transaction in which every request was refused.
var errNothing = fmt.Errorf("nothing to commit")

// staged is a request's writes, checked and encoded, not yet in the tx.
type staged struct {
	keys      []stagedKey
	entries   []OutboxEntry
	added     int
	liveDelta int
}

type stagedKey struct {
	key string
	val string
	lv  localValue
}

// stageLocked checks every record of w against the datafile (and the
// records before it in w) and encodes what it will write, starting at seq.
// added is what the commit has added to the outbox so far.
func (l *Local) stageLocked(tx *buntdb.Tx, w *writeRequest, seq uint64, added int) (staged, error) {
	// Sized once: a batch of 10,000 grown by doubling copied its keys about
	// twice and faulted in fresh pages for each copy.
	st := staged{keys: make([]stagedKey, 0, len(w.recs)), entries: make([]OutboxEntry, 0, len(w.recs))}
	var mine map[string]int // key -> index in st.keys, when w has several records
	if len(w.recs) > 1 {
		mine = make(map[string]int, len(w.recs))
	}
	get := func(key string) (localValue, bool, error) {
		if i, ok := mine[key]; ok {
			return st.keys[i].lv, true, nil
		}
		return getLocal(tx, key)
	}
	lookup := func(table, id string) (Record, bool, error) {
		if !validTable(table) {
			return Record{}, false, nil
		}
		v, ok, err := get(recKey(table, id))
		if err != nil || !ok || !v.live() {
			return Record{}, false, err
		}
		return Record{Table: table, ID: id, Action: v.Action, Data: v.Data}, true, nil
	}
	fail := func(i int, err error) (staged, error) {
		if len(w.recs) > 1 {
			return staged{}, &RecordError{Index: i, Err: err}
		}
		return staged{}, err
	}
	var scratch []byte // one value's encoding, reused
	for i, r := range w.recs {
		key := recKey(r.Table, targetID(r))
		old, exists, err := get(key)
		if err != nil {
			return fail(i, err)
		}
		if w.check != nil {
			held := Record{Table: r.Table, ID: targetID(r), Action: old.Action, Data: old.Data}
			if err := w.check(&r, held, exists && old.live(), lookup); err != nil {
				return fail(i, err)
			}
			w.recs[i] = r
		}
		adds := !exists || old.Pending == 0
		if adds && l.max > 0 && l.outboxLen+added+st.added >= l.max {
			return fail(i, fmt.Errorf("cannot write %s/%s: %w: %d changes are waiting to be pushed (limit %d); retry after the next sync",
				r.Table, r.ID, ErrOutboxFull, l.outboxLen+added+st.added, l.max))
		}
		nv := localValue{Pending: seq, Version: old.Version + 1, Gen: l.gen, Action: r.Action, Data: r.Data,
			Tomb: r.Action == Delete || r.Action == Merge}
		if targetID(r) != r.ID {
			nv.PushID = r.ID
		}
		scratch = nv.appendTo(scratch[:0])
		sk := stagedKey{key: key, val: string(scratch), lv: nv}
		if j, ok := mine[key]; ok {
			st.keys[j] = sk
		} else {
			if mine != nil {
				mine[key] = len(st.keys)
			}
			st.keys = append(st.keys, sk)
		}
		if adds {
			st.added++
		}
		st.liveDelta += liveChange(old, exists, nv, true)
		id := l.syncOutID(seq)
		st.entries = append(st.entries, OutboxEntry{SyncOutID: id, Seq: seq, Record: r, Size: approxSize(id, r)})
		seq++
	}
	return st, nil
}
