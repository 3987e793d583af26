package daemon

import (
	"net/http"
	"slices"

	"syncagent/agent/control"
	"syncagent/agent/routing"
	"syncagent/queue"
)

// checkOwner refuses, at write time, what the primary would refuse, by the
// same routing rules (agent/routing, docs/routing.md): an app on a
// satellite may write a record of one of this site's stores — its own
// store_ID, or for a child row (a trans_line) its parent's — and may change
// or delete only what belongs to them. Central data is the primary's. A
// child whose parent is not here yet is let through: the primary holds it
// until the parent arrives.
func (l *localRecords) checkOwner(rec queue.Record, stores []string) error {
	if rec.Action != queue.Delete {
		held, found, err := l.local.Get(rec.Table, rec.ID)
		if err != nil {
			return err
		}
		if found {
			if err := l.owned(held, stores, "change"); err != nil {
				return err
			}
		}
	}
	return l.owned(rec, stores, "write")
}

func (l *localRecords) owned(r queue.Record, stores []string, verb string) error {
	rule := routing.For(r.Table)
	c := rule.Claim(r.Data)
	switch {
	case c.Central:
		return control.Errorf(http.StatusBadRequest, "cannot %s %s/%s: it is central data, written on the primary only (a record of this site names one of its stores %v in %s)",
			verb, r.Table, r.ID, stores, routing.FieldStore)
	case rule.Child():
		if c.ParentID == "" {
			return control.Errorf(http.StatusBadRequest, "cannot %s %s/%s: it has no %s (it belongs to a %s record)", verb, r.Table, r.ID, rule.ParentField, rule.ParentTable)
		}
		parent, found, err := l.local.Get(c.ParentTable, c.ParentID)
		if err != nil || !found {
			return err // not here yet: the primary routes it once the parent arrives
		}
		if err := l.owned(parent, stores, verb+" a line of"); err != nil {
			return control.Errorf(http.StatusBadRequest, "cannot %s %s/%s: its %s/%s belongs to another site's store", verb, r.Table, r.ID, c.ParentTable, c.ParentID)
		}
		return nil
	case c.Store == "":
		return control.Errorf(http.StatusBadRequest, "cannot %s %s/%s: it has no %s (active stores here: %v)", verb, r.Table, r.ID, rule.StoreField, stores)
	case !slices.Contains(stores, c.Store):
		return control.Errorf(http.StatusBadRequest, "cannot %s %s/%s: store %q is not active on this site (active: %v)", verb, r.Table, r.ID, c.Store, stores)
	}
	return nil
}
