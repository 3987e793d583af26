package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tidwall/buntdb"
)

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
