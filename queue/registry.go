package queue

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// The site registry: the primary's site rows kept in its storage instead of
// its prefs file, so that a national deployment (40,000 sites) is not one
// TOML file. A row says what a [[sync_with]] row of the primary's prefs
// says. The registry has a generation, raised by every change, so a primary
// node rereads it only when it changed; and a bounded log of its changes
// (who, when, what). Both backends keep the rows, the generation and the
// log entry of a change in one atomic step.
//
// The storage checks the shape of a row (CheckSiteConfig) and that sync IDs
// and users are unique within the registry; the primary checks the rest
// (password hashes, clashes with the rows of its prefs) before it writes.

// SiteConfig is one site row of the registry.
type SiteConfig struct {
	SyncID       int      `json:"sync_id"`
	User         string   `json:"user"`
	PasswordHash string   `json:"password_hash"` // slow hash of the password's SHA-256 (agent/passwd)
	Stores       []string `json:"stores"`
	HardwareID   string   `json:"hardware_id,omitempty"` // optional pre-pin
	URL          string   `json:"url,omitempty"`         // disables sync on the primary while set
}

// RegistryEdit is one change of the registry: rows added or replaced (by
// sync ID), and sync IDs removed.
type RegistryEdit struct {
	Put    []SiteConfig `json:"put,omitempty"`
	Remove []int        `json:"remove,omitempty"`
}

// RegistryChange is an entry of the registry's change log.
type RegistryChange struct {
	Generation uint64    `json:"gen"` // the registry's generation after the change
	At         time.Time `json:"at"`
	By         string    `json:"by"`     // who authorised it (caller, unlock code)
	What       string    `json:"what"`   // what it did, in words
	Digest     string    `json:"digest"` // the change digest its authorisation was bound to
	Put        int       `json:"put"`
	Removed    int       `json:"removed"`
}

// Bounds of the registry.
const (
	MaxRegistrySites = 200_000 // rows in the registry
	MaxRegistryEdit  = 200_000 // rows put or removed by one change
	RegistryLogMax   = 1000    // entries the change log keeps (the oldest go)
	maxRegistryText  = 1024    // bytes of a change's By or What
	maxSiteField     = 256     // bytes of a user, store, hardware ID
	maxSiteStores    = 1000    // stores on one site
	maxPasswordHash  = 512
	maxSiteURL       = 2048
)

// ErrRegistryChanged refuses a change made against a generation of the
// registry that is no longer current (another node or operator changed it
// first): read it again and retry.
var ErrRegistryChanged = errors.New("the site registry changed meanwhile")

// CheckSiteConfig checks the shape of a row: a sync ID above 1 (1 is the
// primary), a user that Basic auth can carry, a password hash, at least one
// store, and no control characters anywhere.
func CheckSiteConfig(s SiteConfig) error {
	switch {
	case s.SyncID <= 1:
		return fmt.Errorf("sync_id must be above 1 (1 is the primary), got %d", s.SyncID)
	case s.User == "":
		return errors.New("user is empty")
	case len(s.User) > maxSiteField || hasControl(s.User):
		return fmt.Errorf("user must be at most %d characters without control characters", maxSiteField)
	case strings.Contains(s.User, ":"):
		return errors.New("a user name cannot contain ':' (Basic auth separates user and password with it)")
	case strings.TrimSpace(s.User) != s.User:
		return fmt.Errorf("user %q has leading or trailing spaces", s.User)
	case s.PasswordHash == "":
		return errors.New("password_hash is empty: make one with `syncagent passwd`")
	case len(s.PasswordHash) > maxPasswordHash || hasControl(s.PasswordHash):
		return errors.New("password_hash is not a hash made by `syncagent passwd`")
	case len(s.Stores) == 0:
		return fmt.Errorf("site %d needs at least one store", s.SyncID)
	case len(s.Stores) > maxSiteStores:
		return fmt.Errorf("site %d lists %d stores; at most %d", s.SyncID, len(s.Stores), maxSiteStores)
	case len(s.HardwareID) > maxSiteField || hasControl(s.HardwareID) || strings.ContainsAny(s.HardwareID, " \t"):
		return errors.New("hardware_id must be a hardware ID as printed by `syncagent hwid` (no spaces), or empty")
	case len(s.URL) > maxSiteURL || hasControl(s.URL):
		return fmt.Errorf("url must be at most %d characters without control characters", maxSiteURL)
	}
	for _, st := range s.Stores {
		if st == "" || len(st) > maxSiteField || hasControl(st) {
			return fmt.Errorf("store %q must be 1 to %d characters without control characters", st, maxSiteField)
		}
	}
	return nil
}

// CheckRegistryEdit checks an edit on its own (its rows' shape, no sync ID
// twice, bounded text): what every backend checks before it writes.
func CheckRegistryEdit(e RegistryEdit, note RegistryChange) error {
	if n := len(e.Put) + len(e.Remove); n == 0 {
		return errors.New("the change puts and removes nothing")
	} else if n > MaxRegistryEdit {
		return fmt.Errorf("the change touches %d rows; at most %d at once: split it", n, MaxRegistryEdit)
	}
	if len(note.By) > maxRegistryText || len(note.What) > maxRegistryText {
		return fmt.Errorf("a change's by and what are at most %d bytes", maxRegistryText)
	}
	seen := make(map[int]bool, len(e.Put)+len(e.Remove))
	for _, s := range e.Put {
		if err := CheckSiteConfig(s); err != nil {
			return fmt.Errorf("site %d: %w", s.SyncID, err)
		}
		if seen[s.SyncID] {
			return fmt.Errorf("sync_id %d appears twice in one change", s.SyncID)
		}
		seen[s.SyncID] = true
	}
	for _, id := range e.Remove {
		if id <= 1 {
			return fmt.Errorf("cannot remove sync_id %d: sites have sync IDs above 1", id)
		}
		if seen[id] {
			return fmt.Errorf("sync_id %d appears twice in one change", id)
		}
		seen[id] = true
	}
	return nil
}

// ApplyRegistryEdit returns rows (by sync ID) after e, or why e cannot
// apply: a removed row that is not there, a user used twice, too many rows.
// rows is not changed.
func ApplyRegistryEdit(rows map[int]SiteConfig, e RegistryEdit) (map[int]SiteConfig, error) {
	next := maps.Clone(rows)
	if next == nil {
		next = map[int]SiteConfig{}
	}
	for _, id := range e.Remove {
		if _, ok := next[id]; !ok {
			return nil, fmt.Errorf("cannot remove site %d: the registry has no such site", id)
		}
		delete(next, id)
	}
	for _, s := range e.Put {
		s.Stores = slices.Clone(s.Stores)
		next[s.SyncID] = s
	}
	if len(next) > MaxRegistrySites {
		return nil, fmt.Errorf("the registry would hold %d sites; at most %d", len(next), MaxRegistrySites)
	}
	users := make(map[string]int, len(next))
	for _, id := range slices.Sorted(maps.Keys(next)) {
		u := next[id].User
		if other, dup := users[u]; dup {
			return nil, fmt.Errorf("user %q would be used by both site %d and site %d; user names must be unique", u, other, id)
		}
		users[u] = id
	}
	return next, nil
}

// sortedRows returns the rows by sync ID.
func sortedRows(rows map[int]SiteConfig) []SiteConfig {
	out := make([]SiteConfig, 0, len(rows))
	for _, id := range slices.Sorted(maps.Keys(rows)) {
		r := rows[id]
		r.Stores = slices.Clone(r.Stores)
		out = append(out, r)
	}
	return out
}
