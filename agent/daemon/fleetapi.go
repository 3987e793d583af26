package daemon

import (
	"net/http"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/primary"
)

// The fleet view through the local API (control.FleetBackend): on the
// primary, one site's detail and diagnostics on request; on every role, the
// metrics.
var _ control.FleetBackend = (*Agent)(nil)

// Metrics is the Prometheus text exposition of `syncagent metrics`.
func (a *Agent) Metrics() []byte { return a.obs.Metrics() }

func (a *Agent) primaryOnly(what string) (*primaryRole, error) {
	r, ok := a.role.(*primaryRole)
	if !ok {
		return nil, conflict("%s runs on the primary; this box is a %s", what, a.role.kind())
	}
	return r, nil
}

// SiteDetail is one site of the primary's fleet view.
func (a *Agent) SiteDetail(id int) (control.SiteDetail, error) {
	r, err := a.primaryOnly("sites show")
	if err != nil {
		return control.SiteDetail{}, err
	}
	v, ok := r.prim.SiteDetail(id)
	if !ok {
		return control.SiteDetail{}, control.Errorf(http.StatusNotFound, "no site with sync_id %d", id)
	}
	d := control.SiteDetail{Site: siteLine(v), HealthAt: v.HealthAt, RewoundAt: v.RewoundAt, Cycles: []control.SiteCycle{}}
	if h := v.Health; h != nil {
		d.Health = &control.SiteHealth{Version: h.Version, Outbox: h.Outbox, OutboxAge: h.OutboxAge, SetAside: h.Aside, LastError: h.LastError,
			LastErrorAt: unixOrZero(h.LastErrorAt), LastSuccess: unixOrZero(h.LastSuccess), DataBytes: h.DataBytes, FreeBytes: h.FreeBytes,
			Clock: time.UnixMilli(h.Clock).UTC(), Uptime: h.Uptime, Link: h.Link, Interval: h.Interval}
	}
	if v.Refusal != nil {
		d.Refusal = &control.SiteRefusal{At: v.Refusal.At, Code: v.Refusal.Code}
	}
	for i := len(v.Cycles) - 1; i >= 0; i-- { // newest first, as history
		c := v.Cycles[i]
		d.Cycles = append(d.Cycles, control.SiteCycle{Started: c.Started, Last: c.Last, Requests: c.Requests, Pushed: c.Pushed, Pulled: c.Pulled,
			Acked: c.Acked, Reached: c.Reached, Errors: c.Errors})
	}
	if dv := v.Diagnostics; dv != nil {
		d.Diagnostics = &control.Diagnostics{SyncID: id, Request: dv.Request, RequestedAt: dv.RequestedAt, Received: dv.Received, Total: dv.Total,
			BundleRequest: dv.BundleRequest, BundleAt: dv.BundleAt, BundleBytes: dv.BundleBytes}
	}
	return d, nil
}

// Diagnose asks a site for a diagnostics bundle on its next cycle.
func (a *Agent) Diagnose(id int) (control.Diagnose, error) {
	r, err := a.primaryOnly("sites diagnose")
	if err != nil {
		return control.Diagnose{}, err
	}
	v, ok := r.prim.SiteDetail(id)
	if !ok {
		return control.Diagnose{}, control.Errorf(http.StatusNotFound, "no site with sync_id %d", id)
	}
	name, err := r.prim.RequestDiagnostics(id)
	if err != nil {
		return control.Diagnose{}, control.Errorf(http.StatusServiceUnavailable, "%v", err)
	}
	out := control.Diagnose{SyncID: id, Request: name}
	if v.Health != nil && v.Health.Interval > 0 {
		out.Interval = (time.Duration(v.Health.Interval) * time.Minute).String()
	}
	return out, nil
}

// Diagnostics is what the primary holds of a site's diagnostics, the last
// complete bundle included.
func (a *Agent) Diagnostics(id int) (control.Diagnostics, error) {
	r, err := a.primaryOnly("sites diagnose --show")
	if err != nil {
		return control.Diagnostics{}, err
	}
	d, err := r.prim.Diagnostics(id)
	if err != nil {
		return control.Diagnostics{}, control.Errorf(http.StatusNotFound, "%v", err)
	}
	return control.Diagnostics{SyncID: id, Request: d.Request, RequestedAt: d.RequestedAt, Received: len(d.Received), Total: d.Total,
		BundleRequest: d.BundleRequest, BundleAt: d.BundleAt, BundleBytes: len(d.Bundle), Bundle: d.Bundle}, nil
}

// siteLine is a line of the primary's site list.
func siteLine(v primary.SiteView) control.Site {
	s := control.Site{SyncID: v.SyncID, User: v.User, URL: v.URL, Stores: v.Stores, Registry: v.Registry, HardwareID: v.HardwareID, LastContact: v.LastContact,
		Initialisation: v.Initialisation, QueueLength: v.QueueLength, Verdict: v.Verdict, LastSuccess: v.LastSuccess, LastError: v.LastError,
		LastErrorAt: v.LastErrorAt, Version: v.Version}
	if v.Health != nil {
		outbox, skew := v.Outbox, int64(v.ClockSkew/time.Second)
		s.Outbox, s.OutboxAge, s.ClockSkew = &outbox, int64(v.OutboxAge/time.Second), &skew
	}
	return s
}

func unixOrZero(sec int64) time.Time {
	if sec <= 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}
