package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tidwall/buntdb"
)

// AsideEntry is a record taken out of the outbox because it alone kept
// failing to push. It is kept until RetryAside or DropAside.
type AsideEntry struct {
	// SyncOutID and Seq are those of the outbox entry that was set aside
	// (Seq is 0 for an entry carried over by a datafile recovery).
	SyncOutID string
	Seq       uint64
	Record    Record
	Reason    string
	At        time.Time
}

// The states of an aside: key. A set-aside writes the aside key first, then
// clears the record's pending seq; a retry marks the aside key, then
// requeues the record, then deletes the aside key. Each step is its own
// commit, so after a power cut reconcileAside finishes the step that was
// interrupted.
const (
	asideState = "aside"
	retryState = "retry"
	maxReason  = 1000 // bytes of reason kept
)

type asideValue struct {
	State     string     `json:"state"`
	Seq       uint64     `json:"seq"`
	Retry     uint64     `json:"retry,omitempty"` // seq the retry requeues with
	SyncOutID string     `json:"sid"`
	Record    recordJSON `json:"rec"`
	Reason    string     `json:"reason"`
	At        time.Time  `json:"at"`
}

func (a asideValue) encode() (string, error) {
	b, err := marshal(a)
	return string(b), err
}

func decodeAside(s string) (asideValue, error) {
	var a asideValue
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		return a, err
	}
	if a.State != asideState && a.State != retryState {
		return a, fmt.Errorf("unknown aside state %q", a.State)
	}
	return a, nil
}

func asideKey(r Record) string { return asidePrefix + strings.TrimPrefix(outboxKey(r), recPrefix) }

// SetAside moves a poison record out of the outbox into the aside list,
// where it is kept, listed by Aside and requeued by RetryAside. If the
// record was written again since e was read, the newer write stays in the
// outbox and nothing is set aside.
func (l *Local) SetAside(e OutboxEntry, reason string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := outboxKey(e.Record)
	var current bool
	var stored Record
	if err := l.view(func(tx *buntdb.Tx) error {
		v, ok, err := getLocal(tx, key)
		current = ok && v.Pending != 0 && v.Pending == e.Seq
		table, id, _ := splitRecKey(key)
		stored = v.outboxRecord(table, id)
		return err
	}); err != nil {
		return err
	}
	if !current {
		return nil
	}
	if len(reason) > maxReason {
		reason = reason[:maxReason] + "…"
	}
	a := asideValue{State: asideState, Seq: e.Seq, SyncOutID: l.syncOutID(e.Seq), Record: toJSON(stored),
		Reason: reason, At: time.Now().UTC()}
	s, err := a.encode()
	if err != nil {
		return err
	}
	if err := l.update("set record aside", func(tx *buntdb.Tx) error {
		_, _, err := tx.Set(asideKey(e.Record), s, nil)
		return err
	}); err != nil {
		return err
	}
	var cleared bool
	if err := l.update("set record aside", func(tx *buntdb.Tx) error {
		var err error
		cleared, err = l.clearPending(tx, key, e.Seq, l.gen)
		return err
	}); err != nil {
		return err
	}
	if cleared {
		l.outboxLen--
		l.noteOutboxLocked()
	}
	l.log.Debug("record set aside", "table", e.Record.Table, "id", e.Record.ID, "sync_out_id", e.SyncOutID, "reason", reason)
	return nil
}

// Aside lists the records set aside, in table and id order.
func (l *Local) Aside() ([]AsideEntry, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var out []AsideEntry
	err := l.view(func(tx *buntdb.Tx) error {
		var derr error
		err := tx.AscendKeys(asidePrefix+"*", func(k, s string) bool {
			a, err := decodeAside(s)
			if err != nil {
				derr = fmt.Errorf("aside value of %s is unreadable: %w", k, err)
				return false
			}
			out = append(out, AsideEntry{SyncOutID: a.SyncOutID, Seq: a.Seq, Record: a.Record.record(), Reason: a.Reason, At: a.At})
			return true
		})
		return errors.Join(err, derr)
	})
	return out, err
}

// RetryAside puts a set-aside record back into the outbox (with a new
// seq) and removes it from the aside list. If the record was written again
// since it was set aside, that newer write is what gets pushed. table and id
// are those of the AsideEntry's Record.
func (l *Local) RetryAside(table, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	key, a, err := l.findAside(table, id)
	if err != nil {
		return err
	}
	a.State, a.Retry = retryState, l.nextSeq
	l.nextSeq++
	s, err := a.encode()
	if err != nil {
		return err
	}
	if err := l.update("retry aside record", func(tx *buntdb.Tx) error {
		if _, _, err := tx.Set(key, s, nil); err != nil {
			return err
		}
		_, _, err := tx.Set(seqKey, formatUint(a.Retry), nil)
		return err
	}); err != nil {
		return err
	}
	return l.finishRetries([]string{key}, []asideValue{a})
}

// DropAside forgets a set-aside record for good.
func (l *Local) DropAside(table, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	key, _, err := l.findAside(table, id)
	if err != nil {
		return err
	}
	return l.update("drop aside record", func(tx *buntdb.Tx) error {
		_, err := tx.Delete(key)
		return err
	})
}

func (l *Local) findAside(table, id string) (string, asideValue, error) {
	key := asidePrefix + table + ":" + id
	var a asideValue
	err := l.view(func(tx *buntdb.Tx) error {
		s, err := tx.Get(key)
		if errors.Is(err, buntdb.ErrNotFound) {
			return fmt.Errorf("no record %s/%s is set aside: %w", table, id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		a, err = decodeAside(s)
		return err
	})
	if err != nil {
		// A merge is kept under the id it deletes; try the record id too.
		var found bool
		_ = l.view(func(tx *buntdb.Tx) error {
			return tx.AscendKeys(asidePrefix+table+":*", func(k, s string) bool {
				if v, derr := decodeAside(s); derr == nil && v.Record.ID == id {
					key, a, found = k, v, true
					return false
				}
				return true
			})
		})
		if found {
			return key, a, nil
		}
	}
	return key, a, err
}

// finishRetries requeues the records of retrying aside entries (unless a
// newer write is already pending), then deletes those aside keys.
func (l *Local) finishRetries(keys []string, vals []asideValue) error {
	if len(keys) == 0 {
		return nil
	}
	added, liveDelta := 0, 0
	if err := l.update("requeue aside record", func(tx *buntdb.Tx) error {
		added, liveDelta = 0, 0
		for i := range keys {
			r := vals[i].Record.record()
			rk := outboxKey(r)
			old, ok, err := getLocal(tx, rk)
			if err != nil {
				return err
			}
			if ok && old.Pending != 0 {
				continue
			}
			nv := localValue{Pending: vals[i].Retry, Version: old.Version + 1, Gen: l.gen, Action: r.Action, Data: r.Data,
				Tomb: r.Action == Delete || r.Action == Merge}
			if targetID(r) != r.ID {
				nv.PushID = r.ID
			}
			if err := l.setLocal(tx, rk, nv); err != nil {
				return err
			}
			added++
			liveDelta += liveChange(old, ok, nv, true)
		}
		return nil
	}); err != nil {
		return err
	}
	l.outboxLen += added
	l.noteOutboxLocked()
	l.count += liveDelta
	return l.update("remove aside record", func(tx *buntdb.Tx) error {
		for _, k := range keys {
			if _, err := tx.Delete(k); err != nil && !errors.Is(err, buntdb.ErrNotFound) {
				return err
			}
		}
		return nil
	})
}

// reconcileAside finishes set-asides and retries a power cut interrupted.
func (l *Local) reconcileAside() (bool, error) {
	var clear []asideValue
	var retryKeys []string
	var retries []asideValue
	if err := l.view(func(tx *buntdb.Tx) error {
		return tx.AscendKeys(asidePrefix+"*", func(k, s string) bool {
			a, err := decodeAside(s)
			if err != nil {
				return true
			}
			if a.State == retryState {
				retryKeys, retries = append(retryKeys, k), append(retries, a)
				return true
			}
			if v, ok, err := getLocal(tx, outboxKey(a.Record.record())); err == nil && ok && a.Seq != 0 && v.Pending == a.Seq {
				clear = append(clear, a)
			}
			return true
		})
	}); err != nil {
		return false, err
	}
	if len(clear) > 0 {
		if err := l.update("finish set-aside", func(tx *buntdb.Tx) error {
			for _, a := range clear {
				if _, err := l.clearPending(tx, outboxKey(a.Record.record()), a.Seq, l.gen); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return false, err
		}
	}
	if err := l.finishRetries(retryKeys, retries); err != nil {
		return false, err
	}
	if n := len(clear) + len(retryKeys); n > 0 {
		l.log.Info("finished set-aside steps interrupted by a restart", "count", n)
		return true, nil
	}
	return false, nil
}
