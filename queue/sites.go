package queue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tidwall/buntdb"
)

// SiteState is what the primary knows about one site.
type SiteState struct {
	SyncID int
	// HardwareID is the ID pinned on the site's first contact ("" = none).
	HardwareID string
	PinnedAt   time.Time
	// ClearedHardwareID is the ID a clear-hwid removed: a different box
	// pinned next is a new box, whose queue starts empty.
	ClearedHardwareID string `json:",omitempty"`
	// LastContact is the last authenticated request (kept in memory at
	// every call, written to the file at most once a minute).
	LastContact time.Time
	// Initialisation is "new", "started", "completed" or "error".
	Initialisation string
	// SyncOutEpoch and SyncOutHigh are the highest syncOutId number taken
	// from the site (per numbering epoch), to notice an outbox that went
	// back (a restored backup).
	SyncOutEpoch string `json:",omitempty"`
	SyncOutHigh  uint64 `json:",omitempty"`
	// RewoundAt is when the site last sent new changes under numbers it had
	// used before; Rewinds counts such pushes.
	RewoundAt time.Time `json:",omitempty"`
	Rewinds   int       `json:",omitempty"`
	// AckedHigh is the highest queue entry (by the version that queued it)
	// the site has acknowledged.
	AckedHigh uint64 `json:",omitempty"`
	// Floor: a restore was noticed and FloorAcked is what the restored box
	// had acknowledged; until it acknowledges as much as the primary has
	// seen (it has initialised again and pulled), it is judged against that.
	Floor      bool   `json:",omitempty"`
	FloorAcked uint64 `json:",omitempty"`
	// Verified is a token of the password last verified for the site (an
	// HMAC under the primary's auth key), so that after a restart the site
	// is let in without a slow hash.
	Verified string `json:",omitempty"`
	// GenEpoch and GenHigh: the highest initialisation generation the box's
	// datafile (by its numbering epoch) has reported.
	GenEpoch string `json:",omitempty"`
	GenHigh  uint64 `json:",omitempty"`
	// Health is the site's last health block as it sent it (compact JSON,
	// validated by the caller), and when it came.
	Health   json.RawMessage `json:",omitempty"`
	HealthAt time.Time       `json:",omitempty"`
}

// The initialisation statuses of sync API v5.
const (
	InitNew       = "new"
	InitStarted   = "started"
	InitCompleted = "completed"
	InitError     = "error"
)

// touchEvery bounds how often Touch writes a site's last contact to disk.
const touchEvery = time.Minute

type siteEntry struct {
	state SiteState
	saved time.Time // LastContact as last written to the file
}

func siteKey(id int) string { return sitePrefix + padSite(id) }

// siteLocked returns the entry for id, creating an unsaved one.
func (c *Central) siteLocked(id int) *siteEntry {
	e, ok := c.sites[id]
	if !ok {
		e = &siteEntry{state: SiteState{SyncID: id, Initialisation: InitNew}}
		c.sites[id] = e
	}
	return e
}

// saveSiteLocked writes s as site id's state; on success it becomes current.
func (c *Central) saveSiteLocked(s SiteState) error {
	if err := c.updateLocked(fmt.Sprintf("save site %d", s.SyncID), func(tx *buntdb.Tx) error {
		return setJSONKey(tx, siteKey(s.SyncID), s, nil)
	}); err != nil {
		return err
	}
	e := c.siteLocked(s.SyncID)
	e.state, e.saved = s, s.LastContact
	return nil
}

func checkSiteID(id int) error {
	if id <= 0 {
		return fmt.Errorf("invalid site id %d", id)
	}
	return nil
}

// Site returns what is known about site id; an unknown site reads as
// SiteState{SyncID: id, Initialisation: "new"}.
func (c *Central) Site(id int) (SiteState, error) {
	if err := checkSiteID(id); err != nil {
		return SiteState{}, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := c.st.usable(); err != nil {
		return SiteState{}, err
	}
	if e, ok := c.sites[id]; ok {
		return e.state, nil
	}
	return SiteState{SyncID: id, Initialisation: InitNew}, nil
}

// Pin pins hwid as site id's hardware ID on its first contact and returns
// the site's state. A different hardware ID is refused with
// ErrHardwareMismatch; the error never reveals the pinned ID. A box other
// than the one whose pin was cleared starts as a new site: its queue is
// emptied (never another box's leftovers) and it must initialise.
func (c *Central) Pin(id int, hwid string) (SiteState, error) {
	if err := checkSiteID(id); err != nil {
		return SiteState{}, err
	}
	if hwid == "" || len(hwid) > 256 || hasControl(hwid) {
		return SiteState{}, fmt.Errorf("site %d presented an invalid hardware ID", id)
	}
	c.mu.RLock()
	if err := c.st.usable(); err != nil {
		c.mu.RUnlock()
		return SiteState{}, err
	}
	if e, ok := c.sites[id]; ok && e.state.HardwareID == hwid {
		s := e.state
		c.mu.RUnlock()
		return s, nil
	}
	c.mu.RUnlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.drainLocked(); err != nil {
		return SiteState{}, err
	}
	s := c.siteLocked(id).state
	switch s.HardwareID {
	case hwid:
		return s, nil
	case "":
		if s.ClearedHardwareID != "" && s.ClearedHardwareID != hwid {
			n, err := c.purgeQueueLocked(id)
			if err != nil {
				return SiteState{}, err
			}
			s.Initialisation = InitNew
			c.log.Warn("another box took over a site whose pin was cleared; its queue was emptied and it starts as a new site", "site", id, "dropped", n)
		}
		s.HardwareID, s.PinnedAt, s.ClearedHardwareID = hwid, time.Now().UTC(), ""
		if err := c.saveSiteLocked(s); err != nil {
			return SiteState{}, err
		}
		c.log.Info("pinned site hardware ID", "site", id)
		return s, nil
	}
	return SiteState{}, fmt.Errorf("site %d: %w: this site is pinned to another box; clear the pin on the primary", id, ErrHardwareMismatch)
}

// ClearPin forgets site id's pinned hardware ID; its next contact pins again.
func (c *Central) ClearPin(id int) error {
	if err := checkSiteID(id); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.siteLocked(id).state
	if s.HardwareID != "" {
		s.ClearedHardwareID = s.HardwareID
	}
	s.HardwareID, s.PinnedAt = "", time.Time{}
	if err := c.saveSiteLocked(s); err != nil {
		return err
	}
	c.log.Info("cleared site hardware ID pin", "site", id)
	return nil
}

// Touch records a contact from site id at time at. It updates memory every
// time and the file at most once a minute per site, so a busy site does not
// cost an fsync per request.
func (c *Central) Touch(id int, at time.Time) error {
	if err := checkSiteID(id); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.st.usable(); err != nil {
		return err
	}
	e := c.siteLocked(id)
	if at.After(e.state.LastContact) {
		e.state.LastContact = at.UTC()
	}
	if e.state.LastContact.Sub(e.saved) < touchEvery {
		return nil
	}
	return c.saveSiteLocked(e.state)
}

// NoteHealth keeps site id's latest health block (raw: validated by the
// caller; nil when the box sent only its marks) in memory, written to the
// file with the last contact, and
// compares the numbering the box reports with what the primary has seen
// from it: a box whose outbox numbering (outboxSeq, "<epoch>-<seq>") is
// below the highest syncOutId taken from it in the same epoch, or that has
// acknowledged less than it did, was restored from an older copy. It then
// must initialise again (it lost what it pulled since its copy): the site's
// status turns "new"; the marks start afresh when it initialises.
func (c *Central) NoteHealth(id int, raw []byte, m Marks, at time.Time) (rewound bool, err error) {
	if err := checkSiteID(id); err != nil {
		return false, err
	}
	if raw == nil {
		// Marks only (every request): read first, lock only when it matters.
		c.mu.RLock()
		e, ok := c.sites[id]
		quiet := true
		if ok {
			next, rew := noteMarks(e.state, m, at)
			quiet = !rew && next.Floor == e.state.Floor && next.GenHigh == e.state.GenHigh && next.GenEpoch == e.state.GenEpoch
		}
		c.mu.RUnlock()
		if quiet {
			return false, nil
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.st.usable(); err != nil {
		return false, err
	}
	e := c.siteLocked(id)
	s := e.state
	if raw != nil {
		s.Health, s.HealthAt = bytes.Clone(raw), at.UTC()
	}
	s, rewound = noteMarks(s, m, at)
	if s.Floor == e.state.Floor && s.GenHigh == e.state.GenHigh && s.GenEpoch == e.state.GenEpoch && !rewound {
		e.state = s
		return false, nil
	}
	if err := c.saveSiteLocked(s); err != nil {
		return false, err
	}
	if rewound {
		c.log.Warn("site reports an older state than the primary has seen (restored from an older copy?); it must initialise again",
			"site", id, "outbox", m.OutboxSeq, "acked", m.Acked, "generation", m.Gen)
	}
	return rewound, nil
}

// Marks are what a syncagent satellite reports with every request, from
// which the primary notices a datafile put back from an older copy.
type Marks struct {
	OutboxSeq string // where its outbox numbering stands: "<epoch>-<seq>"
	Acked     uint64 // the highest queue entry it has acknowledged
	Gen       uint64 // its datafile's initialisation generation (raised by each initialisation)
}

// noteMarks judges the marks a box reports against the highest it has
// reported before (they never go back): a box behind them was restored from
// an older copy, and must initialise again. Its outbox numbering then goes
// on from the copy's, and its next initialisation has the copy's generation
// plus one: the primary takes both as the highs. What it had acknowledged
// becomes its floor until it has acknowledged as much as the primary saw
// (it has initialised again and pulled). So a box recovering from a restore
// is not taken for restored again, and the same copy restored once more, or
// a copy from before an initialisation, is noticed. A restore noticed while
// the site must initialise anyway is not counted.
func noteMarks(s SiteState, m Marks, at time.Time) (SiteState, bool) {
	epoch, seq, numbered := syncOutNumber(m.OutboxSeq)
	if s.Floor && m.Acked >= s.AckedHigh {
		s.Floor, s.FloorAcked = false, 0 // caught up
	}
	if numbered && epoch != s.GenEpoch {
		s.GenEpoch, s.GenHigh = epoch, m.Gen // another datafile (a reinstall): its own generations
	}
	if reinitialising(s) || !behind(s, m) {
		if numbered && m.Gen > s.GenHigh {
			s.GenHigh = m.Gen
		}
		return s, false
	}
	s.RewoundAt, s.Rewinds, s.Initialisation = at.UTC(), s.Rewinds+1, InitNew
	s.Floor, s.FloorAcked = true, m.Acked
	if numbered && epoch == s.SyncOutEpoch {
		s.SyncOutHigh = seq
	}
	if numbered {
		s.GenHigh = m.Gen + 1
	}
	return s, true
}

// behind reports whether marks are below what the primary has seen (the
// acknowledged mark below the floor, while there is one).
func behind(s SiteState, m Marks) bool {
	epoch, seq, numbered := syncOutNumber(m.OutboxSeq)
	switch {
	case numbered && epoch == s.GenEpoch && m.Gen < s.GenHigh:
		return true
	case numbered && epoch == s.SyncOutEpoch && seq < s.SyncOutHigh:
		return true
	}
	mark := s.AckedHigh
	if s.Floor {
		mark = s.FloorAcked
	}
	return m.Acked < mark && (m.Acked > 0 || m.OutboxSeq != "")
}

// SetVerified keeps the token of the password last verified for site id
// (written only when it changes).
func (c *Central) SetVerified(id int, token string) error {
	if err := checkSiteID(id); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.siteLocked(id).state
	if s.Verified == token {
		return nil
	}
	s.Verified = token
	return c.saveSiteLocked(s)
}

// FlushContacts writes every site's last contact that Touch kept in memory
// only (it writes at most once a minute per site); the primary calls it on a
// clean stop, so the times survive a restart.
func (c *Central) FlushContacts() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.st.usable(); err != nil {
		return err
	}
	for _, e := range c.sites {
		if e.state.LastContact.After(e.saved) {
			if err := c.saveSiteLocked(e.state); err != nil {
				return err
			}
		}
	}
	return nil
}

// SetInitialisation records site id's initialisation status ("new",
// "started", "completed" or "error").
func (c *Central) SetInitialisation(id int, status string) error {
	if err := checkSiteID(id); err != nil {
		return err
	}
	switch status {
	case InitNew, InitStarted, InitCompleted, InitError:
	default:
		return fmt.Errorf("invalid initialisation status %q (want new, started, completed or error)", status)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.siteLocked(id).state
	s.Initialisation = status
	return c.saveSiteLocked(s)
}

// reinitialising reports whether a site must initialise or is doing so: a
// restore noticed meanwhile is the one it is already recovering from.
func reinitialising(s SiteState) bool {
	return s.Initialisation == InitNew || s.Initialisation == InitStarted
}

// Sites lists every site the primary has seen, by sync ID.
func (c *Central) Sites() []SiteState {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]SiteState, 0, len(c.sites))
	for _, e := range c.sites {
		out = append(out, e.state)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SyncID < out[j].SyncID })
	return out
}

// QueueLengths returns every site's queue length that is not 0, in one
// read (a list of 40,000 sites asks once, not 40,000 times).
func (c *Central) QueueLengths() (map[int]int, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := c.st.usable(); err != nil {
		return nil, err
	}
	out := make(map[int]int, len(c.qlen))
	for site, n := range c.qlen {
		if n != 0 {
			out[site] = n
		}
	}
	return out, nil
}

// NoteSyncOutIDs raises site's syncOutId high-water mark by the accepted
// records and reports whether any of them was numbered at or below it in
// the same numbering (a rewound outbox: a restored backup, a reinstalled
// client counting from 1 again). It returns the site's new state (to be
// saved with the batch) and whether it changed.
func NoteSyncOutIDs(s SiteState, in []Inbound, outs []Outcome, now time.Time) (SiteState, bool, bool) {
	before, rewound := s, false
	for i, x := range in {
		if outs[i].Refused != nil || outs[i].Duplicate {
			continue
		}
		epoch, n, ok := syncOutNumber(x.SyncOutID)
		if !ok {
			continue
		}
		switch {
		case epoch != s.SyncOutEpoch || s.SyncOutHigh == 0:
			s.SyncOutEpoch, s.SyncOutHigh = epoch, n
		case n <= s.SyncOutHigh:
			rewound = !reinitialising(s) // unless it must initialise anyway
		default:
			s.SyncOutHigh = n
		}
	}
	if rewound {
		s.RewoundAt = now.UTC()
		s.Rewinds++
		s.Initialisation = InitNew // it may have lost what it pulled since its backup: it must refill
		s.Floor, s.FloorAcked = true, 0
		if epoch, n, ok := syncOutNumber(in[lastTaken(outs)].SyncOutID); ok && epoch == s.SyncOutEpoch {
			s.SyncOutHigh = n // its numbering goes on from its copy's
		}
	}
	changed := rewound || s.SyncOutEpoch != before.SyncOutEpoch || s.SyncOutHigh != before.SyncOutHigh
	return s, changed, rewound
}

// lastTaken is the index of the last change accepted (not refused, not a
// duplicate); the caller knows there is one.
func lastTaken(outs []Outcome) int {
	for i := len(outs) - 1; i >= 0; i-- {
		if outs[i].Refused == nil && !outs[i].Duplicate {
			return i
		}
	}
	return 0
}

// syncOutNumber splits a syncOutId into its numbering epoch and number:
// "<epoch>-<digits>" (syncagent's outbox) or "<digits>" (the reference
// client's change-log cursor).
func syncOutNumber(sid string) (epoch string, n uint64, ok bool) {
	num := sid
	if i := strings.LastIndexByte(sid, '-'); i >= 0 {
		epoch, num = sid[:i], sid[i+1:]
	}
	if !digits(num) || len(num) > seqWidth {
		return "", 0, false
	}
	n, err := parseUint(num)
	return epoch, n, err == nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
