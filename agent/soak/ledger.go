package soak

import (
	"fmt"
	"slices"
	"sort"
	"sync"
)

// Key names one record.
type Key struct{ Table, ID string }

func (k Key) String() string { return k.Table + "/" + k.ID }

// State is a record as a site holds it: absent, or present with the
// version its writer gave it (every write of a writer has a new version).
type State struct {
	Present bool
	V       int64
}

func (s State) String() string {
	if !s.Present {
		return "absent"
	}
	return fmt.Sprintf("v%d", s.V)
}

// absent is the state of a deleted or never written record.
var absent = State{}

// Ledger remembers every write an app attempted and what the local API
// answered. Each record has one writer (its origin site), so its final state
// is decided by the origin's order of writes:
//
//   - the last acknowledged state, or any state attempted after it whose
//     answer never came (the agent was killed mid-call: the write may or
//     may not have been committed);
//   - a write whose call timed out while the agent lived may still land
//     after later writes, so it stays allowed for good.
//
// Ledger is safe for concurrent use.
type Ledger struct {
	mu      sync.Mutex
	records map[Key]*entry
}

type entry struct {
	holders []string // sites that must hold the record
	acked   State    // last acknowledged state (absent until the first ack)
	maybe   []State  // attempted after the last ack, answer unknown
	sticky  []State  // timed out while the agent lived: may land any time
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return &Ledger{records: map[Key]*entry{}} }

// Attempt records that a write of k to s is about to be sent. holders are
// the sites that must end up holding the record (fixed per record).
func (l *Ledger) Attempt(k Key, holders []string, s State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.records[k]
	if e == nil {
		e = &entry{holders: slices.Clone(holders)}
		sort.Strings(e.holders)
		l.records[k] = e
	}
	e.maybe = append(e.maybe, s)
}

// Ack records that the local API acknowledged the write: it is durable, and
// every earlier write of k is superseded.
func (l *Ledger) Ack(k Key, s State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.records[k]
	e.acked, e.maybe = s, nil
}

// Refused records that the agent answered with an error: nothing was
// written.
func (l *Ledger) Refused(k Key, s State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.records[k]
	e.maybe = slices.DeleteFunc(e.maybe, func(x State) bool { return x == s })
}

// TimedOut records that the call gave up while the agent may still be
// working on it.
func (l *Ledger) TimedOut(k Key, s State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.records[k]
	e.sticky = append(e.sticky, s)
}

// Known returns the last acknowledged state of k and whether it is certain
// (no unanswered write since).
func (l *Ledger) Known(k Key) (State, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.records[k]
	if e == nil {
		return absent, true
	}
	return e.acked, len(e.maybe) == 0 && len(e.sticky) == 0
}

// Len is the number of records ever written.
func (l *Ledger) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.records)
}

// Observation is what each site holds: site → record → the states listed
// for it (more than one means the site lists the record twice).
type Observation map[string]map[Key][]State

// Add notes that site listed k in state s.
func (o Observation) Add(site string, k Key, s State) {
	if o[site] == nil {
		o[site] = map[Key][]State{}
	}
	o[site][k] = append(o[site][k], s)
}

// Report is the outcome of comparing the sites with the ledger.
type Report struct {
	Records    int // records in the ledger
	Checked    int // record × holding site pairs checked
	Lost       int // a holder lacks a record whose acknowledged state is present
	Duplicated int // a site lists a record more than once
	WrongValue int // a holder has a state no write allows (stale, resurrected, garbled)
	Unexpected int // a site holds a record it must not hold, or one nobody wrote
	Diverged   int // holders disagree although each state alone is allowed
	Details    []string
}

// Failed reports whether any check failed.
func (r Report) Failed() bool {
	return r.Lost+r.Duplicated+r.WrongValue+r.Unexpected+r.Diverged > 0
}

const maxDetails = 30

func (r *Report) note(format string, args ...any) {
	if len(r.Details) < maxDetails {
		r.Details = append(r.Details, fmt.Sprintf(format, args...))
	}
}

// Compare checks obs against the ledger: every acknowledged write exists
// exactly once with its latest allowed state on every site that must hold
// it; no site holds a record it must not.
func (l *Ledger) Compare(sites []string, obs Observation) Report {
	l.mu.Lock()
	defer l.mu.Unlock()
	var r Report
	r.Records = len(l.records)
	keys := make([]Key, 0, len(l.records))
	for k := range l.records {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	for _, site := range sites {
		for k, states := range obs[site] {
			if len(states) > 1 {
				r.Duplicated++
				r.note("%s lists %s %d times", site, k, len(states))
			}
			if l.records[k] == nil {
				r.Unexpected++
				r.note("%s holds %s (%s), which nobody wrote", site, k, states[0])
			}
		}
	}
	for _, k := range keys {
		e := l.records[k]
		allowed := append(append([]State{e.acked}, e.maybe...), e.sticky...)
		var seen []State
		for _, site := range sites {
			got := absent
			if states := obs[site][k]; len(states) > 0 {
				got = states[0]
			}
			if !slices.Contains(e.holders, site) {
				if got.Present {
					r.Unexpected++
					r.note("%s holds %s (%s) but must not", site, k, got)
				}
				continue
			}
			r.Checked++
			switch {
			case slices.Contains(allowed, got):
				seen = append(seen, got)
			case !got.Present:
				r.Lost++
				r.note("%s lacks %s (acknowledged %s)", site, k, e.acked)
			default:
				r.WrongValue++
				r.note("%s holds %s as %s; allowed %v", site, k, got, allowed)
			}
		}
		if len(seen) > 1 && !allSame(seen) {
			r.Diverged++
			r.note("holders of %s disagree: %v", k, seen)
		}
	}
	return r
}

func allSame(xs []State) bool {
	for _, x := range xs[1:] {
		if x != xs[0] {
			return false
		}
	}
	return true
}
