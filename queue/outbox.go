package queue

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tidwall/buntdb"
)

// OutboxEntry is one change waiting to be pushed to the primary.
type OutboxEntry struct {
	// SyncOutID names this entry on the wire, unique forever:
	// "<file epoch>-<seq zero-padded>".
	SyncOutID string
	// Seq orders the outbox; a newer write of the same record gets a new one.
	Seq    uint64
	Record Record
	// Size approximates the entry's bytes in a v5 JSON body.
	Size int
}

// DefaultOutboxBatch is the batch size Outbox uses when maxRecords <= 0.
const DefaultOutboxBatch = 1000

// Outbox returns the oldest pending entries, up to maxRecords entries and
// maxBytes of approximate JSON (maxBytes <= 0: no byte limit). It returns at
// least one entry, even one that alone exceeds maxBytes, whenever the
// outbox is not empty. maxRecords <= 0 means DefaultOutboxBatch.
func (l *Local) Outbox(maxRecords, maxBytes int) ([]OutboxEntry, error) {
	return l.OutboxUpTo(math.MaxUint64, maxRecords, maxBytes)
}

// LastSeq is the last outbox seq handed out: every entry waiting now has a
// seq at or below it, and every later write gets a higher one. A sync cycle
// takes it when it starts and pushes only up to it (OutboxUpTo), so writes
// that keep coming wait for the next cycle instead of holding this one.
func (l *Local) LastSeq() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.nextSeq - 1
}

// OutboxNumbering is where the outbox's numbering stands: the syncOutId the
// last seq handed out had (or would have) — "<epoch>-<seq>". A primary that
// took higher numbers from this box sees that the datafile went back.
func (l *Local) OutboxNumbering() string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.syncOutID(l.nextSeq - 1)
}

// OutboxWaitingSince is when the outbox last went from empty to holding a
// change (zero when empty): its oldest change has waited at least since
// then. After a restart with changes waiting it is the time of the open.
func (l *Local) OutboxWaitingSince() time.Time {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.waitingSince
}

// noteOutboxLocked keeps waitingSince in step with outboxLen.
func (l *Local) noteOutboxLocked() {
	switch {
	case l.outboxLen == 0:
		l.waitingSince = time.Time{}
	case l.waitingSince.IsZero():
		l.waitingSince = time.Now()
	}
}

// OutboxLenUpTo is the number of entries waiting with a seq at or below last.
func (l *Local) OutboxLenUpTo(last uint64) int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if last >= l.nextSeq-1 {
		return l.outboxLen
	}
	n := 0
	l.pending.ascend(func(seq uint64, _ string) bool {
		if seq > last {
			return false
		}
		n++
		return true
	})
	return n
}

// OutboxUpTo is Outbox for the entries with a seq at or below last.
func (l *Local) OutboxUpTo(last uint64, maxRecords, maxBytes int) ([]OutboxEntry, error) {
	if maxRecords <= 0 {
		maxRecords = DefaultOutboxBatch
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	var out []OutboxEntry
	var derr error
	bytes := 0
	err := l.view(func(tx *buntdb.Tx) error {
		l.pending.ascend(func(seq uint64, k string) bool {
			if seq > last {
				return false
			}
			v, found, err := getLocal(tx, k)
			if err != nil || !found || v.Pending != seq {
				derr = fmt.Errorf("the outbox lists %s with seq %d, the datafile does not (found %v, %v): restart the agent", k, seq, found, err)
				return false
			}
			table, id, _ := splitRecKey(k)
			e := OutboxEntry{SyncOutID: l.syncOutID(v.Pending), Seq: v.Pending, Record: v.outboxRecord(table, id)}
			e.Size = approxSize(e.SyncOutID, e.Record)
			if len(out) > 0 && maxBytes > 0 && bytes+e.Size > maxBytes {
				return false
			}
			out = append(out, e)
			bytes += e.Size
			return len(out) < maxRecords
		})
		return nil
	})
	if err == nil {
		err = derr
	}
	return out, err
}

// OutboxLen is the number of entries waiting to be pushed.
func (l *Local) OutboxLen() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.outboxLen
}

// MarkPushed clears the outbox entries the primary has accepted, in one
// commit. An entry whose record was written again since Outbox returned it
// stays pending (the newer value still has to be pushed). A pushed
// tombstone is removed.
func (l *Local) MarkPushed(entries []OutboxEntry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var cleared int
	err := l.update("mark records pushed", func(tx *buntdb.Tx) error {
		cleared = 0
		for _, e := range entries {
			ok, err := l.clearPending(tx, outboxKey(e.Record), e.Seq, l.gen)
			if err != nil {
				return err
			}
			if ok {
				cleared++
			}
		}
		return nil
	})
	if err == nil {
		l.outboxLen -= cleared
		l.noteOutboxLocked()
	}
	return err
}

// outboxKey is the rec: key an outbox record lives in.
func outboxKey(r Record) string {
	if strings.EqualFold(string(r.Action), string(Merge)) {
		r.Action = Merge
	}
	return recKey(r.Table, targetID(r))
}

// clearPending takes key out of the outbox if its pending seq is still seq,
// stamping it with generation gen: the record as pushed (or set aside) is
// this site's own, not a leftover a re-initialisation should sweep.
func (l *Local) clearPending(tx *buntdb.Tx, key string, seq, gen uint64) (bool, error) {
	v, ok, err := getLocal(tx, key)
	if err != nil || !ok || v.Pending == 0 || v.Pending != seq {
		return false, err
	}
	if v.Tomb {
		err = l.delLocal(tx, key)
		return err == nil, err
	}
	v.Pending, v.Gen = 0, max(v.Gen, gen)
	return true, l.setLocal(tx, key, v)
}

// Requeue marks every current record that match accepts as pending again
// ("generate sync records"), committing in batches so app writes interleave.
// Records already pending are left as they are and not counted. It returns
// how many records were queued. match runs with the datafile locked: it
// must not call back into l. Requeue is not limited by OutboxMax (each
// record holds at most one entry, so the outbox stays bounded by Count).
func (l *Local) Requeue(match func(Record) bool) (int, error) {
	const batch, scanPerLock = 500, 5000
	total := 0
	pivot := recPrefix
	for done := false; !done; {
		n, next, end, err := l.requeueBatch(match, pivot, batch, scanPerLock)
		total += n
		if err != nil {
			return total, err
		}
		pivot, done = next, end
	}
	if total > 0 {
		l.log.Info("requeued records", "count", total)
	}
	return total, nil
}

func (l *Local) requeueBatch(match func(Record) bool, pivot string, batch, scan int) (int, string, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var keys []string
	next, end, seen := "", true, 0
	err := l.view(func(tx *buntdb.Tx) error {
		return tx.AscendGreaterOrEqual("", pivot, func(k, s string) bool {
			if !strings.HasPrefix(k, recPrefix) {
				return false
			}
			if seen >= scan || len(keys) >= batch {
				next, end = k, false
				return false
			}
			seen++
			v, err := decodeLocal(s)
			if err != nil || v.Pending != 0 || !v.live() {
				return true
			}
			table, id, _ := splitRecKey(k)
			if match(Record{Table: table, ID: id, Action: v.Action, Data: v.Data}) {
				keys = append(keys, k)
			}
			return true
		})
	})
	if err != nil || len(keys) == 0 {
		return 0, next, end, err
	}
	n := 0
	seq := l.nextSeq
	err = l.update("requeue records", func(tx *buntdb.Tx) error {
		n, seq = 0, l.nextSeq
		for _, k := range keys {
			v, ok, err := getLocal(tx, k)
			if err != nil {
				return err
			}
			if !ok || v.Pending != 0 || !v.live() {
				continue
			}
			v.Pending, v.Version, v.Gen = seq, v.Version+1, max(v.Gen, l.gen)
			seq++
			if err := l.setLocal(tx, k, v); err != nil {
				return err
			}
			n++
		}
		_, _, err := tx.Set(seqKey, formatUint(seq-1), nil)
		return err
	})
	l.nextSeq = max(l.nextSeq, seq)
	if err != nil {
		return 0, next, end, err
	}
	l.outboxLen += n
	l.noteOutboxLocked()
	return n, next, end, nil
}
