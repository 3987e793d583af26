package queue

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/tidwall/buntdb"
)

// Inbound is one record pushed by a site.
type Inbound struct {
	SyncOutID string
	Record    Record
}

// Outcome is what Accept did with one inbound record.
type Outcome struct {
	Duplicate bool     // the same change was accepted before (a repeated push)
	Refused   *Refusal // not accepted: the reason
	Version   uint64   // the version the change got (0 when not accepted)
}

// AcceptResult says what Accept did, record by record.
type AcceptResult struct {
	Outcomes  []Outcome // one per inbound record, in order
	Accepted  int
	Duplicate int
	Refused   int
	// Rewound: the site sent new changes numbered at or below numbers it
	// used before (an outbox restored from a backup, a reinstall): they were
	// taken, and the site's queue was marked for a refill.
	Rewound bool
}

// Limits of what Accept takes.
const (
	MaxSyncOutID = 128    // bytes of a syncOutId
	maxBatch     = 100000 // records in one Accept
)

// Accept applies a batch pushed by site origin in the primary's order: for
// each record, router decides (with the primary's current copy) whether it
// is accepted, who owns it and which sites hold it. An accepted change gets
// the next version, becomes the record's current copy, and is queued for
// every other holder; the pusher's own older queue entry for the record is
// removed (its change supersedes it). A site that no longer holds the
// record gets a delete. A change accepted before from the same site (same
// syncOutId and content) is a Duplicate and changes nothing, except that a
// site whose change has been superseded since is sent the current copy. A
// refused change is answered with the primary's copy: the pusher is queued
// the record as the primary holds it, or a delete if it must not hold it.
// The batch is durable when Accept returns nil; a destination queue at
// QueueMax refuses the whole batch (ErrQueueFull).
func (c *Central) Accept(origin int, in []Inbound, router Router) (AcceptResult, error) {
	if origin <= 0 {
		return AcceptResult{}, fmt.Errorf("cannot accept a push from site %d", origin)
	}
	return c.accept(origin, in, router)
}

// Write is the primary's own change, routed like a push (origin 0). It
// returns the version the change got (for central data, its cursor).
func (c *Central) Write(r Record, router Router) (uint64, error) {
	res, err := c.accept(0, []Inbound{{Record: r}}, router)
	if err != nil {
		return 0, err
	}
	if o := res.Outcomes[0]; o.Refused != nil {
		return 0, fmt.Errorf("cannot write %s/%s: %w: %s", r.Table, r.ID, ErrRefused, o.Refused.Message)
	}
	return res.Outcomes[0].Version, nil
}

// WriteBatch is several of the primary's own changes, decided and applied
// in one step; a refused one refuses the batch's error (the others are
// written).
func (c *Central) WriteBatch(rs []Record, router Router) error {
	in := make([]Inbound, len(rs))
	for i, r := range rs {
		in[i].Record = r
	}
	res, err := c.accept(0, in, router)
	if err != nil {
		return err
	}
	return refusedWrites(rs, res)
}

// refusedWrites is the error of the refused writes of a batch, or nil.
func refusedWrites(rs []Record, res AcceptResult) error {
	for i, o := range res.Outcomes {
		if o.Refused != nil {
			return fmt.Errorf("cannot write %s/%s: %w: %s", rs[i].Table, rs[i].ID, ErrRefused, o.Refused.Message)
		}
	}
	return nil
}

// RefusedWrites is the error of the refused writes of a batch, or nil
// (for backends outside this package).
func RefusedWrites(rs []Record, res AcceptResult) error { return refusedWrites(rs, res) }

func (c *Central) accept(origin int, in []Inbound, router Router) (AcceptResult, error) {
	b, err := Prepare(origin, in) // before the lock: it needs none of the primary's state
	if err != nil {
		return AcceptResult{}, err
	}
	p := &pushRequest{origin: origin, in: in, batch: b, router: router}
	c.group.mu.Lock()
	c.group.waiting = append(c.group.waiting, p)
	c.group.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	for !p.finished {
		c.commitGroupLocked(c.takeGroupLocked())
	}
	return p.res, p.err
}

// buntReader reads the primary's copies in a BuntDB read transaction.
// parents, when not nil, are the only tables whose records have children
// (Central.parents): the child index of any other is not looked up.
type buntReader struct {
	tx      *buntdb.Tx
	parents map[string]bool
}

func (b buntReader) State(table, id string) (RecordState, bool, error) {
	return b.stateOf(recKey(table, id))
}

func (b buntReader) stateOf(key string) (RecordState, bool, error) { return getCentral(b.tx, key) }

func (b buntReader) Children(parent Ref) ([]Ref, error) {
	if b.parents != nil && !b.parents[parent.Table] {
		return nil, nil
	}
	var out []Ref
	prefix := kidParentPrefix(parent)
	err := b.tx.AscendGreaterOrEqual("", prefix, func(k, _ string) bool {
		if !strings.HasPrefix(k, prefix) {
			return false
		}
		if t, id, ok := strings.Cut(k[len(prefix):], ":"); ok {
			out = append(out, Ref{t, id})
		}
		return true
	})
	return out, err
}

// checkQueueMaxLocked refuses a change that would grow a queue past
// QueueMax (entries that replace one already queued count too: an upper
// bound). pending is what the group's earlier pushes add to each queue.
func (c *Central) checkQueueMaxLocked(qs []QueueOp, pending map[int]int) error {
	if c.queueMax <= 0 {
		return nil
	}
	add := map[int]int{}
	for _, q := range qs {
		if !q.Remove {
			add[q.Site]++
		}
	}
	for site, n := range add {
		if have := c.qlen[site] + pending[site]; have+n > c.queueMax {
			return fmt.Errorf("%w: site %d has %d records waiting (limit %d), cannot queue %d more; the site must pull first",
				ErrQueueFull, site, have, c.queueMax, n)
		}
	}
	return nil
}

// Refusal codes the queue itself gives (the Router gives the others).
const RefusedInvalid = "invalid_record"

// changeHash fingerprints a change's content (action and data), so a
// repeated syncOutId with other content is told apart from a repeat.
func changeHash(r Record) string {
	h := fnv.New64a()
	h.Write([]byte(r.Action))
	h.Write([]byte{0})
	h.Write(r.Data)
	return strconv.FormatUint(h.Sum64(), 36)
}

// fromMark is what a record keeps of the last change a site made to it:
// "<version> <hash> <syncOutId>".
func fromMark(ver uint64, hash, sid string) string {
	return formatUint(ver) + " " + hash + " " + sid
}

func parseFromMark(m string) (ver uint64, hash, sid string, ok bool) {
	v, rest, ok1 := strings.Cut(m, " ")
	hash, sid, ok2 := strings.Cut(rest, " ")
	n, err := parseUint(v)
	if !ok1 || !ok2 || err != nil {
		return 0, "", "", false
	}
	return n, hash, sid, true
}

// ErrRefused is returned by Write for a change the router refused.
var ErrRefused = errors.New("change refused")
