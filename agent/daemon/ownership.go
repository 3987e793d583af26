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
// or delete only what belongs to them (held, the record there now, when
// found). Central data is the primary's. A child whose parent is not here
// yet is let through: the primary holds it until the parent arrives. get
// reads other records (a parent) as the write's commit sees them.
func checkOwner(rec, held queue.Record, found bool, stores []string, get queue.LocalLookup) error {
	if found && rec.Action != queue.Delete {
		if err := owned(held, stores, "change", get); err != nil {
			return err
		}
	}
	return owned(rec, stores, "write", get)
}

func owned(r queue.Record, stores []string, verb string, get queue.LocalLookup) error {
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
		parent, found, err := get(c.ParentTable, c.ParentID)
		if err != nil || !found {
			return err // not here yet: the primary routes it once the parent arrives
		}
		if err := owned(parent, stores, verb+" a line of", get); err != nil {
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
