package queue

import (
	"fmt"
	"sort"
	"time"

	"github.com/tidwall/buntdb"
)

// SiteState is what the primary knows about one site.
type SiteState struct {
	SyncID int
	// HardwareID is the ID pinned on the site's first contact ("" = none).
	HardwareID string
	PinnedAt   time.Time
	// LastContact is the last authenticated request (kept in memory at
	// every call, written to the file at most once a minute).
	LastContact time.Time
	// Initialisation is "new", "started", "completed" or "error".
	Initialisation string
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
	if err := c.st.update(fmt.Sprintf("save site %d", s.SyncID), func(tx *buntdb.Tx) error {
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
// ErrHardwareMismatch; the error never reveals the pinned ID.
func (c *Central) Pin(id int, hwid string) (SiteState, error) {
	if err := checkSiteID(id); err != nil {
		return SiteState{}, err
	}
	if hwid == "" || len(hwid) > 256 || hasControl(hwid) {
		return SiteState{}, fmt.Errorf("site %d presented an invalid hardware ID", id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.st.usable(); err != nil {
		return SiteState{}, err
	}
	s := c.siteLocked(id).state
	switch s.HardwareID {
	case hwid:
		return s, nil
	case "":
		s.HardwareID, s.PinnedAt = hwid, time.Now().UTC()
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
