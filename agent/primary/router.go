package primary

import (
	"fmt"
	"slices"

	"syncagent/agent/routing"
	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// router applies the routing rules (agent/routing) with the primary's site
// rows: it decides, for each change, whether the pushing site may make it,
// which store owns the record and which sites hold it. It is immutable; a
// new one is built when the rows or the store rows change.
type router struct {
	sites *siteTable
	names map[string]string // name_ID → store ID, from the central store rows
}

var _ queue.Router = (*router)(nil)

// Route decides a change from site origin (0: the primary's own write).
func (rt *router) Route(origin int, r queue.Record, cur queue.Current, look queue.Lookup) queue.Route {
	rule := routing.For(r.Table)
	if cur.Exists && cur.Central {
		if origin > 0 {
			return refuse(syncapi.CodeCentralFromSite, "%s/%s is central data: it is written on the primary only", r.Table, r.ID)
		}
		if r.Action == queue.Delete || r.Action == queue.Merge {
			return queue.Route{Central: true}
		}
	}
	if r.Action == queue.Delete || r.Action == queue.Merge {
		return rt.routeDelete(origin, r, cur)
	}
	if origin > 0 && cur.Exists && !cur.Deleted {
		if e := rt.mayChange(origin, r, cur); e != nil {
			return *e
		}
	}
	claim := rule.Claim(r.Data)
	switch {
	case claim.Central:
		if origin > 0 {
			return refuse(syncapi.CodeCentralFromSite, "%s/%s is central data (no %s): it is written on the primary only", r.Table, r.ID, routing.FieldStore)
		}
		return queue.Route{Central: true}
	case rule.Child():
		return rt.routeChild(origin, r, rule, claim, look)
	case claim.Store == "":
		return refuse(syncapi.CodeInvalidRecord, "%s/%s has no %s: a %s record belongs to a store", r.Table, r.ID, rule.StoreField, r.Table)
	case origin > 0 && !rt.sites.active(origin, claim.Store):
		return refuse(syncapi.CodeStoreNotActive, "%s/%s names store %q, which is not active on site %d", r.Table, r.ID, claim.Store, origin)
	}
	return queue.Route{Owner: claim.Store, Holders: rt.holdersOf(claim)}
}

// mayChange refuses a site's change to a record it does not own: the owner
// is the store of the primary's current copy.
func (rt *router) mayChange(origin int, r queue.Record, cur queue.Current) *queue.Route {
	switch {
	case cur.Held:
		if !slices.Contains(cur.Holders, origin) {
			e := refuse(syncapi.CodeStoreNotActive, "%s/%s belongs to a record site %d does not hold", r.Table, r.ID, origin)
			return &e
		}
	case cur.Owner != "" && !rt.sites.active(origin, cur.Owner):
		e := refuse(syncapi.CodeStoreNotActive, "%s/%s belongs to store %q, which is not active on site %d", r.Table, r.ID, cur.Owner, origin)
		return &e
	}
	return nil
}

func (rt *router) routeDelete(origin int, r queue.Record, cur queue.Current) queue.Route {
	if !cur.Exists || cur.Deleted {
		// Never known here, or gone already: nobody to tell.
		return queue.Route{Owner: cur.Owner, Holders: []int{origin}}
	}
	if origin > 0 {
		if e := rt.mayChange(origin, r, cur); e != nil {
			return *e
		}
	}
	return queue.Route{Owner: cur.Owner, Holders: cur.Holders, Parent: cur.Parent}
}

func (rt *router) routeChild(origin int, r queue.Record, rule routing.Rule, claim routing.Claim, look queue.Lookup) queue.Route {
	if claim.ParentID == "" {
		return refuse(syncapi.CodeInvalidRecord, "%s/%s has no %s: it belongs to a %s record", r.Table, r.ID, rule.ParentField, rule.ParentTable)
	}
	ref := &queue.Ref{Table: claim.ParentTable, ID: claim.ParentID}
	parent := look(ref.Table, ref.ID)
	if !parent.Exists || parent.Deleted || parent.Held {
		// Children come before their parents (the reference client sends them
		// so): keep it, and route it once the parent is known.
		return queue.Route{Parent: ref, Held: true}
	}
	if origin > 0 && !rt.sites.active(origin, parent.Owner) {
		return refuse(syncapi.CodeStoreNotActive, "%s/%s belongs to %s/%s of store %q, which is not active on site %d",
			r.Table, r.ID, ref.Table, ref.ID, parent.Owner, origin)
	}
	return queue.Route{Owner: parent.Owner, Holders: parent.Holders, Parent: ref}
}

// Holders computes anew which sites must hold a stored record.
func (rt *router) Holders(cur queue.Current, look queue.Lookup) []int {
	rule := routing.For(cur.Record.Table)
	if cur.Parent != nil {
		parent := look(cur.Parent.Table, cur.Parent.ID)
		if !parent.Exists || parent.Deleted || parent.Held {
			return cur.Holders
		}
		return rt.Holders(parent, look)
	}
	claim := rule.Claim(cur.Record.Data)
	claim.Store = cur.Owner
	return rt.holdersOf(claim)
}

// holdersOf are the sites where the owning store is active, and those of
// the store a transfer names.
func (rt *router) holdersOf(claim routing.Claim) []int {
	out := slices.Clone(rt.sites.byStore[claim.Store])
	if claim.TransferName != "" {
		if to := rt.storeOfName(claim.TransferName); to != "" && to != claim.Store {
			out = append(out, rt.sites.byStore[to]...)
		}
	}
	return out
}

// storeOfName finds the store whose name record is nameID: from the central
// store rows, or a store of that ID (the rows the primary publishes itself
// use the store's ID as its name ID).
func (rt *router) storeOfName(nameID string) string {
	if s, ok := rt.names[nameID]; ok {
		return s
	}
	if _, ok := rt.sites.byStore[nameID]; ok {
		return nameID
	}
	return ""
}

func refuse(code, format string, args ...any) queue.Route {
	return queue.Route{Refuse: &queue.Refusal{Code: code, Message: fmt.Sprintf(format, args...)}}
}
