package model

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// oracle keeps what the checks compare with, built only from what crossed
// the wire and what the apps did: the changes the primary accepted, in its
// order, and the changes each site made.
type oracle struct {
	log      map[string][]change  // table/id → accepted changes, in the primary's order
	lastFrom map[string]string    // site/table/id → syncOutId and content of its last accepted change
	refused  map[int]map[int]bool // site → values refused by the primary
	written  map[string]change    // site/id → the site's last local change
	lossFrom map[int]int          // site → its changes numbered above this may be lost (a restore)
}

type change struct {
	V   int
	Del bool
	By  int
}

func newOracle() *oracle {
	return &oracle{log: map[string][]change{}, lastFrom: map[string]string{}, refused: map[int]map[int]bool{},
		written: map[string]change{}, lossFrom: map[int]int{}}
}

func (o *oracle) wrote(site int, id string, v int, del bool) {
	o.written[fmt.Sprintf("%d/%s", site, id)] = change{V: v, Del: del, By: site}
}

func (o *oracle) accepted(table, id string, v int, del bool) {
	o.log[table+"/"+id] = append(o.log[table+"/"+id], change{V: v, Del: del})
}

func (o *oracle) restored(site, lostFrom int) {
	if cur, ok := o.lossFrom[site]; !ok || lostFrom < cur {
		o.lossFrom[site] = lostFrom
	}
}

// pushed reads one push the primary answered. A change is accepted unless
// refused or the same change again: the same syncOutId with the same
// content as the site's last accepted change of that record
// (docs/replication.md, "Duplicates").
func (o *oracle) pushed(site int, reqBody, respBody []byte) {
	var req syncapi.Push
	var resp syncapi.PushResponse
	if json.Unmarshal(reqBody, &req) != nil || json.Unmarshal(respBody, &resp) != nil {
		return
	}
	refused := map[string]bool{}
	for _, r := range resp.Refused {
		refused[r.SyncOutID] = true
	}
	for _, q := range req.Data {
		v, del := valueOf(q)
		if refused[q.SyncOutID] {
			if o.refused[site] == nil {
				o.refused[site] = map[int]bool{}
			}
			o.refused[site][v] = true
			continue
		}
		key := fmt.Sprintf("%d/%s/%s", site, q.TableName, q.RecordID)
		content := fmt.Sprintf("%s %s %d", q.SyncOutID, strings.ToLower(q.Action), v)
		if o.lastFrom[key] == content {
			continue
		}
		o.lastFrom[key] = content
		o.accepted(q.TableName, q.RecordID, v, del)
	}
}

func valueOf(q syncapi.QueuedRecord) (int, bool) {
	if strings.EqualFold(q.Action, string(queue.Delete)) {
		return 0, true
	}
	var d struct{ V int }
	json.Unmarshal(q.RecordData, &d)
	return d.V, false
}

// check compares the world after quiescence with the oracle and returns
// every broken promise.
func (w *World) check() []string {
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }

	// Nothing left to move.
	for id, s := range w.sats {
		if n := s.local.OutboxLen(); n != 0 {
			fail("site %d: %d changes still in the outbox", id, n)
		}
		if n := w.central.QueueLen(id); n != 0 {
			fail("site %d: %d records still queued on the primary", id, n)
		}
	}

	// The primary's value is the last change it accepted.
	for key, log := range w.oracle.log {
		table, id, _ := strings.Cut(key, "/")
		last := log[len(log)-1]
		r, live, err := w.central.Get(table, id)
		switch {
		case err != nil:
			fail("primary: %s: %v", key, err)
		case last.Del && live:
			fail("primary: %s holds %s; the last change it accepted deleted it", key, r.Data)
		case !last.Del && !live:
			fail("primary: %s is missing; the last change it accepted set #%d", key, last.V)
		case !last.Del && vOf(r) != last.V:
			fail("primary: %s holds #%d; the last change it accepted set #%d", key, vOf(r), last.V)
		}
	}

	// Every site holds exactly the primary's copy of what it must hold.
	for id, s := range w.sats {
		for _, table := range []string{"stock", "item", "store"} {
			got := map[string]queue.Record{}
			for after := ""; ; {
				recs, err := s.local.List(table, after, 1000)
				if err != nil {
					fail("site %d: list %s: %v", id, table, err)
					break
				}
				for _, r := range recs {
					got[r.ID] = r
				}
				if len(recs) < 1000 {
					break
				}
				after = recs[len(recs)-1].ID
			}
			want := map[string]queue.Record{}
			for after := ""; ; {
				recs, err := w.central.List(table, after, 1000)
				if err != nil {
					fail("primary: list %s: %v", table, err)
					break
				}
				for _, r := range recs {
					cur, _ := w.central.Current(table, r.ID)
					if cur.Central || slices.Contains(cur.Holders, id) {
						want[r.ID] = r
					}
				}
				if len(recs) < 1000 {
					break
				}
				after = recs[len(recs)-1].ID
			}
			for rid, r := range want {
				g, ok := got[rid]
				switch {
				case !ok:
					fail("site %d: lacks %s/%s (primary: %s)", id, table, rid, r.Data)
				case string(g.Data) != string(r.Data):
					fail("site %d: %s/%s = %s, primary has %s", id, table, rid, g.Data, r.Data)
				}
			}
			for rid, g := range got {
				if _, ok := want[rid]; !ok {
					fail("site %d: holds %s/%s = %s, which it must not hold", id, table, rid, g.Data)
				}
			}
		}
	}

	// No change a site made was dropped: its last change of each record
	// reached the primary, was refused (and set aside), or was lost with a
	// restore that took its box back before it.
	acceptedV := map[int]bool{}
	for _, log := range w.oracle.log {
		for _, c := range log {
			acceptedV[c.V] = true
		}
	}
	for key, c := range w.oracle.written {
		var site int
		fmt.Sscan(strings.SplitN(key, "/", 2)[0], &site)
		if from, ok := w.oracle.lossFrom[site]; ok && c.V > from {
			continue
		}
		if c.Del {
			continue // a delete carries no value to find; the primary check covers it
		}
		if !acceptedV[c.V] && !w.oracle.refused[site][c.V] {
			fail("site %d: its change #%d of %s never reached the primary and was not refused", site, c.V, key)
		}
	}
	slices.Sort(bad)
	return bad
}

func vOf(r queue.Record) int {
	var d struct{ V int }
	json.Unmarshal(r.Data, &d)
	return d.V
}
