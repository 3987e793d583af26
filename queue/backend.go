package queue

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// What a backend outside this package (queue/pg) needs of the shared
// replication model: the parts of a Plan by name instead of by BuntDB key,
// a record's state as a Router sees it, the membership digest, and the
// decision a membership change implies. Central uses the same functions, so
// both backends decide alike.

// Current returns the record as a Router sees it.
func (v RecordState) Current(table, id string) Current { return v.current(table, id) }

// Ref names the record a PlanRecord writes.
func (r PlanRecord) Ref() (Ref, bool) {
	t, id, ok := splitRecKey(r.Key)
	return Ref{t, id}, ok
}

// Refs names the parent and the child row a KidOp links.
func (k KidOp) Refs() (parent, child Ref, ok bool) {
	rest, ok := strings.CutPrefix(k.Key, kidPrefix)
	if !ok {
		return Ref{}, Ref{}, false
	}
	pt, rest, ok1 := strings.Cut(rest, ":")
	ls, rest, ok2 := strings.Cut(rest, ":")
	n, err := strconv.Atoi(ls)
	if !ok1 || !ok2 || err != nil || n < 0 || len(rest) < n+1 || rest[n] != ':' {
		return Ref{}, Ref{}, false
	}
	pid, rest := rest[:n], rest[n+1:]
	ct, cid, ok := strings.Cut(rest, ":")
	if !ok {
		return Ref{}, Ref{}, false
	}
	return Ref{pt, pid}, Ref{ct, cid}, true
}

// Digest is the canonical form of m that a backend stores to know which
// membership its records' holders reflect.
func (m Membership) Digest() string { return m.digest() }

// ParseDigest reads back what Digest wrote.
func ParseDigest(d string) Membership { return parseDigest(d) }

// StoredRecord is a record's name and its state as the primary holds it.
type StoredRecord struct {
	Ref   Ref
	State RecordState
}

// DecideMembership decides what membership m (under router) does to
// records: each live store record whose holders change is rewritten with
// the new holders (its version kept), a site that must now hold it gets it
// queued, and a site of m that must no longer hold it gets a delete. Sites
// outside m are dropped from the holders without a delete (their queues are
// purged). Reads (the parents router.Holders looks up) go through r.
func DecideMembership(r Reader, recs []StoredRecord, m Membership, router Router, version func() uint64) (Plan, MembershipResult) {
	var res MembershipResult
	p := &planner{r: r, next: version, router: router, overlay: map[string]planned{}, kids: map[string]map[string]bool{}}
	for _, sr := range recs {
		v, table, id := sr.State, sr.Ref.Table, sr.Ref.ID
		if v.Deleted || v.Held || v.Central {
			continue
		}
		holders := sortedSites(router.Holders(v.current(table, id), p.lookup))
		holders = slices.DeleteFunc(holders, func(s int) bool { _, ok := m[s]; return !ok })
		if slices.Equal(holders, v.Holders) {
			continue
		}
		gained, lost := minus(holders, v.Holders), minus(v.Holders, holders)
		nv := v
		nv.Holders = holders
		p.it.Recs = append(p.it.Recs, PlanRecord{Key: recKey(table, id), Val: nv})
		for _, s := range gained {
			p.queue(s, table, id, false)
		}
		for _, s := range lost {
			if _, live := m[s]; live {
				p.queue(s, table, id, true)
				res.Deleted++
			}
		}
		res.Records++
		res.Queued += len(gained)
	}
	return p.it, res
}

// NoteRestored is NoteHealth's rule on a site's state: a box reporting
// outboxSeq and acked behind what the primary has seen from it was restored
// from an older copy, unless it is initialising again already; it then must
// initialise again. The marks stay as they are: the next initialisation
// starts them afresh (SetInitialisation), so the same copy restored again
// later is noticed again. It returns the new state and whether it was.
func NoteRestored(s SiteState, outboxSeq string, acked uint64, at time.Time) (SiteState, bool) {
	if !restored(s, outboxSeq, acked) {
		return s, false
	}
	s.RewoundAt, s.Rewinds, s.Initialisation = at.UTC(), s.Rewinds+1, InitNew
	return s, true
}

// StartInitialisation is SetInitialisation's rule for "started": a fresh
// start for the marks a restored box is told by.
func StartInitialisation(s SiteState) SiteState {
	s.Initialisation = InitStarted
	s.AckedHigh, s.SyncOutEpoch, s.SyncOutHigh = 0, "", 0
	return s
}
