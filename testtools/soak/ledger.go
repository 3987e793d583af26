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
// answered, per record and per writer (records may have several writers on
// different sites: contention). A writer's own writes supersede each other
// in its order; across writers the primary's order decides
// (docs/replication.md: the change that reaches it last wins). So the final
// state of a record is, for one of its writers:
//
//   - that writer's last acknowledged state, or any state it attempted
//     after it whose answer never came (the agent was killed mid-call: the
//     write may or may not have been committed);
//   - a write whose call timed out while the agent lived, which may still
//     land after later writes, so it stays allowed for good.
//
// An earlier acknowledged write of a writer is never the final state: the
// writer's later write was pushed after it. Ledger is safe for concurrent
// use.
type Ledger struct {
	mu      sync.Mutex
	records map[Key]*record
}

type record struct {
	holders []string // sites that must hold the record
	writers map[string]*entry
}

type entry struct {
	acked   State   // last acknowledged state (absent until the first ack)
	ackedOK bool    // some write was acknowledged
	maybe   []State // attempted after the last ack, answer unknown
	sticky  []State // timed out while the agent lived: may land any time
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return &Ledger{records: map[Key]*record{}} }

func (l *Ledger) entryLocked(k Key, writer string) *entry {
	r := l.records[k]
	if r == nil {
		r = &record{writers: map[string]*entry{}}
		l.records[k] = r
	}
	e := r.writers[writer]
	if e == nil {
		e = &entry{}
		r.writers[writer] = e
	}
	return e
}

// Attempt records that writer is about to send a write of k to s. holders
// are the sites that must end up holding the record (fixed per record).
func (l *Ledger) Attempt(k Key, writer string, holders []string, s State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entryLocked(k, writer)
	if r := l.records[k]; r.holders == nil {
		r.holders = slices.Clone(holders)
		sort.Strings(r.holders)
	}
	e.maybe = append(e.maybe, s)
}

// Ack records that the local API acknowledged the write: it is durable, and
// every earlier write of k by writer is superseded.
func (l *Ledger) Ack(k Key, writer string, s State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entryLocked(k, writer)
	e.acked, e.ackedOK, e.maybe = s, true, nil
}

// Refused records that the agent answered with an error: nothing was
// written.
func (l *Ledger) Refused(k Key, writer string, s State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entryLocked(k, writer)
	e.maybe = slices.DeleteFunc(e.maybe, func(x State) bool { return x == s })
}

// TimedOut records that the call gave up while the agent may still be
// working on it.
func (l *Ledger) TimedOut(k Key, writer string, s State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entryLocked(k, writer)
	e.sticky = append(e.sticky, s)
}

// Known returns writer's last acknowledged state of k and whether it is
// certain (no unanswered write of writer since).
func (l *Ledger) Known(k Key, writer string) (State, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.records[k]
	if r == nil || r.writers[writer] == nil {
		return absent, true
	}
	e := r.writers[writer]
	return e.acked, len(e.maybe) == 0 && len(e.sticky) == 0
}

// Contended reports whether k has more than one writer.
func (l *Ledger) Contended(k Key) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.records[k] != nil && len(l.records[k].writers) > 1
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

// Compare checks obs against the ledger: every record exists exactly once
// on every site that must hold it, all of them agree (converged), and the
// state they agree on is one of its writers' latest (nothing dropped, no
// superseded value come back); no site holds a record it must not.
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
		rec := l.records[k]
		var allowed []State
		acked, anyAck := absent, false
		for _, e := range rec.writers {
			if e.ackedOK {
				allowed, anyAck = append(allowed, e.acked), true
				if e.acked.Present {
					acked = e.acked
				}
			}
			allowed = append(append(allowed, e.maybe...), e.sticky...)
		}
		if !anyAck {
			allowed = append(allowed, absent) // nothing was certainly written
		}
		var seen []State
		for _, site := range sites {
			got := absent
			if states := obs[site][k]; len(states) > 0 {
				got = states[0]
			}
			if !slices.Contains(rec.holders, site) {
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
				r.note("%s lacks %s (acknowledged %s)", site, k, acked)
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
