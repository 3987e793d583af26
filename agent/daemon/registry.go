package daemon

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/lock"
	"syncagent/agent/primary"
	"syncagent/queue"
)

// The site registry over the local API (the primary's; docs/registry.md):
// a change is validated whole, then needs an unlock code bound to its
// digest (lock.SitesOperation), or an open maintenance window, and a
// privileged caller (the control server checks that).

var _ control.RegistryBackend = (*Agent)(nil)

// ChangeSites applies (or, dry, validates) a change of the registry asked
// for by who.
func (a *Agent) ChangeSites(who string, c control.SitesChange) (control.SitesChanged, error) {
	r, ok := a.role.(*primaryRole)
	if !ok {
		return control.SitesChanged{}, conflict("the site registry is the primary's; this box is a %s", a.role.kind())
	}
	e := sitesEdit(c)
	answer := func(p primary.SitesPlan) control.SitesChanged {
		d := lock.OperationDigest(lock.SitesOperation(p.Digest))
		return control.SitesChanged{What: p.What, Put: len(p.Edit.Put), Removed: len(p.Edit.Remove), ChangeDigest: d, HardwareID: a.hwid,
			Request: fmt.Sprintf("Please issue a syncagent unlock code: hardware ID %s, change digest %s (site registry: %s).", a.hwid, d, p.What)}
	}
	window := a.lock.WindowUntil()
	if !window.After(time.Now()) {
		window = time.Time{}
	}
	if c.DryRun {
		p, err := r.prim.PlanSites(e)
		if err != nil {
			return control.SitesChanged{}, control.Errorf(http.StatusUnprocessableEntity, "%v", err)
		}
		out := answer(p)
		out.DryRun = true
		if !window.IsZero() {
			out.Request = fmt.Sprintf("A maintenance window is open until %s: no code is needed.", window.UTC().Format(time.RFC3339))
		}
		return out, nil
	}
	var out control.SitesChanged
	note, err := r.prim.ChangeSites(e, func(p primary.SitesPlan) (string, error) {
		out = answer(p)
		if strings.TrimSpace(c.Code) == "" && window.IsZero() {
			return "", control.Errorf(http.StatusForbidden, "changing the site registry needs an unlock code bound to this change. %s Then run the same command with --code CODE", out.Request)
		}
		by, err := a.lock.Operation(a.prefs.running.Load(), lock.SitesOperation(p.Digest), c.Code)
		if err != nil {
			return "", control.Errorf(http.StatusForbidden, "%v (%s)", err, out.Request)
		}
		out.UnlockedBy = by
		return who + ", " + by, nil
	})
	var ce *control.Error
	switch {
	case err == nil:
	case errors.As(err, &ce):
		return control.SitesChanged{}, err
	case errors.Is(err, queue.ErrRegistryChanged):
		return control.SitesChanged{}, control.Errorf(http.StatusConflict, "%v (run the command again)", err)
	case note.Generation > 0:
		return control.SitesChanged{}, control.Errorf(http.StatusInternalServerError, "%v", err)
	default:
		return control.SitesChanged{}, control.Errorf(http.StatusUnprocessableEntity, "%v", err)
	}
	out.Generation = note.Generation
	a.updateStatus()
	return out, nil
}

// sitesEdit is c as the primary takes it.
func sitesEdit(c control.SitesChange) primary.SitesEdit {
	e := primary.SitesEdit{Op: c.Op, Clear: c.Clear, Remove: c.Remove}
	for _, r := range c.Rows {
		e.Rows = append(e.Rows, queue.SiteConfig{SyncID: r.SyncID, User: r.User, PasswordHash: r.PasswordHash, Stores: r.Stores, HardwareID: r.HardwareID, URL: r.URL})
		e.Lines = append(e.Lines, r.Line)
	}
	return e
}

// SitesLog lists the registry's last changes, newest first.
func (a *Agent) SitesLog(limit int) ([]control.SitesLogEntry, error) {
	r, ok := a.role.(*primaryRole)
	if !ok {
		return nil, conflict("the site registry is the primary's; this box is a %s", a.role.kind())
	}
	log, err := r.prim.SitesLog(limit)
	if err != nil {
		return nil, control.Errorf(http.StatusServiceUnavailable, "%v", err)
	}
	out := make([]control.SitesLogEntry, 0, len(log))
	for _, c := range log {
		out = append(out, control.SitesLogEntry{Generation: c.Generation, At: c.At.UTC().Format(time.RFC3339), By: c.By, What: c.What, Digest: c.Digest, Put: c.Put, Removed: c.Removed})
	}
	return out, nil
}

var _ control.SiteLister = (*Agent)(nil)

// SitesMatching lists the primary's sites that match (control.SiteLister);
// other roles list theirs all.
func (a *Agent) SitesMatching(prefix, store string) ([]control.Site, error) {
	r, ok := a.role.(*primaryRole)
	if !ok {
		return a.role.sites()
	}
	views := r.prim.SitesMatching(prefix, store)
	out := make([]control.Site, 0, len(views))
	for _, v := range views {
		out = append(out, siteLine(v))
	}
	return out, nil
}
