package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func openCentral(t testing.TB, path string, opts CentralOptions) *Central {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	c, err := OpenCentral(path, opts)
	if err != nil {
		t.Fatalf("OpenCentral: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testRouter (a copy of storetest.Router, which these internal tests
// cannot import) routes by store_ID: a store's records are held by the sites
// listed for it; a record without a store is central data; a "line" belongs
// to the "head" named in head_ID; a record naming "to" also goes to that
// store's sites (a transfer). A site may change only records of its stores.
type testRouter map[string][]int

func (tr testRouter) Route(origin int, r Record, cur Current, look Lookup) Route {
	if cur.Exists && cur.Central && origin > 0 {
		return Route{Refuse: &Refusal{Code: "central_data_refused", Message: "central"}}
	}
	if origin > 0 && cur.Exists && !cur.Deleted && cur.Owner != "" && !slices.Contains(tr[cur.Owner], origin) {
		return Route{Refuse: &Refusal{Code: "store_not_active", Message: "not yours"}}
	}
	if r.Action == Delete || r.Action == Merge {
		if !cur.Exists {
			return Route{Holders: []int{origin}}
		}
		return Route{Owner: cur.Owner, Central: cur.Central, Holders: cur.Holders, Parent: cur.Parent}
	}
	f := map[string]string{}
	json.Unmarshal(r.Data, &f)
	if r.Table == "line" {
		ref := &Ref{"head", f["head_ID"]}
		p := look(ref.Table, ref.ID)
		if !p.Exists || p.Deleted || p.Held {
			return Route{Parent: ref, Held: true}
		}
		return Route{Owner: p.Owner, Holders: p.Holders, Parent: ref}
	}
	store := f[StoreField]
	switch {
	case store == "" && origin > 0:
		return Route{Refuse: &Refusal{Code: "central_data_refused", Message: "central"}}
	case store == "":
		return Route{Central: true}
	case origin > 0 && !slices.Contains(tr[store], origin):
		return Route{Refuse: &Refusal{Code: "store_not_active", Message: "not yours"}}
	}
	return Route{Owner: store, Holders: tr.holders(store, f["to"])}
}

func (tr testRouter) holders(store, to string) []int {
	return append(slices.Clone(tr[store]), tr[to]...)
}

func (tr testRouter) Holders(cur Current, look Lookup) []int {
	if cur.Parent != nil {
		if p := look(cur.Parent.Table, cur.Parent.ID); p.Exists && !p.Deleted {
			return tr.Holders(p, look)
		}
		return cur.Holders
	}
	f := map[string]string{}
	json.Unmarshal(cur.Record.Data, &f)
	return tr.holders(cur.Owner, f["to"])
}

func (tr testRouter) members() Membership {
	m := Membership{}
	for store, sites := range tr {
		for _, s := range sites {
			m[s] = append(m[s], store)
		}
	}
	return m
}

// s1 is on sites 2, 3 and 4; s2 on 5.
var sites = testRouter{"s1": {2, 3, 4}, "s2": {5}}

func inbound(sid string, r Record) Inbound { return Inbound{SyncOutID: sid, Record: r} }

func accept(t testing.TB, c *Central, origin int, in ...Inbound) AcceptResult {
	t.Helper()
	res, err := c.Accept(origin, in, sites)
	if err != nil {
		t.Fatalf("Accept from %d: %v", origin, err)
	}
	return res
}

// queued returns site's queue as "id=n" (n from the data, "del" for a
// delete), in order.
func queued(t testing.TB, c *Central, site int) string {
	t.Helper()
	q, n, err := c.Queued(site, 0)
	if err != nil || n != len(q) {
		t.Fatalf("Queued(%d) = %d entries, len %d, %v", site, len(q), n, err)
	}
	var out []string
	for _, e := range q {
		if e.Record.Action == Delete {
			out = append(out, e.Record.ID+"=del")
			continue
		}
		out = append(out, fmt.Sprintf("%s=%d", e.Record.ID, dataN(t, e.Record)))
	}
	return strings.Join(out, ",")
}

func ackAll(t testing.TB, c *Central, site int) {
	t.Helper()
	q, _, _ := c.Queued(site, 0)
	var ids []string
	for _, e := range q {
		ids = append(ids, e.SyncOutID)
	}
	if _, err := c.Ack(site, ids); err != nil {
		t.Fatal(err)
	}
}

func TestCentral_QueueMax(t *testing.T) {
	c := openCentral(t, tempPath(t, "pri.db"), CentralOptions{QueueMax: 2})
	accept(t, c, 2, inbound("e-1", storeRec("item", "a", "s1", 1)), inbound("e-2", storeRec("item", "b", "s1", 1)))
	_, err := c.Accept(2, []Inbound{inbound("e-3", storeRec("item", "c", "s1", 1))}, sites)
	if !errors.Is(err, ErrQueueFull) || !strings.Contains(err.Error(), "has 2 records waiting") {
		t.Fatalf("Accept over QueueMax: %v", err)
	}
	if _, ok, _ := c.Get("item", "c"); ok {
		t.Fatal("refused push changed the datafile")
	}
	ackAll(t, c, 3)
	ackAll(t, c, 4)
	accept(t, c, 2, inbound("e-3", storeRec("item", "c", "s1", 1)))
}
