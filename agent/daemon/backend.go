package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/prefs"
	"syncagent/agent/version"
	"syncagent/queue"
)

// The Agent serves the local API.
var _ control.Backend = (*Agent)(nil)

// Status reports the agent's state for `syncagent status`.
func (a *Agent) Status() control.Status {
	p := a.prefs.Load()
	st := control.Status{
		Role: a.role.String(), SyncID: p.Site.SyncID, HardwareID: a.hwid, Version: version.Version, StartedAt: a.started,
		DisabledReason: a.notSyncingReason(), Interval: p.Interval().String(), RequestSize: requestSize(p), Prefs: *a.prefsSt.Load(),
	}
	st.SyncEnabled = st.DisabledReason == ""
	if a.loop != nil {
		st.NextSync, st.LastSync, st.LastSuccess = a.loop.snapshot()
	}
	switch {
	case a.sat != nil:
		s := a.sat.Status()
		st.OutboxLength, st.SetAside, st.PushSizer, st.PullSizer = s.OutboxLen, s.AsideLen, s.PushSizer, s.PullSizer
	case a.prim != nil:
		sites, _ := a.Sites()
		st.Queues = sites
	}
	if a.local != nil {
		st.Records = a.local.Count()
		if a.sat == nil {
			st.OutboxLength = a.local.OutboxLen()
		}
	}
	return st
}

func requestSize(p *prefs.Prefs) string {
	if p.Site.RequestSize.Fixed > 0 {
		return fmt.Sprint(p.Site.RequestSize.Fixed)
	}
	return "auto"
}

// notSyncingReason says why this agent does not run sync cycles, or "".
func (a *Agent) notSyncingReason() string {
	p := a.prefs.Load()
	if r := p.SyncDisabledReason(); r != "" {
		return r
	}
	if a.role == prefs.RolePrimary {
		return "" // the primary serves; it has no cycles of its own
	}
	if a.sat == nil {
		return "restart needed: the role changed since start"
	}
	return ""
}

// Sync runs a cycle now.
func (a *Agent) Sync(ctx context.Context, retrieveOnly bool) (control.Cycle, error) {
	if a.sat == nil {
		if a.role == prefs.RolePrimary {
			return control.Cycle{}, control.Errorf(http.StatusConflict, "this box is the primary: satellites sync with it, it has no cycle of its own")
		}
		return control.Cycle{}, control.Errorf(http.StatusConflict, "sync is disabled: %s", a.notSyncingReason())
	}
	// A pause (interval_minutes = 0) stops the timer, not a technician.
	if p := a.prefs.Load(); p.Site.SyncID <= 0 {
		return control.Cycle{}, control.Errorf(http.StatusConflict, "sync is disabled: %s", p.SyncDisabledReason())
	}
	return a.loop.request(ctx, retrieveOnly)
}

// Check tests the connection to the primary ("check connection").
func (a *Agent) Check(ctx context.Context) (control.Check, error) {
	if a.sat == nil {
		if a.role == prefs.RolePrimary {
			return control.Check{}, control.Errorf(http.StatusConflict, "this box is the primary: run check on a satellite")
		}
		return control.Check{}, control.Errorf(http.StatusConflict, "sync is disabled (%s): check needs sync_id > 0 and a [[sync_with]] row", a.notSyncingReason())
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r := a.sat.Check(ctx)
	if r.OK() {
		a.loop.poke(a.loop.wake) // the link is back: don't sleep out a backoff
	}
	c := control.Check{URL: r.URL, Reachable: r.Reachable, TLS: r.TLS, Authenticated: r.Authenticated, HardwareAccepted: r.HardwareAccepted,
		RoundTripMS: r.RoundTrip.Milliseconds(), SiteID: r.Site.SiteID, Error: r.Err, Advice: r.Advice}
	return c, nil
}

// Generate re-queues sync records ("generate sync records").
func (a *Agent) Generate(ctx context.Context, fresh bool) (control.Generated, error) {
	var n int
	var err error
	switch {
	case a.prim != nil:
		n, err = a.prim.Generate(ctx)
	case a.sat != nil:
		n, err = a.sat.Generate(ctx, fresh)
	default:
		return control.Generated{}, control.Errorf(http.StatusConflict, "sync is disabled: %s", a.notSyncingReason())
	}
	if err != nil {
		return control.Generated{}, err
	}
	a.log.Info("sync records generated", "fresh", fresh, "queued", n)
	a.updateStatus()
	return control.Generated{Queued: n}, nil
}

// Sites lists the sites this agent syncs with.
func (a *Agent) Sites() ([]control.Site, error) {
	p := a.prefs.Load()
	if a.prim == nil {
		var out []control.Site
		for _, row := range p.SyncWith {
			out = append(out, control.Site{SyncID: row.SyncID, User: row.User, URL: row.URL})
		}
		return out, nil
	}
	views := a.prim.Sites()
	out := make([]control.Site, 0, len(views))
	for _, v := range views {
		out = append(out, control.Site{SyncID: v.SyncID, User: v.User, Stores: v.Stores, HardwareID: v.HardwareID,
			LastContact: v.LastContact, Initialisation: v.Initialisation, QueueLength: v.QueueLength})
	}
	return out, nil
}

// ClearHardwareID clears a site's pin on the primary. The lock check (an
// unlock code for site-row changes) is in checkSiteChange.
func (a *Agent) ClearHardwareID(syncID int, code string) error {
	if a.prim == nil {
		return control.Errorf(http.StatusConflict, "clear-hwid runs on the primary; this box is a %s", a.role)
	}
	if err := a.checkSiteChange(fmt.Sprintf("clear-hwid %d", syncID), code); err != nil {
		return err
	}
	if err := a.prim.ClearPin(syncID); err != nil {
		return control.Errorf(http.StatusNotFound, "%v", err)
	}
	a.log.Warn("hardware ID pin cleared; the next box to call as this site will be pinned", "site", syncID)
	return nil
}

// PutRecord is an app's write: datafile and outbox as one atomic unit.
func (a *Agent) PutRecord(r control.Record) (control.Record, error) {
	return a.write(r.Table, r.ID, r.Data, false)
}

// DeleteRecord is an app's delete.
func (a *Agent) DeleteRecord(table, id string) error {
	_, err := a.write(table, id, nil, true)
	return err
}

func (a *Agent) write(table, id string, data json.RawMessage, del bool) (control.Record, error) {
	rec := queue.Record{Table: table, ID: id, Action: queue.Update, Data: data}
	if del {
		rec.Action, rec.Data = queue.Delete, nil
	} else if _, found, err := a.get(table, id); err == nil && !found {
		rec.Action = queue.Insert
	}
	if err := rec.Validate(); err != nil {
		return control.Record{}, control.Errorf(http.StatusBadRequest, "%v", err)
	}
	if !del && len(data) == 0 {
		return control.Record{}, control.Errorf(http.StatusBadRequest, "record %s/%s: --data must be a JSON object", table, id)
	}
	if a.prim != nil {
		if _, err := a.prim.Write(rec); err != nil {
			return control.Record{}, err
		}
		return toControl(rec), nil
	}
	target := rec
	if del {
		held, found, err := a.local.Get(table, id)
		if err != nil {
			return control.Record{}, err
		} else if !found {
			return control.Record{}, control.Errorf(http.StatusNotFound, "no record %s/%s", table, id)
		}
		target = held // a delete belongs to the store of the record it deletes
	}
	if a.role == prefs.RoleSatellite {
		if err := a.checkStore(target); err != nil {
			return control.Record{}, err
		}
	}
	if _, err := a.local.Write(rec); err != nil {
		if errors.Is(err, queue.ErrOutboxFull) {
			return control.Record{}, control.Errorf(http.StatusInsufficientStorage, "%v", err)
		}
		return control.Record{}, control.Errorf(http.StatusInsufficientStorage, "write refused, nothing was changed: %v", err)
	}
	a.updateStatus()
	return toControl(rec), nil
}

// checkStore refuses, at write time, a record the primary would refuse.
func (a *Agent) checkStore(r queue.Record) error {
	stores := a.prefs.Load().Site.Stores
	switch st := r.StoreID(); {
	case st == "":
		return control.Errorf(http.StatusBadRequest, "record %s/%s has no %s: on a satellite every record belongs to one of its stores %v (central data is written on the primary)", r.Table, r.ID, queue.StoreField, stores)
	case !slices.Contains(stores, st):
		return control.Errorf(http.StatusBadRequest, "store %q is not active on this site (active: %v)", st, stores)
	}
	return nil
}

// GetRecord reads a record.
func (a *Agent) GetRecord(table, id string) (control.Record, error) {
	r, found, err := a.get(table, id)
	if err != nil {
		return control.Record{}, err
	}
	if !found {
		return control.Record{}, control.Errorf(http.StatusNotFound, "no record %s/%s", table, id)
	}
	return toControl(r), nil
}

func (a *Agent) get(table, id string) (queue.Record, bool, error) {
	if a.central != nil {
		return a.central.Get(table, id)
	}
	return a.local.Get(table, id)
}

// ListRecords lists a table.
func (a *Agent) ListRecords(table, after string, limit int) ([]control.Record, error) {
	var recs []queue.Record
	var err error
	if a.central != nil {
		recs, err = a.central.List(table, after, limit)
	} else {
		recs, err = a.local.List(table, after, limit)
	}
	out := make([]control.Record, 0, len(recs))
	for _, r := range recs {
		out = append(out, toControl(r))
	}
	return out, err
}

func toControl(r queue.Record) control.Record {
	return control.Record{Table: r.Table, ID: r.ID, Action: string(r.Action), Data: r.Data}
}

// Aside lists the records set aside: refused by the primary, or failing on
// their own. They are kept until retried.
func (a *Agent) Aside() ([]control.Aside, error) {
	if a.local == nil {
		return nil, control.Errorf(http.StatusConflict, "the primary sets nothing aside; run this on a satellite")
	}
	entries, err := a.local.Aside()
	out := make([]control.Aside, 0, len(entries))
	for _, e := range entries {
		out = append(out, control.Aside{Table: e.Record.Table, ID: e.Record.ID, Reason: e.Reason, At: e.At})
	}
	return out, err
}

// RetryAside puts a set-aside record back into the outbox.
func (a *Agent) RetryAside(table, id string) error {
	if a.local == nil {
		return control.Errorf(http.StatusConflict, "the primary sets nothing aside; run this on a satellite")
	}
	if err := a.local.RetryAside(table, id); err != nil {
		if errors.Is(err, queue.ErrNotFound) {
			return control.Errorf(http.StatusNotFound, "no record %s/%s is set aside", table, id)
		}
		return err
	}
	a.log.Info("set-aside record re-queued", "table", table, "id", id)
	a.updateStatus()
	return nil
}
