package control

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// The fleet view's part of the local API, on the primary: one site's
// detail, diagnostics on request, and every role's metrics.

// FleetBackend is what a daemon that has a fleet view offers (Handler
// serves these routes when the Backend has them).
type FleetBackend interface {
	// SiteDetail is one site with its health, recent cycles and errors.
	SiteDetail(id int) (SiteDetail, error)
	// Diagnose asks a site for a diagnostics bundle on its next cycle.
	Diagnose(id int) (Diagnose, error)
	// Diagnostics is what the primary holds of a site's diagnostics.
	Diagnostics(id int) (Diagnostics, error)
	// Metrics is the Prometheus text exposition of the agent's figures.
	Metrics() []byte
}

// SiteDetail is `syncagent sites show ID`.
type SiteDetail struct {
	Site
	Health      *SiteHealth  `json:"health,omitempty"`
	HealthAt    time.Time    `json:"health_at,omitzero"`
	RewoundAt   time.Time    `json:"rewound_at,omitzero"`
	Refusal     *SiteRefusal `json:"refusal,omitempty"`
	Cycles      []SiteCycle  `json:"cycles"`
	Diagnostics *Diagnostics `json:"diagnostics,omitempty"` // without the bundle itself
}

// SiteHealth is a site's last health block.
type SiteHealth struct {
	Version     string    `json:"version"`
	Outbox      int       `json:"outbox"`
	OutboxAge   int64     `json:"outbox_age_s"`
	SetAside    int       `json:"set_aside"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	DataBytes   int64     `json:"datafile_bytes"`
	FreeBytes   int64     `json:"free_bytes"`
	Clock       time.Time `json:"clock"`
	Uptime      int64     `json:"uptime_s"`
	Link        string    `json:"link,omitempty"`
	Interval    int       `json:"interval_minutes"`
}

// SiteRefusal is the last time the primary refused a site at the door.
type SiteRefusal struct {
	At   time.Time `json:"at"`
	Code string    `json:"code"`
}

// SiteCycle is one cycle of a site as the primary served it.
type SiteCycle struct {
	Started  time.Time `json:"started"`
	Last     time.Time `json:"last"`
	Requests int       `json:"requests"`
	Pushed   int       `json:"pushed"`
	Pulled   int       `json:"pulled"`
	Acked    int       `json:"acked"`
	Reached  bool      `json:"reached_end"`
	Errors   []string  `json:"errors,omitempty"`
}

// Diagnose answers `syncagent sites diagnose ID`.
type Diagnose struct {
	SyncID  int    `json:"sync_id"`
	Request string `json:"request"`
	// Interval is the site's interval as it last reported it ("" unknown).
	Interval string `json:"interval,omitempty"`
}

// Diagnostics is what the primary holds of a site's diagnostics.
type Diagnostics struct {
	SyncID        int       `json:"sync_id"`
	Request       string    `json:"request,omitempty"` // waiting for the site
	RequestedAt   time.Time `json:"requested_at,omitzero"`
	Received      int       `json:"received"` // bytes of its upload so far
	Total         int       `json:"total"`
	BundleRequest string    `json:"bundle_request,omitempty"`
	BundleAt      time.Time `json:"bundle_at,omitzero"`
	BundleBytes   int       `json:"bundle_bytes"`
	Bundle        []byte    `json:"bundle,omitempty"` // gzip JSON, as the site made it
}

func fleetRoutes(mux *http.ServeMux, handle func(string, func(*http.Request) (any, error)), b FleetBackend) {
	siteID := func(r *http.Request) (int, error) {
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil {
			return 0, Errorf(http.StatusBadRequest, "site id %q is not a number", r.PathValue("id"))
		}
		return id, nil
	}
	handle("GET /v1/sites/{id}", func(r *http.Request) (any, error) {
		id, err := siteID(r)
		if err != nil {
			return nil, err
		}
		return b.SiteDetail(id)
	})
	handle("POST /v1/sites/{id}/diagnose", func(r *http.Request) (any, error) {
		id, err := siteID(r)
		if err != nil {
			return nil, err
		}
		return b.Diagnose(id)
	})
	handle("GET /v1/sites/{id}/diagnostics", func(r *http.Request) (any, error) {
		id, err := siteID(r)
		if err != nil {
			return nil, err
		}
		return b.Diagnostics(id)
	})
	mux.HandleFunc("GET /v1/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Write(b.Metrics())
	})
}

// SiteDetail asks the primary for one site's detail.
func (c *Client) SiteDetail(ctx context.Context, id int) (SiteDetail, error) {
	var out SiteDetail
	return out, c.call(ctx, http.MethodGet, fmt.Sprintf("/v1/sites/%d", id), nil, &out)
}

// Diagnose asks the primary to request a site's diagnostics.
func (c *Client) Diagnose(ctx context.Context, id int) (Diagnose, error) {
	var out Diagnose
	return out, c.call(ctx, http.MethodPost, fmt.Sprintf("/v1/sites/%d/diagnose", id), struct{}{}, &out)
}

// Diagnostics returns what the primary holds of a site's diagnostics.
func (c *Client) Diagnostics(ctx context.Context, id int) (Diagnostics, error) {
	var out Diagnostics
	return out, c.call(ctx, http.MethodGet, fmt.Sprintf("/v1/sites/%d/diagnostics", id), nil, &out)
}

// Metrics returns the agent's metrics, Prometheus text.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/v1/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.explain(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the agent's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &Error{Status: resp.StatusCode, Msg: fmt.Sprintf("the agent answered HTTP %d (an agent older than `syncagent metrics`?)", resp.StatusCode)}
	}
	return b, nil
}
