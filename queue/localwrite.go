package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tidwall/buntdb"
)

// Write applies an app's change to the datafile and queues it for pushing,
// durably (fsynced) before it returns. Writing a record that is already
// waiting to be pushed replaces its outbox entry (the latest value wins).
// A delete leaves a tombstone that is pushed like any other change; a merge
// deletes mergeIdToDelete locally and pushes the merge.
//
// It refuses an invalid record, a write that would add an outbox entry
// beyond OutboxMax (ErrOutboxFull), and reports a full disk (ErrDiskFull);
// a refused write changes nothing.
func (l *Local) Write(r Record) (OutboxEntry, error) {
	es, err := l.WriteMany([]Record{r})
	if err != nil {
		return OutboxEntry{}, err
	}
	return es[0], nil
}

// WriteMany is Write for several records in one commit (one fsync). It is
// all or nothing while running; after a power cut during the commit any
// subset of the records may be present, each with its own outbox entry.
func (l *Local) WriteMany(rs []Record) ([]OutboxEntry, error) { return l.Put(rs, nil) }

// Put is WriteMany for an app's records: check (when not nil) vets each
// record inside the commit against what the datafile holds then (Check).
// A refused record is named by a *RecordError when rs has several. The
// write shares its commit, and its fsync, with every other write waiting.
func (l *Local) Put(rs []Record, check Check) ([]OutboxEntry, error) {
	norm := make([]Record, len(rs))
	for i, r := range rs {
		n, err := normalize(r)
		if err != nil {
			err = fmt.Errorf("%w: %w", ErrInvalidRecord, err)
			if len(rs) > 1 {
				err = &RecordError{Index: i, Err: err}
			}
			return nil, err
		}
		norm[i] = n
	}
	if len(norm) == 0 {
		return nil, nil
	}
	return l.submit(&writeRequest{recs: norm, check: check})
}

// liveChange is the change in the live-record count when a key goes from
// old (if it existed) to nv (if it exists).
func liveChange(old localValue, existed bool, nv localValue, exists bool) int {
	d := 0
	if existed && old.live() {
		d--
	}
	if exists && nv.live() {
		d++
	}
	return d
}

// Get returns the current record; a deleted record reads as not found.
func (l *Local) Get(table, id string) (Record, bool, error) {
	if !validTable(table) {
		return Record{}, false, nil
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	var v localValue
	var ok bool
	err := l.view(func(tx *buntdb.Tx) error {
		var err error
		v, ok, err = getLocal(tx, recKey(table, id))
		return err
	})
	if err != nil || !ok || !v.live() {
		return Record{}, false, err
	}
	return Record{Table: table, ID: id, Action: v.Action, Data: v.Data}, true, nil
}

// List returns up to limit records of table with an id greater than after,
// in id order (byte order). limit <= 0 means DefaultListLimit.
func (l *Local) List(table string, after string, limit int) ([]Record, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.st.listTable(table, after, limit, func(s string) (Action, json.RawMessage, bool, error) {
		v, err := decodeLocal(s)
		return v.Action, v.Data, v.live(), err
	})
}

// Tables lists the tables holding at least one record, in name order.
func (l *Local) Tables() ([]string, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var tables []string
	err := l.view(func(tx *buntdb.Tx) error {
		pivot := recPrefix
		for {
			var table string
			found, more := false, false
			err := tx.AscendGreaterOrEqual("", pivot, func(k, s string) bool {
				t, _, ok := splitRecKey(k)
				if !ok {
					return false
				}
				if table == "" {
					table, more = t, true
				} else if t != table {
					return false
				}
				if v, err := decodeLocal(s); err == nil && v.live() {
					found = true
					return false
				}
				return true
			})
			if err != nil || !more {
				return err
			}
			if found {
				tables = append(tables, table)
			}
			pivot = recPrefix + table + ";" // ';' follows ':': skip the rest of this table
		}
	})
	return tables, err
}

// Count is the number of records in the datafile (tombstones excluded).
func (l *Local) Count() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.count
}

// Cursor returns the named cursor (0 when never set).
func (l *Local) Cursor(name string) (uint64, error) {
	if err := checkName("cursor", name); err != nil {
		return 0, err
	}
	var v uint64
	err := l.getJSON(cursorPrefix+name, &v)
	return v, err
}

// SetCursor stores the named cursor in its own commit.
func (l *Local) SetCursor(name string, v uint64) error {
	if err := checkName("cursor", name); err != nil {
		return err
	}
	return l.setJSON("set cursor "+name, cursorPrefix+name, v)
}

// Meta returns a small blob stored with SetMeta.
func (l *Local) Meta(key string) ([]byte, bool, error) {
	if err := checkName("meta", key); err != nil {
		return nil, false, err
	}
	var v []byte
	err := l.getJSON(metaPrefix+key, &v)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	return v, err == nil, err
}

// SetMeta stores a small blob (sizer state, last sync) in its own commit.
func (l *Local) SetMeta(key string, v []byte) error {
	if err := checkName("meta", key); err != nil {
		return err
	}
	return l.setJSON("set meta "+key, metaPrefix+key, v)
}

// getJSON decodes key into v; a missing key leaves v alone and returns
// ErrNotFound for meta, nil otherwise.
func (l *Local) getJSON(key string, v any) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.view(func(tx *buntdb.Tx) error {
		s, err := tx.Get(key)
		if errors.Is(err, buntdb.ErrNotFound) {
			if strings.HasPrefix(key, metaPrefix) {
				return ErrNotFound
			}
			return nil
		}
		if err != nil {
			return err
		}
		return json.Unmarshal([]byte(s), v)
	})
}

func (l *Local) setJSON(what, key string, v any) error {
	b, err := marshal(v)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.update(what, func(tx *buntdb.Tx) error {
		_, _, err := tx.Set(key, string(b), nil)
		return err
	})
}
