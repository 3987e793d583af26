package daemon

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"

	"syncagent/agent/control"
	"syncagent/agent/primary"
	"syncagent/queue"
)

// localRecords is the apps' access to a satellite's (or a disabled box's)
// datafile: every write changes the datafile and the outbox as one unit.
type localRecords struct {
	local *queue.Local
	guard *datafileGuard
	log   *slog.Logger
	// stores, when set, are the stores a write must belong to (on a
	// satellite; the primary would refuse anything else). Set at once on a
	// prefs commit.
	stores atomic.Pointer[[]string]
	// changed is told of every change of the outbox (to refresh STATUS=).
	changed func()
}

var _ records = (*localRecords)(nil)

func (l *localRecords) put(r control.Record) (control.Record, error) {
	return l.write(r.Table, r.ID, r.Data, false)
}

func (l *localRecords) del(table, id string) error {
	_, err := l.write(table, id, nil, true)
	return err
}

func (l *localRecords) write(table, id string, data json.RawMessage, del bool) (control.Record, error) {
	rec, err := newRecord(table, id, data, del, func() (bool, error) { _, found, err := l.local.Get(table, id); return found, err })
	if err != nil {
		return control.Record{}, err
	}
	if err := l.guard.check(); err != nil {
		return control.Record{}, control.Errorf(http.StatusServiceUnavailable, "write refused, nothing was changed: %v", err)
	}
	target := rec
	if del {
		held, found, err := l.local.Get(table, id)
		if err != nil {
			return control.Record{}, err
		} else if !found {
			return control.Record{}, control.Errorf(http.StatusNotFound, "no record %s/%s", table, id)
		}
		target = held // a delete belongs to the store of the record it deletes
	}
	if stores := l.stores.Load(); stores != nil {
		if err := l.checkOwner(target, *stores); err != nil {
			return control.Record{}, err
		}
	}
	if _, err := l.local.Write(rec); err != nil {
		if errors.Is(err, queue.ErrOutboxFull) {
			return control.Record{}, control.Errorf(http.StatusInsufficientStorage, "%v", err)
		}
		return control.Record{}, control.Errorf(http.StatusInsufficientStorage, "write refused, nothing was changed: %v", err)
	}
	if l.changed != nil {
		l.changed()
	}
	return toControl(rec), nil
}

// newRecord validates an app's write; exists says whether the record is
// there already (an update) or not (an insert).
func newRecord(table, id string, data json.RawMessage, del bool, exists func() (bool, error)) (queue.Record, error) {
	rec := queue.Record{Table: table, ID: id, Action: queue.Update, Data: data}
	if del {
		rec.Action, rec.Data = queue.Delete, nil
	} else if found, err := exists(); err == nil && !found {
		rec.Action = queue.Insert
	}
	if err := rec.Validate(); err != nil {
		return rec, control.Errorf(http.StatusBadRequest, "%v", err)
	}
	if !del && len(data) == 0 {
		return rec, control.Errorf(http.StatusBadRequest, "record %s/%s: --data must be a JSON object", table, id)
	}
	return rec, nil
}

func (l *localRecords) get(table, id string) (control.Record, error) {
	r, found, err := l.local.Get(table, id)
	return recordOrNotFound(r, found, err, table, id)
}

func recordOrNotFound(r queue.Record, found bool, err error, table, id string) (control.Record, error) {
	if err != nil {
		return control.Record{}, err
	}
	if !found {
		return control.Record{}, control.Errorf(http.StatusNotFound, "no record %s/%s", table, id)
	}
	return toControl(r), nil
}

func (l *localRecords) list(table, after string, limit int) ([]control.Record, error) {
	recs, err := l.local.List(table, after, limit)
	return toControls(recs), err
}

// aside lists the records set aside: refused by the primary, or failing on
// their own. They are kept until retried.
func (l *localRecords) aside() ([]control.Aside, error) {
	entries, err := l.local.Aside()
	out := make([]control.Aside, 0, len(entries))
	for _, e := range entries {
		out = append(out, control.Aside{Table: e.Record.Table, ID: e.Record.ID, Reason: e.Reason, At: e.At})
	}
	return out, err
}

// retryAside puts a set-aside record back into the outbox.
func (l *localRecords) retryAside(table, id string) error {
	if err := l.guard.check(); err != nil {
		return control.Errorf(http.StatusServiceUnavailable, "nothing was changed: %v", err)
	}
	if err := l.local.RetryAside(table, id); err != nil {
		if errors.Is(err, queue.ErrNotFound) {
			return control.Errorf(http.StatusNotFound, "no record %s/%s is set aside", table, id)
		}
		return err
	}
	l.log.Info("set-aside record re-queued", "table", table, "id", id)
	if l.changed != nil {
		l.changed()
	}
	return nil
}

func (l *localRecords) checkDatafile() error { return l.guard.check() }

// centralRecords is the apps' access on the primary: a store record goes to
// every site where its store is active, a central one to every site.
type centralRecords struct {
	central queue.PrimaryStore
	prim    *primary.Server
	guard   *datafileGuard
}

var _ records = (*centralRecords)(nil)

func (c *centralRecords) put(r control.Record) (control.Record, error) {
	return c.write(r.Table, r.ID, r.Data, false)
}

func (c *centralRecords) del(table, id string) error {
	_, err := c.write(table, id, nil, true)
	return err
}

func (c *centralRecords) write(table, id string, data json.RawMessage, del bool) (control.Record, error) {
	rec, err := newRecord(table, id, data, del, func() (bool, error) { _, found, err := c.central.Get(table, id); return found, err })
	if err != nil {
		return control.Record{}, err
	}
	if err := c.guard.check(); err != nil {
		return control.Record{}, control.Errorf(http.StatusServiceUnavailable, "write refused, nothing was changed: %v", err)
	}
	if _, err := c.prim.Write(rec); err != nil {
		return control.Record{}, err
	}
	return toControl(rec), nil
}

func (c *centralRecords) get(table, id string) (control.Record, error) {
	r, found, err := c.central.Get(table, id)
	return recordOrNotFound(r, found, err, table, id)
}

func (c *centralRecords) list(table, after string, limit int) ([]control.Record, error) {
	recs, err := c.central.List(table, after, limit)
	return toControls(recs), err
}

func (c *centralRecords) aside() ([]control.Aside, error) {
	return nil, conflict("the primary sets nothing aside; run this on a satellite")
}

func (c *centralRecords) retryAside(string, string) error {
	return conflict("the primary sets nothing aside; run this on a satellite")
}

func (c *centralRecords) checkDatafile() error { return c.guard.check() }

func toControl(r queue.Record) control.Record {
	return control.Record{Table: r.Table, ID: r.ID, Action: string(r.Action), Data: r.Data}
}

func toControls(recs []queue.Record) []control.Record {
	out := make([]control.Record, 0, len(recs))
	for _, r := range recs {
		out = append(out, toControl(r))
	}
	return out
}
