package primary

import (
	"cmp"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// The fleet view: what the central team sees of each site. The site's own
// health block (syncapi.Health, sent on its requests) is kept in the site
// registry; the primary adds what it saw itself: each site's recent cycles
// (a cycle starts with GET site), the refusals it answered, and a verdict.

// Verdicts of the fleet view.
const (
	VerdictOK      = "ok"
	VerdictLate    = "late"    // the cycle it owed did not come: no contact for its interval and a grace
	VerdictFailing = "failing" // refused, or its last cycle failed
	VerdictNever   = "never connected"
)

// lateGrace is how much later than its interval a site's next contact may
// come before it counts as late: its cycle may start late (a long cycle
// before it, a primary that lost up to a minute of contact times in a
// restart) by a little, never by much. A site plans its next cycle its
// interval after the end of the last one, and every request is a contact.
func lateGrace(every time.Duration) time.Duration { return 2*time.Minute + every/10 }

// otherNodeMargin: a contact in the registry this much later than the last
// request this node served of a site was another node's (the registry's
// contact lags by up to a minute, a request's own contact by its auth).
const otherNodeMargin = time.Minute

// defaultInterval is assumed for a site that never reported its own.
const defaultInterval = 10 * time.Minute

// maxCycles is how many recent cycles the primary keeps per site.
const maxCycles = 10

// CycleView is one cycle of a site as the primary served it.
type CycleView struct {
	Started  time.Time `json:"started"`
	Last     time.Time `json:"last"`
	Requests int       `json:"requests"`
	Pushed   int       `json:"pushed"`
	Pulled   int       `json:"pulled"`
	Acked    int       `json:"acked"`
	// Reached: the cycle got to its last step (a GET queued_records
	// answered), so the site is through whatever its health block said
	// about the cycle before.
	Reached bool `json:"reached"`
	// OutboxLeft is what the site's pushes said was still to push after
	// the last batch (queueLength less the batch); nil before a push.
	OutboxLeft *int     `json:"outboxLeft,omitempty"`
	Errors     []string `json:"errors,omitempty"` // refusals and failures answered, newest last (at most 5)
}

// Refusal is the last time the primary refused a site at the door
// (credentials, hardware ID, no store, lockout).
type RefusalView struct {
	At   time.Time `json:"at"`
	Code string    `json:"code"`
}

// fleet keeps the per-site figures the primary sees (in memory: they
// describe the node's recent traffic; what must survive is in the registry).
type fleet struct {
	mu       sync.Mutex
	cycles   map[int][]CycleView
	refusals map[int]RefusalView
}

func newFleet() *fleet {
	return &fleet{cycles: map[int][]CycleView{}, refusals: map[int]RefusalView{}}
}

// note adds a request of site to its current cycle (GET site starts one).
func (f *fleet) note(site int, endpoint string, at time.Time, edit func(*CycleView)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cs := f.cycles[site]
	if endpoint == syncapi.EndpointSite || len(cs) == 0 {
		cs = append(cs, CycleView{Started: at})
		if len(cs) > maxCycles {
			cs = cs[len(cs)-maxCycles:]
		}
	}
	c := &cs[len(cs)-1]
	c.Last = at
	c.Requests++
	if edit != nil {
		edit(c)
	}
	f.cycles[site] = cs
}

// count adds figures to site's current cycle.
func (f *fleet) count(site int, edit func(*CycleView)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cs := f.cycles[site]; len(cs) > 0 {
		edit(&cs[len(cs)-1])
	}
}

func (f *fleet) fail(site int, endpoint string, at time.Time, e *syncapi.Error) {
	f.note(site, endpoint, at, func(c *CycleView) {
		c.Errors = append(c.Errors, fmt.Sprintf("%s: %s", endpoint, e.Error()))
		if len(c.Errors) > 5 {
			c.Errors = c.Errors[len(c.Errors)-5:]
		}
	})
}

func (f *fleet) refused(site int, at time.Time, code string) {
	f.mu.Lock()
	f.refusals[site] = RefusalView{At: at, Code: code}
	f.mu.Unlock()
}

func (f *fleet) recent(site int) ([]CycleView, RefusalView) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cs := append([]CycleView(nil), f.cycles[site]...)
	for i := range cs {
		cs[i].Errors = append([]string(nil), cs[i].Errors...)
		if l := cs[i].OutboxLeft; l != nil {
			n := *l
			cs[i].OutboxLeft = &n
		}
	}
	return cs, f.refusals[site]
}

// health parses the block kept in the registry (nil when none).
func health(st queue.SiteState) *syncapi.Health {
	if len(st.Health) == 0 {
		return nil
	}
	var h syncapi.Health
	if json.Unmarshal(st.Health, &h) != nil {
		return nil
	}
	return &h
}

// verdict says how a site is doing, from what it reported (h, which came
// at healthAt) and what the primary saw.
func verdict(now, lastContact time.Time, h *syncapi.Health, healthAt time.Time, ref RefusalView, last *CycleView) string {
	if last != nil && lastContact.After(last.Last.Add(otherNodeMargin)) {
		last = nil // another node (behind the same load balancer) served the site since: this node's cycle is old news
	}
	// A failure the site reported at the start of a cycle the primary has
	// since seen reach its end is over.
	through := last != nil && last.Reached && len(last.Errors) == 0 && !last.Started.Before(healthAt)
	switch {
	case lastContact.IsZero() && ref.At.IsZero():
		return VerdictNever
	case ref.At.After(lastContact):
		return VerdictFailing // refused at the door since its last good contact
	case last != nil && len(last.Errors) > 0:
		return VerdictFailing // its latest cycle was answered with errors
	case h != nil && h.LastErrorAt > h.LastSuccess && !through:
		return VerdictFailing
	}
	every := defaultInterval
	if h != nil && h.Interval > 0 {
		every = time.Duration(h.Interval) * time.Minute
	}
	if now.Sub(lastContact) > every+lateGrace(every) {
		return VerdictLate
	}
	return VerdictOK
}

// SiteView is one line of the primary's site list: the configured row,
// what the registry knows, the site's last health block and the verdict.
type SiteView struct {
	SyncID         int       `json:"syncId"`
	User           string    `json:"user"`
	URL            string    `json:"url,omitempty"` // a URL on the primary's row disables sync for it
	Stores         []string  `json:"stores"`
	Registry       bool      `json:"registry,omitempty"` // the row is the registry's, not the prefs'
	HardwareID     string    `json:"hardwareId,omitempty"`
	LastContact    time.Time `json:"lastContact"`
	Initialisation string    `json:"initialisation"`
	QueueLength    int       `json:"queueLength"`
	RewoundAt      time.Time `json:"rewoundAt"` // when the site last reported an older state than the primary saw (restored)
	Verdict        string    `json:"verdict"`
	// From the site's health block (zero when it sends none).
	Version     string          `json:"version,omitempty"`
	LastSuccess time.Time       `json:"lastSuccess"`
	LastError   string          `json:"lastError,omitempty"`
	LastErrorAt time.Time       `json:"lastErrorAt"`
	Outbox      int             `json:"outbox"`
	OutboxAge   time.Duration   `json:"outboxAgeNs"`
	ClockSkew   time.Duration   `json:"clockSkewNs"` // the site's clock minus the primary's
	Health      *syncapi.Health `json:"health,omitempty"`
	HealthAt    time.Time       `json:"healthAt"`
	// Detail (SiteDetail only).
	Cycles      []CycleView      `json:"cycles,omitempty"`
	Refusal     *RefusalView     `json:"refusal,omitempty"`
	Diagnostics *DiagnosticsView `json:"diagnostics,omitempty"`
}

// Sites lists every configured site, those that never connected included,
// in sync ID order.
func (s *Server) Sites() []SiteView {
	t := s.sites.Load()
	return s.views(t, t.ids)
}

// views are the fleet views of sites ids; many are read in bulk (one read
// of every state and queue length, not two per site).
func (s *Server) views(t *siteTable, ids []int) []SiteView {
	now := s.now()
	out := make([]SiteView, 0, len(ids))
	if len(ids) < bulkViews {
		for _, id := range ids {
			out = append(out, s.view(t.byID[id], now, false))
		}
		return out
	}
	states := map[int]queue.SiteState{}
	for _, st := range s.store.Sites() {
		states[st.SyncID] = st
	}
	lens, err := s.store.QueueLengths()
	if err != nil {
		s.log.Warn("cannot read the queue lengths", "err", err)
	}
	for _, id := range ids {
		st, ok := states[id]
		if !ok {
			st = queue.SiteState{SyncID: id, Initialisation: queue.InitNew}
		}
		out = append(out, s.viewOf(t.byID[id], st, lens[id], now, false))
	}
	return out
}

// bulkViews is where views reads every site at once instead of one by one.
const bulkViews = 64

// SiteDetail is one site with its recent cycles and refusals.
func (s *Server) SiteDetail(id int) (SiteView, bool) {
	row := s.sites.Load().byID[id]
	if row == nil {
		return SiteView{}, false
	}
	return s.view(row, s.now(), true), true
}

func (s *Server) view(row *SiteRow, now time.Time, detail bool) SiteView {
	st, err := s.store.Site(row.SyncID)
	if err != nil {
		s.log.Warn("cannot read site state", "site", row.SyncID, "err", err)
	}
	return s.viewOf(row, st, s.store.QueueLen(row.SyncID), now, detail)
}

// viewOf is the view of row with its state st and queue length qlen.
func (s *Server) viewOf(row *SiteRow, st queue.SiteState, qlen int, now time.Time, detail bool) SiteView {
	v := SiteView{SyncID: row.SyncID, User: row.User, URL: row.URL, Stores: row.Stores, Registry: row.Registry, HardwareID: cmp.Or(st.HardwareID, prePin(row, st)),
		LastContact: st.LastContact, Initialisation: st.Initialisation, QueueLength: qlen,
		RewoundAt: st.RewoundAt, HealthAt: st.HealthAt}
	cycles, ref := s.fleet.recent(row.SyncID)
	var last *CycleView
	if len(cycles) > 0 {
		last = &cycles[len(cycles)-1]
	}
	h := health(st)
	if h != nil {
		v.Health, v.Version, v.Outbox = h, h.Version, h.Outbox
		v.OutboxAge = time.Duration(h.OutboxAge) * time.Second
		v.LastError = h.LastError
		if h.LastSuccess > 0 {
			v.LastSuccess = time.Unix(h.LastSuccess, 0).UTC()
		}
		if h.LastErrorAt > 0 {
			v.LastErrorAt = time.Unix(h.LastErrorAt, 0).UTC()
		}
		if h.Clock > 0 {
			v.ClockSkew = time.UnixMilli(h.Clock).Sub(st.HealthAt).Round(time.Second)
		}
	}
	if last != nil && last.OutboxLeft != nil && !last.Started.Before(st.HealthAt) {
		v.Outbox = *last.OutboxLeft // the block came before this cycle's push
	}
	for _, c := range cycles {
		// A cycle the primary saw reach its end cleanly succeeded, whatever
		// the block sent at its start said (that cycle had not ended yet).
		if c.Reached && len(c.Errors) == 0 && c.Last.After(v.LastSuccess) {
			v.LastSuccess = c.Last.UTC()
		}
	}
	v.Verdict = verdict(now, st.LastContact, h, st.HealthAt, ref, last)
	if detail {
		v.Cycles = cycles
		if !ref.At.IsZero() {
			v.Refusal = &ref
		}
		if d, err := s.store.Diagnostics(row.SyncID); err == nil {
			v.Diagnostics = diagnosticsView(d)
		}
	}
	return v
}
