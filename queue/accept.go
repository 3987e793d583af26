package queue

import (
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

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

func (c *Central) accept(origin int, in []Inbound, router Router) (AcceptResult, error) {
	if len(in) > maxBatch {
		return AcceptResult{}, fmt.Errorf("cannot accept %d records in one push (at most %d)", len(in), maxBatch)
	}
	res := AcceptResult{Outcomes: make([]Outcome, len(in))}
	norm := make([]Inbound, len(in))
	for i, x := range in {
		r, err := normalize(x.Record)
		switch {
		case err != nil:
			res.Outcomes[i].Refused = &Refusal{Code: RefusedInvalid, Message: err.Error()}
		case origin > 0 && (x.SyncOutID == "" || len(x.SyncOutID) > MaxSyncOutID || hasControl(x.SyncOutID)):
			res.Outcomes[i].Refused = &Refusal{Code: RefusedInvalid, Message: fmt.Sprintf("syncOutId must be 1 to %d characters, none of them control characters", MaxSyncOutID)}
		}
		norm[i] = Inbound{SyncOutID: x.SyncOutID, Record: r}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.drainLocked(); err != nil {
		return AcceptResult{}, err
	}
	p := &planner{c: c, origin: origin, router: router, overlay: map[string]planned{}, kids: map[string]map[string]bool{}}
	err := c.st.view(func(tx *buntdb.Tx) error {
		p.tx = tx
		for i, x := range norm {
			if res.Outcomes[i].Refused != nil {
				continue // malformed: nothing to answer it with
			}
			if err := p.plan(x, &res.Outcomes[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return AcceptResult{}, err
	}
	for _, o := range res.Outcomes {
		switch {
		case o.Refused != nil:
			res.Refused++
		case o.Duplicate:
			res.Duplicate++
		default:
			res.Accepted++
		}
	}
	if err := c.checkQueueMaxLocked(p.it.Queue); err != nil {
		return AcceptResult{}, err
	}
	if origin > 0 && res.Accepted > 0 {
		if site, changed, rewound := noteSyncOutIDs(c.siteLocked(origin).state, norm, res.Outcomes, time.Now()); changed {
			p.it.Site, res.Rewound = &site, rewound
		}
	}
	if err := c.runIntentLocked(p.it); err != nil {
		return AcceptResult{}, err
	}
	if res.Rewound {
		c.log.Warn("site sent new changes under syncOutIds it used before (outbox restored from a backup, or reinstalled); they were taken and the site must refill",
			"site", origin, "epoch", p.it.Site.SyncOutEpoch, "high", p.it.Site.SyncOutHigh)
	}
	return res, nil
}

// planned is a record's value as decided so far in this batch.
type planned struct {
	val    centralValue
	exists bool
}

// planner decides a batch into one intent, reading the primary's copies
// through tx and the batch's own earlier decisions through overlay.
type planner struct {
	c       *Central
	tx      *buntdb.Tx
	origin  int
	router  Router
	overlay map[string]planned
	kids    map[string]map[string]bool // parent key → child keys added (true) or removed (false) in this batch
	it      intent
}

func (p *planner) get(table, id string) (centralValue, bool, error) {
	key := recKey(table, id)
	if v, ok := p.overlay[key]; ok {
		return v.val, v.exists, nil
	}
	return getCentral(p.tx, key)
}

func (p *planner) lookup(table, id string) Current {
	if !validTable(table) || id == "" {
		return Current{}
	}
	v, ok, err := p.get(table, id)
	if err != nil || !ok {
		return Current{}
	}
	return v.current(table, id)
}

func (p *planner) set(table, id string, v centralValue) {
	key := recKey(table, id)
	p.overlay[key] = planned{val: v, exists: true}
	p.it.Recs = append(p.it.Recs, intentRec{Key: key, Val: v})
}

func (p *planner) queue(site int, table, id string, del bool) {
	p.it.Queue = append(p.it.Queue, intentQ{Site: site, Table: table, ID: id, Ord: p.c.nextVersion(), Del: del})
}

// plan decides one record of the batch.
func (p *planner) plan(x Inbound, out *Outcome) error {
	r := x.Record
	id := targetID(r)
	cur, exists, err := p.get(r.Table, id)
	if err != nil {
		return err
	}
	hash := changeHash(r)
	if p.origin > 0 && exists {
		if ver, h, sid, ok := parseFromMark(cur.From[p.origin]); ok && sid == x.SyncOutID && h == hash {
			out.Duplicate = true
			if cur.Version != ver && !cur.Held && (cur.Central || cur.holds(p.origin)) {
				// Superseded since it was accepted: the site still shows its own
				// value, so it gets the current copy.
				p.queue(p.origin, r.Table, id, false)
			}
			return nil
		}
	}
	curRec := Current{}
	if exists {
		curRec = cur.current(r.Table, id)
	}
	route := p.router.Route(p.origin, r, curRec, p.lookup)
	if route.Refuse != nil {
		out.Refused = route.Refuse
		if p.origin > 0 {
			p.answerRefusal(r)
		}
		return nil
	}
	ver := p.c.nextVersion()
	out.Version = ver
	del := r.Action == Delete || r.Action == Merge
	nv := centralValue{Version: ver, Action: r.Action, Deleted: del, Owner: route.Owner, Central: route.Central,
		Holders: sortedSites(route.Holders), Parent: route.Parent, Held: route.Held, From: maps.Clone(cur.From), Data: r.Data}
	if r.Action == Delete {
		nv.Data = nil
	}
	if nv.Held {
		nv.Holders = sortedSites([]int{p.origin})
	}
	if del {
		// A delete goes to every site that held the record.
		nv.Holders = sortedSites(append(slices.Clone(cur.Holders), nv.Holders...))
	}
	if p.origin > 0 {
		if nv.From == nil {
			nv.From = map[int]string{}
		}
		nv.From[p.origin] = fromMark(ver, hash, x.SyncOutID)
	}
	p.set(r.Table, id, nv)
	for _, s := range nv.Holders {
		if s != p.origin && !nv.Central && !nv.Held {
			p.it.Queue = append(p.it.Queue, intentQ{Site: s, Table: r.Table, ID: id, Ord: ver})
		}
	}
	if !del && exists && !cur.Held {
		for _, s := range minus(cur.Holders, nv.Holders) {
			if s != p.origin {
				p.it.Queue = append(p.it.Queue, intentQ{Site: s, Table: r.Table, ID: id, Ord: ver, Del: true})
			}
		}
	}
	if p.origin > 0 {
		p.it.Queue = append(p.it.Queue, intentQ{Site: p.origin, Table: r.Table, ID: id, Ord: ver, Remove: true})
	}
	if nv.Central || cur.Central {
		l := intentLog{Ref: Ref{r.Table, id}}
		if cur.Central {
			l.Prev = cur.Version
		}
		if nv.Central {
			l.Cursor = ver
		}
		p.it.Logs = append(p.it.Logs, l)
	}
	self := Ref{r.Table, id}
	if cur.Parent != nil && (nv.Parent == nil || *cur.Parent != *nv.Parent) {
		p.kid(*cur.Parent, self, false)
	}
	if nv.Parent != nil {
		p.kid(*nv.Parent, self, true)
	}
	if !del {
		return p.propagate(self, nv)
	}
	return nil
}

// answerRefusal queues, for the pusher of a refused change, the record as
// the primary holds it, or a delete when the site must not hold it, so the
// site's datafile returns to the primary's value.
func (p *planner) answerRefusal(r Record) {
	id := targetID(r)
	cur, exists, err := p.get(r.Table, id)
	if err != nil {
		return
	}
	keep := exists && !cur.Held && (cur.Central || cur.holds(p.origin))
	p.queue(p.origin, r.Table, id, !keep)
}

func (p *planner) kid(parent, child Ref, add bool) {
	pk := recKey(parent.Table, parent.ID)
	if p.kids[pk] == nil {
		p.kids[pk] = map[string]bool{}
	}
	p.kids[pk][recKey(child.Table, child.ID)] = add
	p.it.Kids = append(p.it.Kids, intentKid{Key: kidKey(parent, child), Del: !add})
}

// children lists the rows that belong to parent, including this batch's.
func (p *planner) children(parent Ref) ([]Ref, error) {
	set := map[string]bool{}
	prefix := kidParentPrefix(parent)
	if err := p.tx.AscendGreaterOrEqual("", prefix, func(k, _ string) bool {
		if !strings.HasPrefix(k, prefix) {
			return false
		}
		set[recPrefix+k[len(prefix):]] = true
		return true
	}); err != nil {
		return nil, err
	}
	for k, add := range p.kids[recKey(parent.Table, parent.ID)] {
		set[k] = add
	}
	var out []Ref
	for k, ok := range set {
		if t, id, found := splitRecKey(k); ok && found {
			out = append(out, Ref{t, id})
		}
	}
	slices.SortFunc(out, func(a, b Ref) int { return strings.Compare(a.Table+":"+a.ID, b.Table+":"+b.ID) })
	return out, nil
}

// propagate gives a parent's owner and holders to its child rows: a child
// held until its parent arrived is routed now, and sites that gained or
// lost the parent (a transfer, a store move) gain or lose its children.
func (p *planner) propagate(parent Ref, pv centralValue) error {
	kids, err := p.children(parent)
	if err != nil {
		return err
	}
	for _, k := range kids {
		cv, ok, err := p.get(k.Table, k.ID)
		if err != nil {
			return err
		}
		if !ok || cv.Deleted || cv.Parent == nil || *cv.Parent != parent {
			continue
		}
		if !cv.Held && cv.Owner == pv.Owner && slices.Equal(cv.Holders, pv.Holders) {
			continue
		}
		before := cv.Holders
		nv := cv
		nv.Owner, nv.Holders, nv.Held, nv.Version = pv.Owner, slices.Clone(pv.Holders), false, p.c.nextVersion()
		p.set(k.Table, k.ID, nv)
		for _, s := range minus(nv.Holders, before) {
			p.it.Queue = append(p.it.Queue, intentQ{Site: s, Table: k.Table, ID: k.ID, Ord: nv.Version})
		}
		if !cv.Held {
			for _, s := range minus(before, nv.Holders) {
				p.it.Queue = append(p.it.Queue, intentQ{Site: s, Table: k.Table, ID: k.ID, Ord: nv.Version, Del: true})
			}
		}
	}
	return nil
}

// checkQueueMaxLocked refuses a change that would grow a queue past
// QueueMax (entries that replace one already queued count too: an upper
// bound).
func (c *Central) checkQueueMaxLocked(qs []intentQ) error {
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
		if c.qlen[site]+n > c.queueMax {
			return fmt.Errorf("%w: site %d has %d records waiting (limit %d), cannot queue %d more; the site must pull first",
				ErrQueueFull, site, c.qlen[site], c.queueMax, n)
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
