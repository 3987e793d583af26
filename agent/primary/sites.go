package primary

import (
	"fmt"
	"slices"

	"syncagent/queue"
)

// SiteRow is one satellite the primary syncs with: a [[sync_with]] row of
// the primary's prefs, without the TOML.
type SiteRow struct {
	SyncID       int
	User         string
	PasswordHash string   // slow hash of the site's password SHA-256
	Stores       []string // stores active on that site
	HardwareID   string   // optional pre-pin
	URL          string   // a URL on a primary's row disables sync (shown, not used)
}

// siteTable is an immutable view of the rows, swapped whole on reload.
type siteTable struct {
	byUser  map[string]*SiteRow
	byID    map[int]*SiteRow
	byStore map[string][]int // store → sites where it is active, ascending
	ids     []int
}

func newSiteTable(rows []SiteRow) (*siteTable, error) {
	t := &siteTable{byUser: map[string]*SiteRow{}, byID: map[int]*SiteRow{}, byStore: map[string][]int{}}
	for i := range rows {
		r := rows[i]
		if r.SyncID <= 1 {
			return nil, fmt.Errorf("site %q: sync_id must be above 1 (1 is the primary)", r.User)
		}
		if _, dup := t.byID[r.SyncID]; dup {
			return nil, fmt.Errorf("sync_id %d appears twice", r.SyncID)
		}
		if _, dup := t.byUser[r.User]; dup {
			return nil, fmt.Errorf("user %q appears twice", r.User)
		}
		r.Stores = slices.Clone(r.Stores)
		t.byUser[r.User], t.byID[r.SyncID] = &r, &r
		t.ids = append(t.ids, r.SyncID)
		for _, s := range r.Stores {
			if !slices.Contains(t.byStore[s], r.SyncID) {
				t.byStore[s] = append(t.byStore[s], r.SyncID)
			}
		}
	}
	slices.Sort(t.ids)
	for s := range t.byStore {
		slices.Sort(t.byStore[s])
	}
	return t, nil
}

// destinations are the sites a record of store should reach, never origin.
func (t *siteTable) destinations(store string, origin int) []int {
	var out []int
	for _, id := range t.byStore[store] {
		if id != origin {
			out = append(out, id)
		}
	}
	return out
}

func (r *SiteRow) hasStore(store string) bool { return slices.Contains(r.Stores, store) }

// active reports whether store is active on site.
func (t *siteTable) active(site int, store string) bool {
	return store != "" && slices.Contains(t.byStore[store], site)
}

// membership is what the stored holders must reflect: each site's stores.
func (t *siteTable) membership() queue.Membership {
	m := make(queue.Membership, len(t.byID))
	for id, row := range t.byID {
		m[id] = slices.Clone(row.Stores)
	}
	return m
}

// remoteSite is the site a store's central row names as where it is active
// (the lowest of ours, when several share it).
func (t *siteTable) remoteSite(store string) int {
	if ids := t.byStore[store]; len(ids) > 0 {
		return ids[0]
	}
	return centralSiteID
}

// centralSiteID is the primary's own sync ID (mSupplyCentralSiteId).
const centralSiteID = 1
