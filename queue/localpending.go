package queue

import (
	"github.com/tidwall/btree"
	"github.com/tidwall/buntdb"
)

// The outbox in memory. A record's pending seq lives in its rec: value (one
// key, so a write and its outbox entry are atomic on disk); which keys are
// pending, in seq order, is kept here, beside BuntDB, derived on open and
// kept in step by every commit of the Local. A BuntDB index would hold an
// entry for every record, pending or not (about 30 B each, and a quarter
// of a second to build at open with 300,000 records); this holds only what
// waits to be pushed.

type pendingEntry struct {
	seq uint64
	key string
}

// pendingSet is every rec: key with a pending seq, by seq. Not safe for
// concurrent use: the Local's lock guards it (read under RLock, changed
// under Lock).
type pendingSet struct {
	bySeq *btree.BTreeG[pendingEntry]
	byKey map[string]uint64
}

func newPendingSet() pendingSet {
	return pendingSet{
		bySeq: btree.NewBTreeGOptions(func(a, b pendingEntry) bool { return a.seq < b.seq }, btree.Options{NoLocks: true}),
		byKey: map[string]uint64{},
	}
}

// set records key's pending seq (0: key is not pending, or is gone).
func (p *pendingSet) set(key string, seq uint64) {
	if old, ok := p.byKey[key]; ok {
		if old == seq {
			return
		}
		p.bySeq.Delete(pendingEntry{seq: old})
		delete(p.byKey, key)
	}
	if seq != 0 {
		p.bySeq.Set(pendingEntry{seq, key})
		p.byKey[key] = seq
	}
}

// ascend calls fn with the pending keys in seq order, from the first
// until fn returns false.
func (p *pendingSet) ascend(fn func(seq uint64, key string) bool) {
	p.bySeq.Scan(func(e pendingEntry) bool { return fn(e.seq, e.key) })
}

// update is store.update for the Local: the rec: keys a commit changes
// (through setLocal and delLocal) reach the pending set once it is durable,
// and not at all when it fails. The caller holds l.mu.
func (l *Local) update(what string, fn func(tx *buntdb.Tx) error) error {
	l.journal = l.journal[:0]
	err := l.st.update(what, fn)
	if err == nil {
		for _, e := range l.journal {
			l.pending.set(e.key, e.seq)
		}
	}
	l.journal = l.journal[:0]
	return err
}

// setLocal writes a rec: key in the transaction of l.update.
func (l *Local) setLocal(tx *buntdb.Tx, key string, v localValue) error {
	s, err := v.encode()
	if err != nil {
		return err
	}
	return l.setLocalRaw(tx, key, s, v.Pending)
}

// setLocalRaw is setLocal of a value already encoded.
func (l *Local) setLocalRaw(tx *buntdb.Tx, key, val string, pending uint64) error {
	_, replaced, err := tx.Set(key, val, nil)
	if err != nil {
		return err
	}
	if !replaced {
		l.st.txGrown += int64(len(key) + len(val) + 32) // as verify counts a key
	}
	l.journal = append(l.journal, pendingEntry{pending, key})
	return nil
}

// delLocal deletes a rec: key in the transaction of l.update.
func (l *Local) delLocal(tx *buntdb.Tx, key string) error {
	if _, err := tx.Delete(key); err != nil {
		return err
	}
	l.journal = append(l.journal, pendingEntry{0, key})
	return nil
}
