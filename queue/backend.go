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

// NoteMarks is NoteHealth's rule on a site's state: the marks a box
// reports judged against the highest it reported before. It returns the
// state they lead to and whether the box was restored from an older copy.
func NoteMarks(s SiteState, m Marks, at time.Time) (SiteState, bool) { return noteMarks(s, m, at) }
