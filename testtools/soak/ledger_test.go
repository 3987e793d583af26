package soak

import (
	"strings"
	"testing"
)

var all = []string{SitePrimary, SiteA, SiteB}

func v(n int64) State { return State{Present: true, V: n} }

// obsOf builds an observation where every site in sites holds k as s.
func obsOf(o Observation, k Key, s State, sites ...string) Observation {
	for _, site := range sites {
		o.Add(site, k, s)
	}
	return o
}

// TestLedger_Compare protects the verdicts of the soak: each kind of damage
// is counted under its own name, and what a kill legitimately leaves
// undecided is not counted at all.
func TestLedger_Compare(t *testing.T) {
	k := Key{"stock_line", "r1"}
	holders := []string{SitePrimary, SiteA}
	cases := []struct {
		name  string
		build func(l *Ledger)
		obs   func() Observation
		want  Report
	}{
		{"acknowledged write on every holder", func(l *Ledger) {
			l.Attempt(k, "w", holders, v(1))
			l.Ack(k, "w", v(1))
		}, func() Observation { return obsOf(Observation{}, k, v(1), SitePrimary, SiteA) }, Report{}},
		{"missing on one holder is lost", func(l *Ledger) {
			l.Attempt(k, "w", holders, v(1))
			l.Ack(k, "w", v(1))
		}, func() Observation { return obsOf(Observation{}, k, v(1), SiteA) }, Report{Lost: 1}},
		{"an older value is a wrong value", func(l *Ledger) {
			l.Attempt(k, "w", holders, v(1))
			l.Ack(k, "w", v(1))
			l.Attempt(k, "w", holders, v(2))
			l.Ack(k, "w", v(2))
		}, func() Observation { return obsOf(obsOf(Observation{}, k, v(2), SiteA), k, v(1), SitePrimary) }, Report{WrongValue: 1}},
		{"a deleted record that comes back is a wrong value", func(l *Ledger) {
			l.Attempt(k, "w", holders, v(1))
			l.Ack(k, "w", v(1))
			l.Attempt(k, "w", holders, absent)
			l.Ack(k, "w", absent)
		}, func() Observation { return obsOf(Observation{}, k, v(1), SitePrimary) }, Report{WrongValue: 1}},
		{"listed twice is duplicated", func(l *Ledger) {
			l.Attempt(k, "w", holders, v(1))
			l.Ack(k, "w", v(1))
		}, func() Observation { return obsOf(obsOf(Observation{}, k, v(1), SitePrimary, SiteA), k, v(1), SiteA) }, Report{Duplicated: 1}},
		{"held by a site that must not hold it", func(l *Ledger) {
			l.Attempt(k, "w", holders, v(1))
			l.Ack(k, "w", v(1))
		}, func() Observation { return obsOf(Observation{}, k, v(1), all...) }, Report{Unexpected: 1}},
		{"a record nobody wrote", func(l *Ledger) {}, func() Observation {
			return obsOf(Observation{}, Key{"item", "ghost"}, v(7), SiteB)
		}, Report{Unexpected: 1}},
		{"a write cut by a kill may be there or not", func(l *Ledger) {
			l.Attempt(k, "w", holders, v(1))
			l.Ack(k, "w", v(1))
			l.Attempt(k, "w", holders, v(2)) // no answer
		}, func() Observation { return obsOf(Observation{}, k, v(2), SitePrimary, SiteA) }, Report{}},
		{"...and when it is not there, the acknowledged one is", func(l *Ledger) {
			l.Attempt(k, "w", holders, v(1))
			l.Ack(k, "w", v(1))
			l.Attempt(k, "w", holders, v(2))
		}, func() Observation { return obsOf(Observation{}, k, v(1), SitePrimary, SiteA) }, Report{}},
		{"...but holders must agree on it", func(l *Ledger) {
			l.Attempt(k, "w", holders, v(1))
			l.Ack(k, "w", v(1))
			l.Attempt(k, "w", holders, v(2))
		}, func() Observation { return obsOf(obsOf(Observation{}, k, v(1), SitePrimary), k, v(2), SiteA) }, Report{Diverged: 1}},
		{"a later acknowledgement settles an earlier cut write", func(l *Ledger) {
			l.Attempt(k, "w", holders, v(1))
			l.Attempt(k, "w", holders, v(2))
			l.Ack(k, "w", v(2))
		}, func() Observation { return obsOf(Observation{}, k, v(1), SitePrimary, SiteA) }, Report{WrongValue: 2}},
		{"a never acknowledged write may be absent", func(l *Ledger) {
			l.Attempt(k, "w", holders, v(1))
		}, func() Observation { return Observation{} }, Report{}},
		{"a refused write must not appear", func(l *Ledger) {
			l.Attempt(k, "w", holders, v(1))
			l.Refused(k, "w", v(1))
		}, func() Observation { return obsOf(Observation{}, k, v(1), SitePrimary, SiteA) }, Report{WrongValue: 2}},
		{"a timed-out write may land even after a later one", func(l *Ledger) {
			l.Attempt(k, "w", holders, v(1))
			l.TimedOut(k, "w", v(1))
			l.Attempt(k, "w", holders, v(2))
			l.Ack(k, "w", v(2))
		}, func() Observation { return obsOf(Observation{}, k, v(1), SitePrimary, SiteA) }, Report{}},
		// Contention: two writers on two sites change one record.
		{"the other writer's last write may win", func(l *Ledger) {
			l.Attempt(k, "x", holders, v(1))
			l.Ack(k, "x", v(1))
			l.Attempt(k, "y", holders, v(2))
			l.Ack(k, "y", v(2))
		}, func() Observation { return obsOf(Observation{}, k, v(1), SitePrimary, SiteA) }, Report{}},
		{"a writer's superseded write never comes back", func(l *Ledger) {
			l.Attempt(k, "x", holders, v(1))
			l.Ack(k, "x", v(1))
			l.Attempt(k, "x", holders, v(3))
			l.Ack(k, "x", v(3))
			l.Attempt(k, "y", holders, v(2))
			l.Ack(k, "y", v(2))
		}, func() Observation { return obsOf(Observation{}, k, v(1), SitePrimary, SiteA) }, Report{WrongValue: 2}},
		{"one writer's delete may win", func(l *Ledger) {
			l.Attempt(k, "x", holders, v(1))
			l.Ack(k, "x", v(1))
			l.Attempt(k, "y", holders, absent)
			l.Ack(k, "y", absent)
		}, func() Observation { return Observation{} }, Report{}},
		{"holders that settle on different writers' values diverge", func(l *Ledger) {
			l.Attempt(k, "x", holders, v(1))
			l.Ack(k, "x", v(1))
			l.Attempt(k, "y", holders, v(2))
			l.Ack(k, "y", v(2))
		}, func() Observation { return obsOf(obsOf(Observation{}, k, v(1), SitePrimary), k, v(2), SiteA) }, Report{Diverged: 1}},
		{"an unparsable record is a wrong value", func(l *Ledger) {
			l.Attempt(k, "w", holders, v(1))
			l.Ack(k, "w", v(1))
		}, func() Observation {
			return obsOf(obsOf(Observation{}, k, v(1), SitePrimary), k, observed([]byte(`{"qty":1}`)), SiteA)
		}, Report{WrongValue: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := NewLedger()
			c.build(l)
			got := l.Compare(all, c.obs())
			if got.Lost != c.want.Lost || got.Duplicated != c.want.Duplicated || got.WrongValue != c.want.WrongValue ||
				got.Unexpected != c.want.Unexpected || got.Diverged != c.want.Diverged {
				t.Errorf("got lost %d dup %d wrong %d unexpected %d diverged %d, want %+v\n%s",
					got.Lost, got.Duplicated, got.WrongValue, got.Unexpected, got.Diverged, c.want, strings.Join(got.Details, "\n"))
			}
			if got.Failed() != c.want.Failed() {
				t.Errorf("Failed() = %v", got.Failed())
			}
		})
	}
}

// TestLedger_Known protects the writers' rule that only a record whose
// state is certain may be deleted (a delete needs the record to exist).
func TestLedger_Known(t *testing.T) {
	l := NewLedger()
	k := Key{"t", "1"}
	if s, certain := l.Known(k, "w"); s.Present || !certain {
		t.Fatalf("unknown record: %v %v", s, certain)
	}
	l.Attempt(k, "w", all, v(1))
	if _, certain := l.Known(k, "w"); certain {
		t.Fatal("an unanswered write is certain")
	}
	l.Ack(k, "w", v(1))
	if s, certain := l.Known(k, "w"); s != v(1) || !certain {
		t.Fatalf("after ack: %v %v", s, certain)
	}
}
