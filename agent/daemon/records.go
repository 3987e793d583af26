package daemon

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

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
	changed    func()
	refreshing atomic.Bool // a refresh is on its way (changedSoon)
}

var _ records = (*localRecords)(nil)

// newLocalRecords gives the apps l, the datafile at path; gone is told once
// the datafile is found deleted or replaced under the agent.
func newLocalRecords(l *queue.Local, path string, gone func(error), log *slog.Logger, changed func()) *localRecords {
	r := &localRecords{local: l, guard: newDatafileGuard(path, gone), log: log, changed: changed}
	l.GuardCommits(r.guard.check) // once a commit, not once a write
	return r
}

func (l *localRecords) put(r control.Record) (control.Record, error) {
	out, err := l.write([]control.Record{{Table: r.Table, ID: r.ID, Data: r.Data}})
	if err != nil {
		return control.Record{}, err
	}
	return toControl(out[0].Record), nil
}

func (l *localRecords) del(table, id string) error {
	_, err := l.write([]control.Record{{Table: table, ID: id, Action: string(queue.Delete)}})
	return err
}

func (l *localRecords) putMany(rs []control.Record) (control.BatchResult, error) {
	out, err := l.write(rs)
	var res control.BatchResult
	for _, e := range out {
		res.Count(string(e.Record.Action))
	}
	return res, err
}

// write is every app write on a satellite: the records (Action "delete"
// deletes, anything else writes) in one commit, shared with the other
// writes waiting (queue.Local.Put). Whether a write is an insert, and
// whether the record is this site's to write, is decided inside the commit,
// against what the datafile holds then: nothing is read before.
func (l *localRecords) write(rs []control.Record) ([]queue.OutboxEntry, error) {
	recs := make([]queue.Record, len(rs))
	for i, r := range rs {
		rec := queue.Record{Table: r.Table, ID: r.ID, Action: queue.Update, Data: r.Data}
		if r.Action == string(queue.Delete) {
			rec.Action, rec.Data = queue.Delete, nil
		} else if len(r.Data) == 0 {
			return nil, batchError(len(rs), i, control.Errorf(http.StatusBadRequest, "record %s/%s: --data must be a JSON object", r.Table, r.ID))
		}
		recs[i] = rec
	}
	var stores []string
	if s := l.stores.Load(); s != nil {
		stores = *s
	}
	check := func(r *queue.Record, held queue.Record, found bool, get queue.LocalLookup) error {
		switch {
		case r.Action == queue.Delete && !found:
			return control.Errorf(http.StatusNotFound, "no record %s/%s", r.Table, r.ID)
		case r.Action == queue.Delete:
			// A delete belongs to the store of the record it deletes.
			if stores != nil {
				return checkOwner(held, held, true, stores, get)
			}
			return nil
		case !found:
			r.Action = queue.Insert
		}
		if stores != nil {
			return checkOwner(*r, held, found, stores, get)
		}
		return nil
	}
	written, err := l.local.Put(recs, check)
	if err != nil {
		return nil, batchError(len(rs), recordIndex(err), writeError(err))
	}
	l.changedSoon()
	return written, nil
}

// writeError gives a refused write the status an app can act on.
func writeError(err error) error {
	var ce *control.Error
	var refused *queue.RefusedError
	switch {
	case errors.As(err, &ce):
		return ce
	case errors.As(err, &refused):
		return control.Errorf(http.StatusServiceUnavailable, "write refused, nothing was changed: %v", refused.Err)
	case errors.Is(err, queue.ErrInvalidRecord):
		return control.Errorf(http.StatusBadRequest, "%v", err)
	case errors.Is(err, queue.ErrOutboxFull):
		return control.Errorf(http.StatusInsufficientStorage, "%v", err)
	case errors.Is(err, queue.ErrClosed):
		return control.Errorf(http.StatusServiceUnavailable, "write refused, nothing was changed: the agent is stopping; retry in a moment")
	}
	return control.Errorf(http.StatusInsufficientStorage, "write refused, nothing was changed: %v", err)
}

// recordIndex is the record a queue error is about (-1: the whole write).
func recordIndex(err error) int {
	var re *queue.RecordError
	if errors.As(err, &re) {
		return re.Index
	}
	return -1
}

// batchError names the record of a batch (of n) an error is about.
func batchError(n, i int, err error) error {
	if n == 1 || i < 0 {
		return err
	}
	status := http.StatusBadRequest
	var ce *control.Error
	if errors.As(err, &ce) {
		status = ce.Status
	}
	return &control.BatchError{Index: i, Status: status, Msg: err.Error()}
}

// statusCoalesce is how long a burst of writes waits for one STATUS=
// refresh (it rebuilds the whole status: not once per write).
const statusCoalesce = 250 * time.Millisecond

// changedSoon refreshes STATUS= once for the writes of the next moment.
func (l *localRecords) changedSoon() {
	if l.changed == nil || !l.refreshing.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(statusCoalesce, func() {
		l.refreshing.Store(false)
		l.changed()
	})
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

// putMany writes a batch on the primary record by record (the batch route
// is for a satellite's apps; the primary routes its writes one by one): a
// refused record stops the batch, and the records before it stay written.
func (c *centralRecords) putMany(rs []control.Record) (control.BatchResult, error) {
	var res control.BatchResult
	for i, r := range rs {
		action := queue.Delete
		if r.Action == string(queue.Delete) {
			if err := c.del(r.Table, r.ID); err != nil {
				return res, batchError(len(rs), i, err)
			}
		} else {
			out, err := c.put(r)
			if err != nil {
				return res, batchError(len(rs), i, err)
			}
			action = queue.Action(out.Action)
		}
		res.Count(string(action))
	}
	return res, nil
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
