package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

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

// intent is the value of inbox:<gseq>: everything a push or write changes,
// with every key and cursor already decided, so applying it twice gives
// the same state as applying it once.
type intent struct {
	Origin  int           `json:"origin"` // pushing site; 0 for the primary's own write
	Gseq    uint64        `json:"gseq"`
	Entries []intentEntry `json:"entries"`
}

type intentEntry struct {
	SyncOutID string     `json:"sid,omitempty"`
	Record    recordJSON `json:"rec"`
	Dests     []int      `json:"dests,omitempty"`
	Store     string     `json:"store,omitempty"`
	Cursor    uint64     `json:"cursor,omitempty"` // its clog entry, central data only
	Prev      uint64     `json:"prev,omitempty"`   // the record's previous clog entry, to remove
}

func decodeIntent(s string) (intent, error) {
	var in intent
	err := json.Unmarshal([]byte(s), &in)
	return in, err
}

func inboxKey(gseq uint64) string { return inboxPrefix + pad(gseq) }

func seenKey(origin int, sid string) string { return fmt.Sprintf("%s%d:%s", seenPrefix, origin, sid) }

// queueID is the SyncOutID a site sees for a queued record: "<gseq>-<idx>".
func queueID(gseq uint64, idx int) string {
	return fmt.Sprintf("%0*d-%0*d", seqWidth, gseq, idxWidth, idx)
}

func queueKey(site int, id string) string { return queuePrefix + padSite(site) + ":" + id }

// parseQueueID accepts exactly the ids queueID makes.
func parseQueueID(id string) (gseq uint64, idx int, ok bool) {
	g, i, found := strings.Cut(id, "-")
	if !found || len(g) != seqWidth || len(i) != idxWidth || !digits(g) || !digits(i) {
		return 0, 0, false
	}
	gseq, _ = parseUint(g)
	n, _ := parseUint(i)
	return gseq, int(n), true
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
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

// applyLocked applies an intent in one commit. Every key it writes is
// decided by the intent, so applying it again after a power cut (or after a
// failed commit) gives the same state.
func (c *Central) applyLocked(it intent) error {
	delta := map[int]int{}
	err := c.st.update("apply incoming batch", func(tx *buntdb.Tx) error {
		clear(delta)
		seenOpts := &buntdb.SetOptions{Expires: true, TTL: seenTTL}
		for idx, e := range it.Entries {
			r := e.Record.record()
			key := recKey(r.Table, targetID(r))
			var err error
			switch {
			case r.Action != Delete && r.Action != Merge:
				err = setJSONKey(tx, key, centralValue{Cursor: e.Cursor, Store: e.Store, Action: r.Action, Data: r.Data}, nil)
			case e.Cursor != 0:
				err = setJSONKey(tx, key, centralValue{Cursor: e.Cursor, Action: r.Action, Tomb: true}, nil)
			default:
				err = deleteKey(tx, key)
			}
			if err != nil {
				return err
			}
			if e.Prev != 0 && e.Prev != e.Cursor {
				if err := deleteKey(tx, clogPrefix+pad(e.Prev)); err != nil {
					return err
				}
			}
			if e.Cursor != 0 {
				if err := setJSONKey(tx, clogPrefix+pad(e.Cursor), e.Record, nil); err != nil {
					return err
				}
			}
			qv, err := marshal(e.Record)
			if err != nil {
				return err
			}
			for _, d := range e.Dests {
				_, replaced, err := tx.Set(queueKey(d, queueID(it.Gseq, idx)), string(qv), nil)
				if err != nil {
					return err
				}
				if !replaced {
					delta[d]++
				}
			}
			if e.SyncOutID != "" {
				if _, _, err := tx.Set(seenKey(it.Origin, e.SyncOutID), "1", seenOpts); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for site, n := range delta {
		c.qlen[site] += n
	}
	return nil
}

func (c *Central) finishLocked(gseq uint64) error {
	return c.st.update("remove applied intent", func(tx *buntdb.Tx) error { return deleteKey(tx, inboxKey(gseq)) })
}

// drainLocked applies and removes every intent left by a power cut or a
// failed commit. Every change calls it first, so no acknowledgement can
// happen before an older intent is applied (which would resurrect the
// acknowledged queue entry).
func (c *Central) drainLocked() error {
	if err := c.st.usable(); err != nil {
		return err
	}
	if !c.pending {
		return nil
	}
	var its []intent
	if err := c.st.view(func(tx *buntdb.Tx) error {
		var derr error
		err := tx.AscendKeys(inboxPrefix+"*", func(k, v string) bool {
			in, err := decodeIntent(v)
			if err != nil {
				derr = fmt.Errorf("intent %s is unreadable: %w", k, err)
				return false
			}
			its = append(its, in)
			return true
		})
		return errors.Join(err, derr)
	}); err != nil {
		return err
	}
	for _, it := range its {
		if err := c.applyLocked(it); err != nil {
			return fmt.Errorf("cannot apply a pending incoming batch: %w", err)
		}
		if err := c.finishLocked(it.Gseq); err != nil {
			return fmt.Errorf("cannot remove an applied incoming batch: %w", err)
		}
	}
	if len(its) > 0 {
		c.log.Info("applied incoming batches left by a restart or a failed commit", "count", len(its))
	}
	c.pending = false
	c.visible = c.maxCursor
	return nil
}

func setJSONKey(tx *buntdb.Tx, key string, v any, opts *buntdb.SetOptions) error {
	b, err := marshal(v)
	if err != nil {
		return err
	}
	_, _, err = tx.Set(key, string(b), opts)
	return err
}

func deleteKey(tx *buntdb.Tx, key string) error {
	_, err := tx.Delete(key)
	if errors.Is(err, buntdb.ErrNotFound) {
		return nil
	}
	return err
}
