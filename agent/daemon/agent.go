package daemon

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/lock"
	"syncagent/agent/prefs"
	"syncagent/agent/version"
)

// The Agent serves the local API: what every role shares (identity, prefs,
// the lock) here, the rest by its role.
var _ control.Backend = (*Agent)(nil)

// Status reports the agent's state for `syncagent status`.
func (a *Agent) Status() control.Status {
	p := a.prefs.running.Load()
	st := control.Status{Running: true, Role: a.role.kind().String(), SyncID: p.Site.SyncID, HardwareID: a.hwid, Version: version.Version,
		StartedAt: a.started, Interval: p.Interval().String(), RequestSize: p.Site.RequestSize.String(), Prefs: *a.prefs.state.Load()}
	st.Prefs.WindowUntil = a.lock.WindowUntil()
	st.DisabledReason = p.SyncDisabledReason()
	if a.role.kind() == prefs.RolePrimary {
		st.DisabledReason = primarySyncOff(p)
	}
	st.SyncEnabled = st.DisabledReason == ""
	a.role.status(&st)
	return st
}

// Sync runs a cycle now; a pause (interval_minutes = 0) stops the timer, not
// a technician.
func (a *Agent) Sync(ctx context.Context, retrieveOnly bool) (control.Cycle, error) {
	return a.role.sync(ctx, retrieveOnly)
}

// Check tests the connection to the primary ("check connection").
func (a *Agent) Check(ctx context.Context) (control.Check, error) {
	return a.role.check(ctx)
}

// Generate re-queues sync records ("generate sync records").
func (a *Agent) Generate(ctx context.Context, fresh bool) (control.Generated, error) {
	n, err := a.role.generate(ctx, fresh)
	if err != nil {
		return control.Generated{}, err
	}
	a.log.Info("sync records generated", "fresh", fresh, "queued", n)
	a.updateStatus()
	return control.Generated{Queued: n}, nil
}

// Sites lists the sites this agent syncs with.
func (a *Agent) Sites() ([]control.Site, error) { return a.role.sites() }

// ClearHardwareID clears a site's pin on the primary, with an unlock code
// bound to the operation (or an open window).
func (a *Agent) ClearHardwareID(syncID int, code string) error {
	op := fmt.Sprintf("clear-hwid %d", syncID)
	return a.role.clearPin(syncID, func() error {
		if _, err := a.lock.Operation(a.prefs.running.Load(), op, code); err != nil {
			return control.Errorf(http.StatusForbidden, "%v", err)
		}
		return nil
	})
}

// PutRecord is an app's write: datafile and outbox as one atomic unit.
func (a *Agent) PutRecord(r control.Record) (control.Record, error) { return a.role.put(r) }

// PutRecords is an app's batch of writes, in one commit.
func (a *Agent) PutRecords(rs []control.Record) (control.BatchResult, error) {
	return a.role.putMany(rs)
}

// DeleteRecord is an app's delete.
func (a *Agent) DeleteRecord(table, id string) error { return a.role.del(table, id) }

// GetRecord reads a record.
func (a *Agent) GetRecord(table, id string) (control.Record, error) { return a.role.get(table, id) }

// ListRecords lists a table.
func (a *Agent) ListRecords(table, after string, limit int) ([]control.Record, error) {
	return a.role.list(table, after, limit)
}

// Aside lists the records set aside.
func (a *Agent) Aside() ([]control.Aside, error) { return a.role.aside() }

// RetryAside puts a set-aside record back into the outbox.
func (a *Agent) RetryAside(table, id string) error { return a.role.retryAside(table, id) }

// History lists the last cycles, newest first.
func (a *Agent) History() ([]control.Cycle, error) { return a.role.history() }

// Reload re-reads the prefs file now.
func (a *Agent) Reload() (control.Reload, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.prefs.Reload(ctx)
}

// Unlock tells the technician what to send the vendor.
func (a *Agent) Unlock() (control.Unlock, error) {
	onDisk, err := prefs.Load(a.opts.PrefsPath)
	if err != nil {
		return control.Unlock{HardwareID: a.hwid}, control.Errorf(http.StatusUnprocessableEntity,
			"the prefs file on disk is invalid, so there is no change to unlock yet: %s", lock.FirstLine(err))
	}
	return unlockInfo(a.lock.Info(a.prefs.running.Load(), onDisk)), nil
}

func unlockInfo(in lock.Info) control.Unlock {
	return control.Unlock{HardwareID: in.HardwareID, ChangeDigest: in.ChangeDigest, Pending: in.Pending, Provisioned: in.Provisioned,
		TrustedAhead: in.TrustedAhead, ClockResetDigest: in.ClockResetDigest, Request: in.Request}
}

// CheckCode says whether code would unlock the change on disk, without
// spending it.
func (a *Agent) CheckCode(code string) error {
	onDisk, err := prefs.Load(a.opts.PrefsPath)
	if err != nil {
		return control.Errorf(http.StatusUnprocessableEntity, "the prefs file on disk is invalid: %s", lock.FirstLine(err))
	}
	if err := a.lock.Preview(a.prefs.running.Load(), onDisk, code); err != nil {
		return control.Errorf(http.StatusForbidden, "%v", err)
	}
	return nil
}

// ResetClock resets an unlock ledger whose trusted time is ahead of the
// clock.
func (a *Agent) ResetClock(code string) (control.Unlocked, error) {
	by, err := a.lock.ResetClock(a.prefs.running.Load(), code)
	if err != nil {
		return control.Unlocked{}, control.Errorf(http.StatusForbidden, "%v", err)
	}
	a.updateStatus()
	return control.Unlocked{UnlockedBy: by}, nil
}
