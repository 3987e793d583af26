package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/prefs"
	"syncagent/queue"
)

// disabledRole is a box with sync_id = 0: apps write and read its datafile,
// nothing syncs. A box ships this way; setting sync_id needs a restart.
type disabledRole struct {
	noCycles
	noPins
	*localRecords
	local *queue.Local
	path  string
	cfg   atomic.Pointer[prefs.Prefs]
	beat  atomic.Int64
}

func newDisabledRole(p *prefs.Prefs, log *slog.Logger, gone func(error), changed func()) (*disabledRole, error) {
	path := datafilePath(p)
	l, err := queue.OpenLocal(path, queue.LocalOptions{OutboxMax: p.Limits.OutboxMaxRecords, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("cannot open the datafile: %w", err)
	}
	if why := l.Recovered(); why != "" {
		log.Error("the datafile was damaged and has been set aside", "detail", why)
	}
	why := "sync is disabled (" + p.SyncDisabledReason() + "): set sync_id > 0 and a [[sync_with]] row for the primary, then restart"
	d := &disabledRole{noCycles: noCycles{why}, noPins: noPins{prefs.RoleDisabled}, local: l, path: path}
	d.localRecords = newLocalRecords(l, path, gone, log, changed)
	d.cfg.Store(p)
	d.alive()
	return d, nil
}

func (d *disabledRole) kind() prefs.Role          { return prefs.RoleDisabled }
func (d *disabledRole) bind() error               { return nil }
func (d *disabledRole) provisioned() error        { return nil }
func (d *disabledRole) evidence() string          { return datafileEvidence(d.local, d.path) }
func (d *disabledRole) datafile() string          { return d.path }
func (d *disabledRole) Close() error              { return d.local.Close() }
func (d *disabledRole) alive()                    { d.beat.Store(time.Now().UnixNano()) }
func (d *disabledRole) sinceAlive() time.Duration { return time.Since(time.Unix(0, d.beat.Load())) }

// Run has nothing to do but show it is alive.
func (d *disabledRole) Run(ctx context.Context) error {
	tick := time.NewTicker(loopBeat)
	defer tick.Stop()
	for {
		d.alive()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (d *disabledRole) status(st *control.Status) {
	st.OutboxLength, st.Records = d.local.OutboxLen(), d.local.Count()
}

func (d *disabledRole) generate(context.Context, bool) (int, error) {
	return 0, conflict("%s", d.noCycles.why)
}

// sites lists the rows of the prefs: nothing syncs with them.
func (d *disabledRole) sites() ([]control.Site, error) {
	out := []control.Site{}
	for _, row := range d.cfg.Load().SyncWith {
		out = append(out, control.Site{SyncID: row.SyncID, User: row.User, URL: row.URL, Stores: row.Stores})
	}
	return out, nil
}

// Everything but the box's identity, paths and listener applies at once:
// nothing runs by it but the outbox limit and status.
var disabledLive = liveSettings("site.interval_minutes", "site.request_size", "site.stores", "limits.outbox_max_records",
	"sync_with", "sync_with.user", "sync_with.password_sha256", "sync_with.password_hash", "sync_with.url", "sync_with.stores", "sync_with.hardware_id")

func (d *disabledRole) live(setting string) bool  { return disabledLive[setting] }
func (d *disabledRole) verify(*prefs.Prefs) error { return nil }

func (d *disabledRole) commit(next *prefs.Prefs) string {
	d.local.SetOutboxMax(next.Limits.OutboxMaxRecords)
	d.cfg.Store(next)
	return ""
}
