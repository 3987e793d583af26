package queue

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/buntdb"
)

// Group commit of pushes. Every push (and the primary's own writes) is
// queued, then whichever caller gets Central's lock first takes every push
// waiting and commits them together: each is decided in turn, seeing the
// ones decided before it in the group; the group's intents (one key each,
// so each push stays atomic on its own across a power cut) go into one
// fsynced commit, then all of them are applied in a second. A push is
// answered only once both commits are durable; a push refused while it is
// decided (a full queue, a push too large) adds nothing to the group and
// holds back no other push.

// Bounds of one group: it stops taking pushes once it holds this many
// records (a single push above it is still committed, alone).
const groupMaxRecords = 20000

// pushRequest is one caller's push, waiting for a group commit.
type pushRequest struct {
	origin int
	in     []Inbound
	batch  *Batch // in, prepared
	router Router

	// Set by the group commit, read under Central's lock.
	finished bool
	res      AcceptResult
	err      error
}

// pushGroup holds the pushes waiting for a group commit.
type pushGroup struct {
	mu      sync.Mutex
	waiting []*pushRequest
	commits int // group commits that wrote something (for tests)
}

// takeGroupLocked takes the pushes waiting, in arrival order, up to
// groupMaxRecords and at most one per site (a site's second push is
// decided after its first is applied: its syncOutId marks come from the
// site's state as applied). The rest wait for the next group.
func (c *Central) takeGroupLocked() []*pushRequest {
	g := &c.group
	g.mu.Lock()
	defer g.mu.Unlock()
	var batch, rest []*pushRequest
	seen := map[int]bool{}
	recs := 0
	for _, p := range g.waiting {
		if (len(batch) > 0 && recs+len(p.in) > groupMaxRecords) || (p.origin > 0 && seen[p.origin]) {
			rest = append(rest, p)
			continue
		}
		batch = append(batch, p)
		recs += len(p.in)
		seen[p.origin] = true
	}
	g.waiting = rest
	return batch
}

// decided is a push of the group with its plan.
type decided struct {
	p      *pushRequest
	plan   Plan
	states []string
}

// commitGroupLocked decides, commits and applies batch, and answers every
// push in it.
func (c *Central) commitGroupLocked(batch []*pushRequest) {
	finish := func(p *pushRequest, res AcceptResult, err error) {
		p.res, p.err, p.finished = res, err, true
	}
	if err := c.drainLocked(); err != nil {
		for _, p := range batch {
			finish(p, AcceptResult{}, err)
		}
		return
	}
	var ds []decided
	over := &groupReader{recs: map[string]RecordState{}, kids: map[string]map[string]bool{}}
	qadd := map[int]int{}
	err := c.st.view(func(tx *buntdb.Tx) error {
		over.base = buntReader{tx, c.parents}
		for _, p := range batch {
			d, res, err := c.decideLocked(p, over, qadd)
			if err != nil {
				finish(p, AcceptResult{}, err)
				continue
			}
			p.res = res
			if d.plan.empty() {
				finish(p, res, nil)
				continue
			}
			ds = append(ds, d)
			over.add(d.plan)
			for _, q := range d.plan.Queue {
				if !q.Remove {
					qadd[q.Site]++
				}
			}
		}
		return nil
	})
	if err == nil && len(ds) > 0 {
		if err = c.runIntentsLocked(ds); err == nil {
			c.group.commits++
		}
	}
	for _, d := range ds {
		if err != nil {
			finish(d.p, AcceptResult{}, err)
			continue
		}
		finish(d.p, d.p.res, nil)
		if d.p.res.Rewound {
			c.log.Warn("site sent new changes under syncOutIds it used before (outbox restored from a backup, or reinstalled); they were taken and the site must refill",
				"site", d.p.origin, "epoch", d.plan.Site.SyncOutEpoch, "high", d.plan.Site.SyncOutHigh)
		}
	}
	for _, p := range batch {
		if !p.finished { // the view itself failed
			finish(p, AcceptResult{}, err)
		}
	}
}

// decideLocked decides one push of a group against the datafile and the
// group's earlier pushes (over), and encodes its record states. qadd is
// what the group's earlier pushes add to each queue.
func (c *Central) decideLocked(p *pushRequest, over *groupReader, qadd map[int]int) (decided, AcceptResult, error) {
	plan, res, err := p.batch.Decide(over, p.router, c.nextVersion)
	if err != nil {
		return decided{}, AcceptResult{}, err
	}
	if err := c.checkQueueMaxLocked(plan.Queue, qadd); err != nil {
		return decided{}, AcceptResult{}, err
	}
	if p.origin > 0 && res.Accepted > 0 {
		if site, changed, rewound := NoteSyncOutIDs(c.siteLocked(p.origin).state, p.in, res.Outcomes, time.Now()); changed {
			plan.Site, res.Rewound = &site, rewound
		}
	}
	if plan.empty() {
		return decided{p: p, plan: plan}, res, nil
	}
	plan.ID = c.nextVersion()
	return decided{p: p, plan: plan, states: encodeStates(plan)}, res, nil
}

// groupReader reads the primary's copies as the group's pushes decided so
// far leave them: their plans first, then the datafile.
type groupReader struct {
	base buntReader
	recs map[string]RecordState
	// parent's prefix of child index keys → child index key → present
	// (added) or not (removed)
	kids map[string]map[string]bool
}

func (g *groupReader) add(it Plan) {
	for _, r := range it.Recs {
		g.recs[r.Key] = r.Val
	}
	for _, k := range it.Kids {
		prefix, ok := kidPrefixOf(k.Key)
		if !ok {
			continue // not a key kidKey writes
		}
		if g.kids[prefix] == nil {
			g.kids[prefix] = map[string]bool{}
		}
		g.kids[prefix][k.Key] = !k.Del
	}
}

func (g *groupReader) State(table, id string) (RecordState, bool, error) {
	return g.stateOf(recKey(table, id))
}

func (g *groupReader) stateOf(key string) (RecordState, bool, error) {
	if v, ok := g.recs[key]; ok {
		return v, true, nil
	}
	return g.base.stateOf(key)
}

func (g *groupReader) Children(parent Ref) ([]Ref, error) {
	out, err := g.base.Children(parent)
	prefix := kidParentPrefix(parent)
	if err != nil || len(g.kids[prefix]) == 0 {
		return out, err
	}
	keys := map[string]bool{}
	for _, r := range out {
		keys[prefix+r.Table+":"+r.ID] = true
	}
	changed := false
	for k, present := range g.kids[prefix] {
		if keys[k] != present {
			keys[k], changed = present, true
		}
	}
	if !changed {
		return out, nil
	}
	out = out[:0]
	var sorted []string
	for k, present := range keys {
		if present {
			sorted = append(sorted, k)
		}
	}
	slices.Sort(sorted) // the datafile's order
	for _, k := range sorted {
		if t, id, ok := strings.Cut(k[len(prefix):], ":"); ok {
			out = append(out, Ref{t, id})
		}
	}
	return out, nil
}

// GroupCommits is how many group commits of pushes have written
// something since the datafile was opened (for tests).
func (c *Central) GroupCommits() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.group.commits
}
