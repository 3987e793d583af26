package control

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
)

// The site registry's routes (the primary's): a change (add, edit, remove,
// import) and the change log. A change needs a privileged caller (Permit)
// and an unlock code bound to its digest, or an open maintenance window
// (docs/registry.md).

// MaxSitesBody bounds the body of a site change: an import of 100,000 rows
// fits.
const MaxSitesBody = 64 << 20

// SiteRow is a site row of a change, as the operator wrote it.
type SiteRow struct {
	SyncID       int      `json:"sync_id"`
	User         string   `json:"user,omitempty"`
	PasswordHash string   `json:"password_hash,omitempty"`
	Stores       []string `json:"stores,omitempty"`
	HardwareID   string   `json:"hardware_id,omitempty"`
	URL          string   `json:"url,omitempty"`
	Line         int      `json:"line,omitempty"` // its line in the imported file
}

// SitesChange asks for a change of the registry.
type SitesChange struct {
	Op     string    `json:"op"` // add, edit, remove or import
	Rows   []SiteRow `json:"rows,omitempty"`
	Clear  []string  `json:"clear,omitempty"` // edit: fields to empty (hardware_id, url)
	Remove []int     `json:"remove,omitempty"`
	Code   string    `json:"code,omitempty"`
	// DryRun validates the change and says what it needs, writing nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// SitesChanged is what a change did (or, dry, would do).
type SitesChanged struct {
	DryRun     bool   `json:"dry_run,omitempty"`
	Generation uint64 `json:"generation,omitempty"`
	What       string `json:"what"`
	Put        int    `json:"put"`
	Removed    int    `json:"removed"`
	// ChangeDigest is what an unlock code for the change must be bound to,
	// with this box's HardwareID; Request says it in words for the vendor.
	ChangeDigest string `json:"change_digest"`
	HardwareID   string `json:"hardware_id,omitempty"`
	Request      string `json:"request,omitempty"`
	UnlockedBy   string `json:"unlocked_by,omitempty"`
}

// SitesLogEntry is one change of the registry.
type SitesLogEntry struct {
	Generation uint64 `json:"generation"`
	At         string `json:"at"`
	By         string `json:"by"`
	What       string `json:"what"`
	Digest     string `json:"digest"`
	Put        int    `json:"put"`
	Removed    int    `json:"removed"`
}

// RegistryBackend is the primary's part of the local API for the registry.
type RegistryBackend interface {
	// ChangeSites applies c for caller who (peer credentials, in words).
	ChangeSites(who string, c SitesChange) (SitesChanged, error)
	SitesLog(limit int) ([]SitesLogEntry, error)
}

func registryRoutes(mux *http.ServeMux, handle func(string, func(*http.Request) (any, error)), log *slog.Logger, b RegistryBackend) {
	mux.HandleFunc("POST /v1/registry/change", serveJSON(MaxSitesBody, log, func(r *http.Request) (any, error) {
		var body SitesChange
		if err := decode(r, &body); err != nil {
			return nil, err
		}
		if !body.DryRun {
			if err := Permit(r, "changing the site registry"); err != nil {
				return nil, err
			}
		}
		who := "unknown caller"
		if p, ok := PeerOf(r); ok {
			who = fmt.Sprintf("uid %d pid %d", p.UID, p.PID)
		}
		return b.ChangeSites(who, body)
	}))
	handle("GET /v1/registry/log", func(r *http.Request) (any, error) {
		limit := 50
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return nil, Errorf(http.StatusBadRequest, "limit must be 1 to 1000")
			}
			limit = n
		}
		return b.SitesLog(limit)
	})
}

// SiteLister lists only the sites that match, where the backend can (the
// primary, whose list may hold 40,000 sites): those whose sync ID, user
// name or verdict starts with prefix (any letter case), where store is
// active ("" for any).
type SiteLister interface {
	SitesMatching(prefix, store string) ([]Site, error)
}

// SitesMatching lists the sites that match (SiteLister); an agent that
// cannot filter lists them all, and the caller filters.
func (c *Client) SitesMatching(ctx context.Context, prefix, store string) ([]Site, error) {
	var out []Site
	q := url.Values{}
	if prefix != "" {
		q.Set("filter", prefix)
	}
	if store != "" {
		q.Set("store", store)
	}
	path := "/v1/sites"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return out, c.call(ctx, http.MethodGet, path, nil, &out)
}

// ChangeSites asks the primary for a change of its site registry.
func (c *Client) ChangeSites(ctx context.Context, ch SitesChange) (SitesChanged, error) {
	var out SitesChanged
	return out, c.call(ctx, http.MethodPost, "/v1/registry/change", ch, &out)
}

// SitesLog returns the registry's last limit changes, newest first.
func (c *Client) SitesLog(ctx context.Context, limit int) ([]SitesLogEntry, error) {
	var out []SitesLogEntry
	return out, c.call(ctx, http.MethodGet, "/v1/registry/log?limit="+strconv.Itoa(limit), nil, &out)
}
