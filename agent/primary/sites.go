package primary

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"syncagent/queue"
)

// SiteRow is one satellite the primary syncs with: a [[sync_with]] row of
// the primary's prefs, without the TOML, or a row of the site registry in
// its storage (queue.SiteConfig).
type SiteRow struct {
	SyncID       int
	User         string
	PasswordHash string   // slow hash of the site's password SHA-256
	Stores       []string // stores active on that site
	HardwareID   string   // optional pre-pin
	URL          string   // a URL on a primary's row disables sync for that row (shown, not used)
	Registry     bool     // the row is the registry's, not the prefs'
}

// registryRow is a registry row as a SiteRow.
func registryRow(c queue.SiteConfig) SiteRow {
	return SiteRow{SyncID: c.SyncID, User: c.User, PasswordHash: c.PasswordHash, Stores: c.Stores, HardwareID: c.HardwareID, URL: c.URL, Registry: true}
}

// config is r as a registry row.
func (r *SiteRow) config() queue.SiteConfig {
	return queue.SiteConfig{SyncID: r.SyncID, User: r.User, PasswordHash: r.PasswordHash, Stores: slices.Clone(r.Stores), HardwareID: r.HardwareID, URL: r.URL}
}

// where names the form a row lives in, for errors.
func (r *SiteRow) where() string {
	if r.Registry {
		return "a site of the registry"
	}
	return "a [[sync_with]] row of the prefs"
}

// prePin is the hardware ID a registry row pre-pins and that holds now:
// the site has never been seen and nothing is pinned (a prefs row's
// pre-pin is written when the rows are applied; a registry's would be
// 40,000 writes, so it holds at first contact instead, with the same
// effect). "" when none holds.
func prePin(row *SiteRow, st queue.SiteState) string {
	if !row.Registry || row.HardwareID == "" || st.HardwareID != "" || !st.PinnedAt.IsZero() || !st.LastContact.IsZero() || st.ClearedHardwareID != "" {
		return ""
	}
	return row.HardwareID
}

// siteTable is an immutable view of the rows, swapped whole on reload.
type siteTable struct {
	byUser  map[string]*SiteRow
	byID    map[int]*SiteRow
	byStore map[string][]int // store → sites where it is active, ascending
	ids     []int
}

// newSiteTable builds the table of the prefs rows and the registry's: the
// seed's rules hold across both (unique sync IDs and users, 1 reserved for
// the primary), and a sync ID in both is refused unless both rows are the
// same site (the registry adopting a prefs row), never merged.
func newSiteTable(prefsRows []SiteRow, registry ...queue.SiteConfig) (*siteTable, error) {
	n := len(prefsRows) + len(registry)
	t := &siteTable{byUser: make(map[string]*SiteRow, n), byID: make(map[int]*SiteRow, n), byStore: map[string][]int{}}
	rows := make([]SiteRow, 0, n)
	rows = append(rows, prefsRows...)
	for _, c := range registry {
		rows = append(rows, registryRow(c))
	}
	for i := range rows {
		r := &rows[i]
		if r.SyncID <= 1 {
			return nil, fmt.Errorf("site %q: sync_id must be above 1 (1 is the primary)", r.User)
		}
		if other, dup := t.byID[r.SyncID]; dup {
			if other.Registry != r.Registry && sameSite(other.config(), r.config()) {
				// The registry adopted this prefs row (`sites import`
				// of the same row): one site, served by the prefs row
				// until that is removed and by the registry's after,
				// so it never leaves the table and its queue is kept.
				continue
			}
			if other.Registry != r.Registry {
				return nil, fmt.Errorf("sync_id %d is both a [[sync_with]] row of the prefs and a site of the registry, and they differ: keep one (delete the prefs row, or `syncagent sites remove %d`), or make them the same", r.SyncID, r.SyncID)
			}
			return nil, fmt.Errorf("sync_id %d appears twice", r.SyncID)
		}
		if other, dup := t.byUser[r.User]; dup {
			if other.Registry != r.Registry {
				return nil, fmt.Errorf("user %q is used by site %d (%s) and site %d (%s): user names must be unique", r.User, other.SyncID, other.where(), r.SyncID, r.where())
			}
			return nil, fmt.Errorf("user %q appears twice", r.User)
		}
		r.Stores = slices.Clone(r.Stores)
		t.byUser[r.User], t.byID[r.SyncID] = r, r
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

// sameSite reports whether two rows describe the same site in every
// setting (stores in any order).
func sameSite(a, b queue.SiteConfig) bool {
	as, bs := slices.Clone(a.Stores), slices.Clone(b.Stores)
	slices.Sort(as)
	slices.Sort(bs)
	return a.SyncID == b.SyncID && a.User == b.User && a.PasswordHash == b.PasswordHash && a.HardwareID == b.HardwareID &&
		a.URL == b.URL && slices.Equal(as, bs)
}

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

// QueueSummary is the primary's totals over every site and, up to all
// sites of them, each site's view; past that the views of the longest
// queues only (longest).
type QueueSummary struct {
	Sites, Queued int
	LastContact   time.Time
	Views         []SiteView
}

// QueueSummary sums every site's queue and contact, cheaply (no fleet view
// for most), and returns the views of all sites when there are at most
// all, else of the longest queues.
func (s *Server) QueueSummary(all, longest int) QueueSummary {
	t := s.sites.Load()
	if len(t.ids) <= all {
		views := s.Sites()
		sum := QueueSummary{Sites: len(views), Views: views}
		for _, v := range views {
			sum.Queued += v.QueueLength
			if v.LastContact.After(sum.LastContact) {
				sum.LastContact = v.LastContact
			}
		}
		return sum
	}
	sum := QueueSummary{Sites: len(t.ids)}
	lens, err := s.store.QueueLengths()
	if err != nil {
		s.rate.logf(slog.LevelWarn, "queue lengths", "cannot read the queue lengths", "err", err)
	}
	type queue struct{ id, n int }
	qs := make([]queue, 0, len(t.ids))
	for _, id := range t.ids {
		n := lens[id]
		sum.Queued += n
		qs = append(qs, queue{id, n})
	}
	for _, st := range s.store.Sites() {
		if t.byID[st.SyncID] != nil && st.LastContact.After(sum.LastContact) {
			sum.LastContact = st.LastContact
		}
	}
	slices.SortStableFunc(qs, func(a, b queue) int { return b.n - a.n })
	top := make([]int, 0, longest)
	for _, q := range qs[:min(longest, len(qs))] {
		top = append(top, q.id)
	}
	sum.Views = s.views(t, top)
	return sum
}

// SitesMatching lists the sites whose sync ID or user name (any letter
// case) starts with prefix, or whose verdict does, and where store is
// active ("" for any), building the fleet view only of those that can
// match: a filter over 40,000 sites costs little more than its answer.
func (s *Server) SitesMatching(prefix, store string) []SiteView {
	t := s.sites.Load()
	lower := strings.ToLower(prefix)
	verdictPrefix := prefix != "" && slices.ContainsFunc([]string{VerdictOK, VerdictLate, VerdictFailing, VerdictNever},
		func(v string) bool { return strings.HasPrefix(v, lower) })
	ids := t.ids
	if store != "" {
		ids = t.byStore[store]
	}
	var named, maybe []int // match by ID or user; may match by verdict
	for _, id := range ids {
		row := t.byID[id]
		switch {
		case prefix == "" || strings.HasPrefix(strconv.Itoa(id), prefix) || strings.HasPrefix(strings.ToLower(row.User), lower):
			named = append(named, id)
		case verdictPrefix:
			maybe = append(maybe, id)
		}
	}
	if len(maybe) == 0 {
		return s.views(t, named)
	}
	isNamed := make(map[int]bool, len(named))
	for _, id := range named {
		isNamed[id] = true
	}
	var out []SiteView
	for _, v := range s.views(t, append(named, maybe...)) {
		if isNamed[v.SyncID] || strings.HasPrefix(v.Verdict, lower) {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b SiteView) int { return a.SyncID - b.SyncID })
	return out
}
