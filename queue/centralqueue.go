package queue

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/buntdb"
)

// A site's queue holds at most one entry per record: q:<site>:<table>:<id>.
// The entry's value is `{"q":"<site>-<ord>"}` (or with `"x":1`, an entry
// that deletes the record from that site), where ord is the version that
// queued it; the queue index orders entries by that fixed-width prefix, so a
// site's queue reads in the primary's order. An entry delivers the record's
// current copy, never the copy of the moment it was queued, and its ord is
// the syncOutId the site acknowledges: an entry replaced since (a newer
// change) is not removed by acknowledging the older one.

// QueuedEntry is one record waiting in a site's queue.
type QueuedEntry struct {
	// SyncOutID names the entry for Ack: the version that queued it.
	SyncOutID string
	Record    Record
}

const (
	queueValueHead = `{"q":"`
	queueOrderLen  = len(queueValueHead) + siteWidth + 1 + seqWidth
)

func queueKeyPrefix(site int) string { return queuePrefix + padSite(site) + ":" }

func queueKey(site int, table, id string) string { return queueKeyPrefix(site) + table + ":" + id }

func queueSitePivot(site int) string { return queueValueHead + padSite(site) + "-" }

func queueValue(site int, ord uint64, del bool) string {
	v := queueSitePivot(site) + pad(ord) + `"`
	if del {
		return v + `,"x":1}`
	}
	return v + "}"
}

// parseQueueValue reads what queueValue wrote.
func parseQueueValue(v string) (site int, ord uint64, del bool, ok bool) {
	if len(v) < queueOrderLen+2 || !strings.HasPrefix(v, queueValueHead) || v[len(queueValueHead)+siteWidth] != '-' {
		return 0, 0, false, false
	}
	s, err1 := strconv.Atoi(v[len(queueValueHead) : len(queueValueHead)+siteWidth])
	o, err2 := parseUint(v[len(queueValueHead)+siteWidth+1 : queueOrderLen])
	switch rest := v[queueOrderLen:]; {
	case err1 != nil || err2 != nil:
		return 0, 0, false, false
	case rest == `"}`:
		return s, o, false, true
	case rest == `","x":1}`:
		return s, o, true, true
	}
	return 0, 0, false, false
}

func lessQueued(a, b string) bool { return queuePrefixOf(a) < queuePrefixOf(b) }

func queuePrefixOf(v string) string {
	if len(v) > queueOrderLen {
		return v[:queueOrderLen]
	}
	return v
}

// setEntry queues table/id for site at ord unless an entry at least as new
// is there, and returns the change in queue length. fresh: ord was handed
// out under the lock just now, so every entry there is older and need not
// be read. A new entry's size is added to grown (live data, not garbage:
// store.maybeCompact).
func setEntry(tx *buntdb.Tx, site int, table, id string, ord uint64, del, fresh bool, grown *int64) (int, error) {
	key := queueKey(site, table, id)
	if !fresh {
		old, err := tx.Get(key)
		switch {
		case errors.Is(err, buntdb.ErrNotFound):
		case err != nil:
			return 0, err
		default:
			if _, o, _, ok := parseQueueValue(old); ok && o >= ord {
				return 0, nil
			}
		}
	}
	val := queueValue(site, ord, del)
	_, replaced, err := tx.Set(key, val, nil)
	if err != nil || replaced {
		return 0, err
	}
	*grown += int64(len(key) + len(val) + 32) // as verify counts a key
	return 1, nil
}

// removeEntry removes site's entry for table/id if it was queued before
// ord, and returns the change in queue length. fresh as for setEntry.
func removeEntry(tx *buntdb.Tx, site int, table, id string, ord uint64, fresh bool) (int, error) {
	key := queueKey(site, table, id)
	if !fresh {
		old, err := tx.Get(key)
		if errors.Is(err, buntdb.ErrNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		if _, o, _, ok := parseQueueValue(old); ok && o >= ord {
			return 0, nil
		}
	}
	_, err := tx.Delete(key)
	if errors.Is(err, buntdb.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return -1, nil
}

// Queued returns up to limit records of site's queue, in the primary's
// order, each as the primary holds it now, and the queue's length. They
// stay queued until Ack. limit <= 0 means DefaultListLimit.
func (c *Central) Queued(site int, limit int) ([]QueuedEntry, int, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	prefix := queueSitePivot(site)
	keyPrefix := queueKeyPrefix(site)
	var out []QueuedEntry
	var derr error
	err := c.st.view(func(tx *buntdb.Tx) error {
		return tx.AscendGreaterOrEqual(queueIndex, prefix, func(k, s string) bool {
			if !strings.HasPrefix(s, prefix) {
				return false
			}
			_, ord, del, ok := parseQueueValue(s)
			table, id, found := strings.Cut(strings.TrimPrefix(k, keyPrefix), ":")
			if !ok || !found {
				derr = fmt.Errorf("queue entry %s is unreadable", k)
				return false
			}
			r := Record{Table: table, ID: id, Action: Delete}
			if !del {
				v, held, err := getCentral(tx, recKey(table, id))
				if err != nil {
					derr = err
					return false
				}
				if held {
					r = v.current(table, id).Record
				}
			}
			out = append(out, QueuedEntry{SyncOutID: formatUint(ord), Record: r})
			return len(out) < limit
		})
	})
	return out, c.qlen[site], errors.Join(err, derr)
}

// QueueLen is the number of records waiting in site's queue (from memory).
func (c *Central) QueueLen(site int) int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.qlen[site]
}

// Ack removes acknowledged entries from site's queue in one commit and
// returns how many it removed. Unknown, malformed or already acknowledged
// ids, ids of entries replaced since, and ids of other sites' queues are
// ignored. Call it only once the site has made the records durable.
func (c *Central) Ack(site int, syncOutIDs []string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.drainLocked(); err != nil {
		return 0, err
	}
	var keys []string
	var ords []uint64
	if err := c.st.view(func(tx *buntdb.Tx) error {
		for _, id := range syncOutIDs {
			ord, err := parseUint(id)
			if err != nil || len(id) > seqWidth {
				continue
			}
			want := queueSitePivot(site) + pad(ord) + `"`
			if err := tx.AscendGreaterOrEqual(queueIndex, want, func(k, s string) bool {
				if strings.HasPrefix(s, want) {
					keys, ords = append(keys, k), append(ords, ord)
				}
				return false
			}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return 0, err
	}
	if len(keys) == 0 {
		return 0, nil
	}
	removed := 0
	site0 := c.siteLocked(site).state
	state := site0
	for _, o := range ords {
		state.AckedHigh = max(state.AckedHigh, o)
	}
	err := c.updateLocked("acknowledge records", func(tx *buntdb.Tx) error {
		removed = 0
		if state.AckedHigh != site0.AckedHigh {
			if err := setJSONKey(tx, siteKey(site), state, nil); err != nil {
				return err
			}
		}
		for _, k := range keys {
			_, err := tx.Delete(k)
			if errors.Is(err, buntdb.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	c.qlen[site] -= removed
	e := c.siteLocked(site)
	e.state.AckedHigh = state.AckedHigh
	return removed, nil
}

// Fill makes site's queue hold every record the site must hold
// (initialise, or "generate sync records" on the primary): each record the
// site holds gets an entry unless it has one; central records are not
// queued (sites read them by cursor). A record is queued once however often
// Fill runs, so a site downloads each record once. It commits in batches so
// other calls interleave, ignores QueueMax, and returns how many entries it
// added. After a power cut in the middle, run it again.
func (c *Central) Fill(site int) (int, error) {
	if site <= 0 {
		return 0, fmt.Errorf("cannot fill the queue of site %d", site)
	}
	c.mu.Lock()
	c.filling[site] = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.filling, site)
		c.mu.Unlock()
	}()
	total := 0
	for pivot := recPrefix; pivot != ""; {
		n, next, err := c.fillBatch(site, pivot)
		total += n
		if err != nil {
			return total, err
		}
		pivot = next
	}
	c.log.Info("filled site queue", "site", site, "added", total)
	return total, nil
}

// Filling reports whether a Fill of site's queue is running.
func (c *Central) Filling(site int) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.filling[site]
}

func (c *Central) fillBatch(site int, pivot string) (int, string, error) {
	const batch, scan = 1000, 10000
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.drainLocked(); err != nil {
		return 0, "", err
	}
	var refs []Ref
	next, seen := "", 0
	err := c.st.view(func(tx *buntdb.Tx) error {
		var derr error
		err := tx.AscendGreaterOrEqual("", pivot, func(k, s string) bool {
			table, id, ok := splitRecKey(k)
			if !ok {
				return false
			}
			if seen >= scan || len(refs) >= batch {
				next = k
				return false
			}
			seen++
			var v RecordState
			if err := decodeRecordState(s, &v); err != nil {
				derr = fmt.Errorf("datafile value of %s is unreadable: %w", k, err)
				return false
			}
			if v.Deleted || v.Held || !v.holds(site) {
				return true
			}
			if cur, err := tx.Get(queueKey(site, table, id)); err == nil {
				if _, _, del, ok := parseQueueValue(cur); ok && !del {
					return true // already queued: it delivers the current copy
				}
			}
			refs = append(refs, Ref{table, id})
			return true
		})
		return errors.Join(err, derr)
	})
	if err != nil || len(refs) == 0 {
		return 0, next, err
	}
	added := 0
	first := c.version
	err = c.updateLocked("fill site queue", func(tx *buntdb.Tx) error {
		added, c.version = 0, first
		for _, r := range refs {
			n, err := setEntry(tx, site, r.Table, r.ID, c.nextVersion(), false, true, &c.st.txGrown)
			if err != nil {
				return err
			}
			added += n
		}
		return setJSONKey(tx, versionKey, c.version, nil)
	})
	if err != nil {
		return 0, next, err
	}
	c.qlen[site] += added
	return added, next, nil
}

// purgeQueueLocked removes every entry of site's queue, in batches.
func (c *Central) purgeQueueLocked(site int) (int, error) {
	total := 0
	for {
		var keys []string
		if err := c.st.view(func(tx *buntdb.Tx) error {
			return tx.AscendGreaterOrEqual("", queueKeyPrefix(site), func(k, _ string) bool {
				if !strings.HasPrefix(k, queueKeyPrefix(site)) || len(keys) >= 5000 {
					return false
				}
				keys = append(keys, k)
				return true
			})
		}); err != nil {
			return total, err
		}
		if len(keys) == 0 {
			return total, nil
		}
		if err := c.updateLocked("purge site queue", func(tx *buntdb.Tx) error {
			for _, k := range keys {
				if err := deleteKey(tx, k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return total, err
		}
		total += len(keys)
		c.qlen[site] -= len(keys)
	}
}
