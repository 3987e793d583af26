package queue

import (
	"errors"
	"fmt"
	"slices"

	"github.com/tidwall/buntdb"
)

// Inbound is one record pushed by a site, with the sites it is routed to.
type Inbound struct {
	SyncOutID string
	Record    Record
	Dests     []int
}

// AcceptResult counts what Accept did.
type AcceptResult struct {
	Accepted  int // records applied and queued
	Duplicate int // records already accepted from this site (a repeated push)
}

// Accept applies a batch pushed by site origin: each record is written to
// the central datafile and queued for its Dests (never for origin itself;
// repeated dests count once). Central records (no store_ID) also go to the
// central log. A record whose SyncOutID was already accepted from origin
// (in the last 30 days) is skipped and counted as Duplicate, so a batch
// pushed twice changes nothing. The batch is durable when Accept returns
// nil. An invalid record refuses the batch (nothing changes), as does a
// destination queue at QueueMax (ErrQueueFull).
func (c *Central) Accept(origin int, in []Inbound) (AcceptResult, error) {
	if origin <= 0 {
		return AcceptResult{}, fmt.Errorf("cannot accept a push from site %d", origin)
	}
	if len(in) > maxIntentLen {
		return AcceptResult{}, fmt.Errorf("cannot accept %d records in one push (at most %d)", len(in), maxIntentLen)
	}
	norm := make([]Inbound, len(in))
	for i, x := range in {
		r, err := normalize(x.Record)
		if err != nil {
			return AcceptResult{}, fmt.Errorf("cannot accept record %d: %w", i, err)
		}
		if x.SyncOutID == "" || len(x.SyncOutID) > 200 || hasControl(x.SyncOutID) {
			return AcceptResult{}, fmt.Errorf("cannot accept record %d (%s/%s): invalid syncOutId %q", i, r.Table, r.ID, x.SyncOutID)
		}
		norm[i] = Inbound{SyncOutID: x.SyncOutID, Record: r, Dests: cleanDests(x.Dests, origin)}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.drainLocked(); err != nil {
		return AcceptResult{}, err
	}
	var res AcceptResult
	var fresh []Inbound
	err := c.st.view(func(tx *buntdb.Tx) error {
		batch := map[string]bool{}
		for _, x := range norm {
			key := seenKey(origin, x.SyncOutID)
			_, err := tx.Get(key)
			switch {
			case err == nil || batch[key]:
				res.Duplicate++
				continue
			case !errors.Is(err, buntdb.ErrNotFound):
				return err
			}
			batch[key] = true
			fresh = append(fresh, x)
		}
		return nil
	})
	if err != nil || len(fresh) == 0 {
		return res, err
	}
	if err := c.runIntentLocked(origin, fresh); err != nil {
		return AcceptResult{}, err
	}
	res.Accepted = len(fresh)
	return res, nil
}

// Write is the primary's own change: written to the central datafile and
// queued for dests; a central record (no store_ID, or a delete of one) also
// goes to the central log and its cursor is returned (0 otherwise).
func (c *Central) Write(r Record, dests []int) (uint64, error) {
	n, err := normalize(r)
	if err != nil {
		return 0, fmt.Errorf("cannot write record: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.drainLocked(); err != nil {
		return 0, err
	}
	cur := c.maxCursor
	if err := c.runIntentLocked(0, []Inbound{{Record: n, Dests: cleanDests(dests, 0)}}); err != nil {
		return 0, err
	}
	if c.maxCursor > cur {
		return c.maxCursor, nil
	}
	return 0, nil
}

// cleanDests drops the origin, non-positive ids and repeats, sorted.
func cleanDests(dests []int, origin int) []int {
	out := make([]int, 0, len(dests))
	for _, d := range dests {
		if d > 0 && d != origin && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

// runIntentLocked decides every key of the change, writes the intent (commit
// 1), applies it (commit 2) and deletes it (commit 3).
func (c *Central) runIntentLocked(origin int, in []Inbound) error {
	it, err := c.planLocked(origin, in)
	if err != nil {
		return err
	}
	if err := c.writeIntentLocked(it); err != nil {
		return err
	}
	if err := c.applyLocked(it); err != nil {
		return err
	}
	// The change is durable: a failure to delete the intent only leaves
	// work for the next drain.
	if err := c.finishLocked(it.Gseq); err != nil {
		c.log.Warn("cannot remove applied intent; will retry", "gseq", it.Gseq, "err", err)
		return nil
	}
	c.pending = false
	c.visible = c.maxCursor
	return nil
}

// planLocked turns a batch into an intent: the store of each record, its
// log cursor (central data), the log entry it replaces, a new gseq.
func (c *Central) planLocked(origin int, in []Inbound) (intent, error) {
	if err := c.checkQueueMaxLocked(in); err != nil {
		return intent{}, err
	}
	it := intent{Origin: origin, Entries: make([]intentEntry, 0, len(in))}
	cursor := c.maxCursor
	err := c.st.view(func(tx *buntdb.Tx) error {
		overlay := map[string]centralValue{} // earlier entries of this batch
		for _, x := range in {
			r := x.Record
			key := recKey(r.Table, targetID(r))
			old, ok := overlay[key]
			if !ok {
				var err error
				if old, _, err = getCentral(tx, key); err != nil {
					return err
				}
			}
			e := intentEntry{SyncOutID: x.SyncOutID, Record: toJSON(r), Dests: x.Dests, Store: r.StoreID(), Prev: old.Cursor}
			if e.Store == "" && (r.Action == Delete || r.Action == Merge) {
				e.Store = old.Store // a delete carries no data: it belongs where the record did
			}
			if e.Store == "" {
				cursor++
				e.Cursor = cursor
			}
			overlay[key] = centralValue{Cursor: e.Cursor, Store: e.Store}
			it.Entries = append(it.Entries, e)
		}
		return nil
	})
	if err != nil {
		return intent{}, err
	}
	c.lastGseq++
	it.Gseq = c.lastGseq
	c.maxCursor = cursor
	return it, nil
}

// writeIntentLocked commits the intent key and the counters it used.
func (c *Central) writeIntentLocked(it intent) error {
	b, err := marshal(it)
	if err != nil {
		return err
	}
	if err := c.st.update("record incoming batch", func(tx *buntdb.Tx) error {
		if _, _, err := tx.Set(inboxKey(it.Gseq), string(b), nil); err != nil {
			return err
		}
		if _, _, err := tx.Set(gseqKey, formatUint(it.Gseq), nil); err != nil {
			return err
		}
		_, _, err := tx.Set(cursorKey, formatUint(c.maxCursor), nil)
		return err
	}); err != nil {
		return err
	}
	c.pending = true
	return nil
}

func (c *Central) checkQueueMaxLocked(in []Inbound) error {
	if c.queueMax <= 0 {
		return nil
	}
	add := map[int]int{}
	for _, x := range in {
		for _, d := range x.Dests {
			add[d]++
		}
	}
	for site, n := range add {
		if c.qlen[site]+n > c.queueMax {
			return fmt.Errorf("%w: site %d has %d records waiting (limit %d), cannot queue %d more; the site must pull first",
				ErrQueueFull, site, c.qlen[site], c.queueMax, n)
		}
	}
	return nil
}
