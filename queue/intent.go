package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tidwall/buntdb"
)

// intent is the value of inbox:<id>: every key a change writes, decided in
// full before anything is written. Applying never moves a key back in
// version (a record is written only over an older or equal version, a
// queue entry only over an older one), so an intent applied again — after
// a power cut, even after later changes — changes nothing it should not.
type Plan struct {
	ID    uint64       `json:"id"`
	Recs  []PlanRecord `json:"r,omitempty"`
	Queue []QueueOp    `json:"q,omitempty"`
	Logs  []LogOp      `json:"l,omitempty"`
	Kids  []KidOp      `json:"k,omitempty"`
	// Site is the pushing site's new state (its syncOutId high-water mark).
	Site *SiteState `json:"s,omitempty"`
}

// intentRec writes a record's new value.
type PlanRecord struct {
	Key string      `json:"k"`
	Val RecordState `json:"v"`
}

// intentQ queues a record for a site at Ord (Del: an entry that deletes it
// there), or with Remove takes out the site's entry if older than Ord.
type QueueOp struct {
	Site   int    `json:"s"`
	Table  string `json:"t"`
	ID     string `json:"i"`
	Ord    uint64 `json:"o"`
	Del    bool   `json:"x,omitempty"`
	Remove bool   `json:"rm,omitempty"`
}

// intentLog puts a central record at Cursor in the central log, removing
// its previous entry.
type LogOp struct {
	Cursor uint64 `json:"c"`
	Prev   uint64 `json:"p,omitempty"`
	Ref    Ref    `json:"r"`
}

// intentKid adds (or with Del removes) a child row's index entry.
type KidOp struct {
	Key string `json:"k"`
	Del bool   `json:"x,omitempty"`
}

func decodeIntent(s string) (Plan, error) {
	var in Plan
	err := json.Unmarshal([]byte(s), &in)
	return in, err
}

func (it Plan) empty() bool {
	return len(it.Recs) == 0 && len(it.Queue) == 0 && len(it.Logs) == 0 && len(it.Kids) == 0
}

// coalesce keeps, of the writes of one key, only the last: a record
// pushed several times in a batch is written once, at its last state. Each
// key's writes come in rising version, and each write lands only over an
// older version, so the last alone leaves what the sequence leaves
// (queue lengths included). The central log's ops are kept: each removes
// its predecessor's entry.
func (it *Plan) coalesce() {
	it.Recs = lastOfEach(it.Recs, func(r PlanRecord) string { return r.Key })
	it.Kids = lastOfEach(it.Kids, func(k KidOp) string { return k.Key })
	type entry struct {
		site      int
		table, id string
	}
	it.Queue = lastOfEach(it.Queue, func(q QueueOp) entry { return entry{q.Site, q.Table, q.ID} })
}

// lastOfEach returns ops without those followed by another of the same
// key, in order.
func lastOfEach[T any, K comparable](ops []T, key func(T) K) []T {
	if len(ops) < 2 {
		return ops
	}
	last := make(map[K]int, len(ops))
	for i, op := range ops {
		last[key(op)] = i
	}
	if len(last) == len(ops) {
		return ops
	}
	out := make([]T, 0, len(last))
	for i, op := range ops {
		if last[key(op)] == i {
			out = append(out, op)
		}
	}
	return out
}

// maxVersion is the highest version the intent uses.
func (it Plan) maxVersion() uint64 {
	m := it.ID
	for _, r := range it.Recs {
		m = max(m, r.Val.Version)
	}
	for _, q := range it.Queue {
		m = max(m, q.Ord)
	}
	for _, l := range it.Logs {
		m = max(m, l.Cursor)
	}
	return m
}

// runIntentLocked writes one plan's intent (commit 1) and applies it
// (commit 2).
func (c *Central) runIntentLocked(it Plan) error {
	if it.empty() {
		return nil
	}
	it.ID = c.nextVersion()
	return c.runIntentsLocked([]decided{{plan: it, states: encodeStates(it)}})
}

// runIntentsLocked writes the intents of a group of pushes (commit 1: one
// key each, so each push is atomic on its own) and applies them all
// (commit 2). The intent keys are deleted by the next commit.
func (c *Central) runIntentsLocked(ds []decided) error {
	if err := c.updateLocked("record incoming changes", func(tx *buntdb.Tx) error {
		for _, d := range ds {
			if _, _, err := tx.Set(inboxKey(d.plan.ID), encodePlan(d.plan, d.states), nil); err != nil {
				return err
			}
		}
		return setJSONKey(tx, versionKey, c.version, nil)
	}); err != nil {
		return err
	}
	c.pending = true
	plans := make([]Plan, len(ds))
	states := make([][]string, len(ds))
	for i, d := range ds {
		plans[i], states[i] = d.plan, d.states
	}
	if err := c.applyLocked(plans, states); err != nil {
		return err
	}
	c.pending = false
	c.visible = c.maxCentral
	return nil
}

// encodeStates encodes each record state of a plan once: the same string
// goes into the intent and, when applied, into the record's key.
func encodeStates(it Plan) []string {
	states := make([]string, len(it.Recs))
	for i, r := range it.Recs {
		states[i] = encodeRecordState(r.Val)
	}
	return states
}

// encodePlan renders the intent key's value from the plan and its encoded
// record states.
func encodePlan(it Plan, states []string) string {
	n := 64 + len(it.Queue)*48
	for _, v := range states {
		n += len(v) + 64
	}
	var b strings.Builder
	b.Grow(n)
	var scratch []byte // for the small parts the append encoders write
	b.WriteString(`{"r":[`)
	for i, r := range it.Recs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"k":`)
		scratch = appendString(scratch[:0], r.Key)
		b.Write(scratch)
		b.WriteString(`,"v":`)
		b.WriteString(states[i])
		b.WriteByte('}')
	}
	b.WriteString("],")
	if len(it.Queue) > 0 {
		b.WriteString(`"q":[`)
		for i, op := range it.Queue {
			if i > 0 {
				b.WriteByte(',')
			}
			scratch = appendQueueOp(scratch[:0], op)
			b.Write(scratch)
		}
		b.WriteString("],")
	}
	rest := it
	rest.Recs, rest.Queue = nil, nil
	tail, err := marshal(rest)
	if err != nil {
		panic(err) // ids, refs, keys and a site state: always encodable
	}
	b.Write(tail[1:]) // without its opening brace
	return b.String()
}

// applyLocked applies intents, in order, in one commit. states, when
// given, are each intent's record states already encoded, for plans
// decided under this lock just now: no later change can be in their keys,
// so their versions need no check (a plan applied again after a restart is
// checked).
func (c *Central) applyLocked(its []Plan, states [][]string) error {
	delta := map[int]int{}
	maxCentral := c.maxCentral
	err := c.updateLocked("apply incoming changes", func(tx *buntdb.Tx) error {
		clear(delta)
		maxCentral = c.maxCentral
		for i, it := range its {
			var st []string
			if states != nil {
				st = states[i]
			}
			if err := applyPlan(tx, it, st, delta, &maxCentral, &c.st.txGrown); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, it := range its {
		if it.Site != nil {
			e := c.siteLocked(it.Site.SyncID)
			e.state, e.saved = *it.Site, it.Site.LastContact
		}
		for _, k := range it.Kids {
			if !k.Del {
				c.noteParent(k.Key)
			}
		}
		c.applied = append(c.applied, it.ID)
	}
	for site, n := range delta {
		c.qlen[site] += n
	}
	c.maxCentral = maxCentral
	return nil
}

// applyPlan writes one intent's keys in tx, adding its queue length
// changes to delta, raising maxCentral to its highest log cursor, and
// adding to grown the size of the records and entries it creates (live
// data: a burst of new records does not make the file look half garbage,
// store.maybeCompact).
func applyPlan(tx *buntdb.Tx, it Plan, states []string, delta map[int]int, maxCentral *uint64, grown *int64) error {
	fresh := states != nil // decided just now: nothing newer is in its keys
	versions := make(map[string]uint64, len(it.Recs))
	for i, r := range it.Recs {
		if states != nil {
			_, replaced, err := tx.Set(r.Key, states[i], nil)
			if err != nil {
				return err
			}
			if !replaced {
				*grown += int64(len(r.Key) + len(states[i]) + 32)
			}
			versions[r.Key] = r.Val.Version
			continue
		}
		old, ok, err := getCentral(tx, r.Key)
		if err != nil {
			return err
		}
		if ok && old.Version > r.Val.Version {
			versions[r.Key] = old.Version
			continue // a later change is there already
		}
		if _, _, err := tx.Set(r.Key, encodeRecordState(r.Val), nil); err != nil {
			return err
		}
		versions[r.Key] = r.Val.Version
	}
	for _, l := range it.Logs {
		if l.Prev != 0 && l.Prev != l.Cursor {
			if err := deleteKey(tx, clogKey(l.Prev)); err != nil {
				return err
			}
		}
		if versions[recKey(l.Ref.Table, l.Ref.ID)] != l.Cursor {
			continue
		}
		if err := setJSONKey(tx, clogKey(l.Cursor), l.Ref, nil); err != nil {
			return err
		}
		*maxCentral = max(*maxCentral, l.Cursor)
	}
	for _, q := range it.Queue {
		var n int
		var err error
		if q.Remove {
			n, err = removeEntry(tx, q.Site, q.Table, q.ID, q.Ord, fresh)
		} else {
			n, err = setEntry(tx, q.Site, q.Table, q.ID, q.Ord, q.Del, fresh, grown)
		}
		if err != nil {
			return err
		}
		delta[q.Site] += n
	}
	for _, k := range it.Kids {
		var err error
		if k.Del {
			err = deleteKey(tx, k.Key)
		} else {
			_, _, err = tx.Set(k.Key, "1", nil)
		}
		if err != nil {
			return err
		}
	}
	if it.Site != nil {
		return setJSONKey(tx, siteKey(it.Site.SyncID), *it.Site, nil)
	}
	return nil
}

// drainLocked applies every intent left by a power cut or a failed commit.
// Every change calls it first, so nothing is acknowledged or decided on top
// of a change that is only half written.
func (c *Central) drainLocked() error {
	if err := c.st.usable(); err != nil {
		return err
	}
	if !c.pending {
		return nil
	}
	var its []Plan
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
	for _, it := range its { // in key order: the order they were decided in
		if err := c.applyLocked([]Plan{it}, nil); err != nil {
			return fmt.Errorf("cannot apply a pending change: %w", err)
		}
	}
	if len(its) > 0 {
		// One commit removes them all (applying them again would be harmless).
		if err := c.updateLocked("remove applied changes", func(*buntdb.Tx) error { return nil }); err != nil {
			return fmt.Errorf("cannot remove applied changes: %w", err)
		}
		c.log.Info("applied changes left by a restart or a failed commit", "count", len(its))
	}
	c.pending = false
	c.visible = c.maxCentral
	return nil
}
