package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tidwall/buntdb"
)

// QueuedEntry is one record waiting in a site's queue.
type QueuedEntry struct {
	// SyncOutID names the entry for Ack: "<gseq>-<idx>", both zero-padded.
	SyncOutID string
	Record    Record
}

// Queued returns up to limit records of site's queue, oldest first, and the
// queue's length. They stay queued until Ack. limit <= 0 means
// DefaultListLimit.
func (c *Central) Queued(site int, limit int) ([]QueuedEntry, int, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	prefix := queuePrefix + padSite(site) + ":"
	var out []QueuedEntry
	var derr error
	err := c.st.view(func(tx *buntdb.Tx) error {
		return tx.AscendGreaterOrEqual("", prefix, func(k, s string) bool {
			if !strings.HasPrefix(k, prefix) {
				return false
			}
			r, err := decodeRecord(s)
			if err != nil {
				derr = fmt.Errorf("queue entry %s is unreadable: %w", k, err)
				return false
			}
			out = append(out, QueuedEntry{SyncOutID: k[len(prefix):], Record: r})
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

// Ack removes acknowledged records from site's queue in one commit and
// returns how many it removed. Unknown, malformed or already acknowledged
// ids, and ids of other sites' queues, are ignored. Call it only once the
// site has made the records durable: an acknowledged record is gone.
func (c *Central) Ack(site int, syncOutIDs []string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.drainLocked(); err != nil {
		return 0, err
	}
	removed := 0
	err := c.st.update("acknowledge records", func(tx *buntdb.Tx) error {
		removed = 0
		for _, id := range syncOutIDs {
			if _, _, ok := parseQueueID(id); !ok {
				continue
			}
			_, err := tx.Delete(queueKey(site, id))
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
	return removed, nil
}

// Fill queues for site every current store record that match accepts
// (initialise, or "generate sync records" on the primary). Central records
// are not queued: sites read them by cursor. It commits in batches so other
// calls interleave, ignores QueueMax, and returns how many records it
// queued. After a power cut in the middle, run it again: a record queued
// twice is applied twice, which is harmless. match runs with the datafile
// locked: it must not call back into c.
func (c *Central) Fill(site int, match func(Record) bool) (int, error) {
	if site <= 0 {
		return 0, fmt.Errorf("cannot fill the queue of site %d", site)
	}
	total := 0
	pivot := recPrefix
	for pivot != "" {
		n, next, err := c.fillBatch(site, match, pivot)
		total += n
		if err != nil {
			return total, err
		}
		pivot = next
	}
	c.log.Info("filled site queue", "site", site, "count", total)
	return total, nil
}

func (c *Central) fillBatch(site int, match func(Record) bool, pivot string) (int, string, error) {
	const batch, scan = 1000, 10000
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.drainLocked(); err != nil {
		return 0, "", err
	}
	var vals []string
	next, seen := "", 0
	err := c.st.view(func(tx *buntdb.Tx) error {
		var derr error
		err := tx.AscendGreaterOrEqual("", pivot, func(k, s string) bool {
			table, id, ok := splitRecKey(k)
			if !ok {
				return false
			}
			if seen >= scan || len(vals) >= batch {
				next = k
				return false
			}
			seen++
			var v centralValue
			if err := json.Unmarshal([]byte(s), &v); err != nil {
				derr = fmt.Errorf("datafile value of %s is unreadable: %w", k, err)
				return false
			}
			if v.Tomb || v.Store == "" {
				return true
			}
			r := Record{Table: table, ID: id, Action: v.Action, Data: v.Data}
			if match(r) {
				q, err := encodeRecord(r)
				if err != nil {
					derr = err
					return false
				}
				vals = append(vals, q)
			}
			return true
		})
		return errors.Join(err, derr)
	})
	if err != nil || len(vals) == 0 {
		return 0, next, err
	}
	c.lastGseq++
	gseq := c.lastGseq
	added := 0
	err = c.st.update("fill site queue", func(tx *buntdb.Tx) error {
		added = 0
		for i, v := range vals {
			_, replaced, err := tx.Set(queueKey(site, queueID(gseq, i)), v, nil)
			if err != nil {
				return err
			}
			if !replaced {
				added++
			}
		}
		_, _, err := tx.Set(gseqKey, formatUint(gseq), nil)
		return err
	})
	if err != nil {
		return 0, next, err
	}
	c.qlen[site] += added
	return added, next, nil
}
