package queue

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Deciding a change is the same on every backend: Decide reads the
// primary's copies through a Reader (a BuntDB read transaction here, a SQL
// transaction holding the rows in queue/pg) and returns the Plan — every key
// the change writes. A backend applies the plan atomically with writes that
// never move a record or a queue entry back in version.

// Reader is what deciding a change reads, as of the decision.
type Reader interface {
	// State returns the primary's copy of table/id.
	State(table, id string) (RecordState, bool, error)
	// Children lists the child rows that belong to parent.
	Children(parent Ref) ([]Ref, error)
}

// Batch is a push checked and put in canonical form: everything about its
// records that needs none of the primary's state, done before a backend
// takes its lock (or opens its transaction), so that work runs in parallel
// with other pushes.
type Batch struct {
	origin int
	recs   []batchRecord
}

type batchRecord struct {
	in      Inbound  // the record normalized
	hash    string   // changeHash of the normalized record
	refused *Refusal // malformed: refused without reading anything
}

// Prepare checks a batch pushed by site origin (0: the primary's own
// write) for Batch.Decide.
func Prepare(origin int, in []Inbound) (*Batch, error) {
	if len(in) > maxBatch {
		return nil, fmt.Errorf("cannot accept %d records in one push (at most %d)", len(in), maxBatch)
	}
	b := &Batch{origin: origin, recs: make([]batchRecord, len(in))}
	for i, x := range in {
		br := &b.recs[i]
		rec, err := normalize(x.Record)
		switch {
		case err != nil:
			br.refused = &Refusal{Code: RefusedInvalid, Message: err.Error()}
		case origin > 0 && (x.SyncOutID == "" || len(x.SyncOutID) > MaxSyncOutID || hasControl(x.SyncOutID)):
			br.refused = &Refusal{Code: RefusedInvalid, Message: fmt.Sprintf("syncOutId must be 1 to %d characters, none of them control characters", MaxSyncOutID)}
		default:
			br.in, br.hash = Inbound{SyncOutID: x.SyncOutID, Record: rec}, changeHash(rec)
		}
	}
	return b, nil
}

// Decide decides a batch pushed by site origin (0: the primary's own
// write): Prepare, then Batch.Decide.
func Decide(r Reader, origin int, in []Inbound, router Router, version func() uint64) (Plan, AcceptResult, error) {
	b, err := Prepare(origin, in)
	if err != nil {
		return Plan{}, AcceptResult{}, err
	}
	return b.Decide(r, router, version)
}

// Decide decides the batch record by record in order, each seeing the
// batch's earlier decisions. version hands out the next version of the
// primary's order.
func (b *Batch) Decide(r Reader, router Router, version func() uint64) (Plan, AcceptResult, error) {
	res := AcceptResult{Outcomes: make([]Outcome, len(b.recs))}
	p := &planner{r: r, next: version, origin: b.origin, router: router, overlay: make(map[string]planned, len(b.recs)), kids: map[string]map[string]bool{}}
	p.it.Recs = make([]PlanRecord, 0, len(b.recs))
	p.it.Queue = make([]QueueOp, 0, 2*len(b.recs)) // a holder's entry, the pusher's own removed
	for i, br := range b.recs {
		if br.refused != nil {
			res.Outcomes[i].Refused = br.refused // malformed: nothing to answer it with
			continue
		}
		if err := p.plan(br.in, br.hash, &res.Outcomes[i]); err != nil {
			return Plan{}, AcceptResult{}, err
		}
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
	if p.repeats {
		p.it.coalesce()
	}
	return p.it, res, nil
}

// planned is a record's value as decided so far in this batch.
type planned struct {
	val    RecordState
	exists bool
}

// planner decides a batch into one intent, reading the primary's copies
// through tx and the batch's own earlier decisions through overlay.
type planner struct {
	r       Reader
	next    func() uint64
	origin  int
	router  Router
	overlay map[string]planned
	kids    map[string]map[string]bool // parent key → child keys added (true) or removed (false) in this batch
	it      Plan
	// repeats: a record was read back, written or answered again in this
	// batch, so the plan may write a key twice (coalesce). A plan without
	// repeats skips coalesce's work.
	repeats  bool
	answered map[string]bool // records answered (a repeat, a refusal) in this batch
}

func (p *planner) get(table, id string) (RecordState, bool, error) {
	return p.getKey(recKey(table, id), table, id)
}

// getKey is get with the record's key already made.
func (p *planner) getKey(key, table, id string) (RecordState, bool, error) {
	if v, ok := p.overlay[key]; ok {
		p.repeats = true
		return v.val, v.exists, nil
	}
	if kr, ok := p.r.(keyReader); ok {
		return kr.stateOf(key)
	}
	return p.r.State(table, id)
}

// keyReader is a Reader that reads a record by its key (rec:<table>:<id>)
// without making it again.
type keyReader interface {
	stateOf(key string) (RecordState, bool, error)
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

func (p *planner) set(table, id string, v RecordState) { p.setKey(recKey(table, id), v) }

func (p *planner) setKey(key string, v RecordState) {
	if p.answered[key] {
		p.repeats = true
	}
	p.overlay[key] = planned{val: v, exists: true}
	p.it.Recs = append(p.it.Recs, PlanRecord{Key: key, Val: v})
}

func (p *planner) queue(site int, table, id string, del bool) {
	key := recKey(table, id)
	if _, ok := p.overlay[key]; ok || p.answered[key] {
		p.repeats = true
	}
	if p.answered == nil {
		p.answered = map[string]bool{}
	}
	p.answered[key] = true
	p.it.Queue = append(p.it.Queue, QueueOp{Site: site, Table: table, ID: id, Ord: p.next(), Del: del})
}

// plan decides one record of the batch.
func (p *planner) plan(x Inbound, hash string, out *Outcome) error {
	r := x.Record
	id := targetID(r)
	key := recKey(r.Table, id)
	cur, exists, err := p.getKey(key, r.Table, id)
	if err != nil {
		return err
	}
	if p.origin > 0 && exists {
		if ver, h, sid, ok := parseFromMark(cur.From[p.origin]); ok && sid == x.SyncOutID && h == hash {
			out.Duplicate = true
			holds := !cur.Held && (cur.Central || cur.holds(p.origin))
			if cur.Version != ver || !holds {
				// Superseded since it was accepted, or no longer the site's to
				// hold (its store moved): the site still shows its own value,
				// so it gets the current copy, or a delete.
				p.queue(p.origin, r.Table, id, !holds)
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
	ver := p.next()
	out.Version = ver
	del := r.Action == Delete || r.Action == Merge
	nv := RecordState{Version: ver, Action: r.Action, Deleted: del, Owner: route.Owner, Central: route.Central,
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
	p.setKey(key, nv)
	for _, s := range nv.Holders {
		if s != p.origin && !nv.Central && !nv.Held {
			p.it.Queue = append(p.it.Queue, QueueOp{Site: s, Table: r.Table, ID: id, Ord: ver})
		}
	}
	if !del && exists && !cur.Held {
		for _, s := range minus(cur.Holders, nv.Holders) {
			if s != p.origin {
				p.it.Queue = append(p.it.Queue, QueueOp{Site: s, Table: r.Table, ID: id, Ord: ver, Del: true})
			}
		}
	}
	if p.origin > 0 {
		p.it.Queue = append(p.it.Queue, QueueOp{Site: p.origin, Table: r.Table, ID: id, Ord: ver, Remove: true})
	}
	if nv.Central || cur.Central {
		l := LogOp{Ref: Ref{r.Table, id}}
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
	p.it.Kids = append(p.it.Kids, KidOp{Key: kidKey(parent, child), Del: !add})
}

// children lists the rows that belong to parent, including this batch's.
func (p *planner) children(parent Ref) ([]Ref, error) {
	stored, err := p.r.Children(parent)
	if err != nil {
		return nil, err
	}
	order := func(a, b Ref) int { return strings.Compare(a.Table+":"+a.ID, b.Table+":"+b.ID) }
	batch := p.kids[recKey(parent.Table, parent.ID)]
	if len(batch) == 0 { // most records: no child changed in this batch
		slices.SortFunc(stored, order)
		return stored, nil
	}
	set := map[string]bool{}
	for _, c := range stored {
		set[recKey(c.Table, c.ID)] = true
	}
	for k, add := range batch {
		set[k] = add
	}
	var out []Ref
	for k, ok := range set {
		if t, id, found := splitRecKey(k); ok && found {
			out = append(out, Ref{t, id})
		}
	}
	slices.SortFunc(out, order)
	return out, nil
}

// propagate gives a parent's owner and holders to its child rows: a child
// held until its parent arrived is routed now, and sites that gained or
// lost the parent (a transfer, a store move) gain or lose its children.
func (p *planner) propagate(parent Ref, pv RecordState) error {
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
		nv.Owner, nv.Holders, nv.Held, nv.Version = pv.Owner, slices.Clone(pv.Holders), false, p.next()
		p.set(k.Table, k.ID, nv)
		for _, s := range minus(nv.Holders, before) {
			p.it.Queue = append(p.it.Queue, QueueOp{Site: s, Table: k.Table, ID: k.ID, Ord: nv.Version})
		}
		if !cv.Held {
			for _, s := range minus(before, nv.Holders) {
				p.it.Queue = append(p.it.Queue, QueueOp{Site: s, Table: k.Table, ID: k.ID, Ord: nv.Version, Del: true})
			}
		}
	}
	return nil
}
