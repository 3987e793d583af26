package primary

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"syncagent/agent/routing"
	"syncagent/jsonscan"
	"syncagent/queue"
)

// A remote site learns which stores are active on it from the central
// store rows: sync_id_remote_site names the site (PROTOCOL.md; open-mSupply
// reads them in server/service/src/sync/translations/store.rs). The primary
// keeps one row per store of its site rows in step with them. A row the
// central team wrote (imported from the legacy datafile, with its name_ID
// and other fields) keeps its fields; only sync_id_remote_site follows the
// rows. A store the primary makes a row for itself gets its own ID as
// name_ID, and transfers to that name reach it.

// publishStores writes the store rows t implies and returns the router for
// t and the rows as they are now. With the router of the table t replaces
// (prev, nil at start), only the stores whose site changed are read and
// written, when they are few: a site added to a registry of 40,000 costs a
// read or two, not 40,000.
func (s *Server) publishStores(t *siteTable, prev *router) (*router, error) {
	var rows map[string]storeRow
	var names map[string]string
	var ours, gone []string // stores of t, and stores no longer on any of its sites
	if changed, ok := changedStores(prev, t); ok {
		rows, names = map[string]storeRow{}, maps.Clone(prev.names)
		for _, id := range changed {
			rec, found, err := s.store.Get(routing.TableStore, id)
			if err != nil {
				return nil, fmt.Errorf("cannot read the store row of %q: %w", id, err)
			}
			if found {
				rows[id] = readStoreRow(rec.Data)
				if n := rows[id].name; n != "" {
					names[n] = id
				}
			}
			if _, in := t.byStore[id]; in {
				ours = append(ours, id)
			} else {
				gone = append(gone, id)
			}
		}
	} else {
		var err error
		if rows, err = s.storeRows(); err != nil {
			return nil, err
		}
		names = namesOf(rows)
		ours = slices.Sorted(maps.Keys(t.byStore))
		for id := range rows {
			if _, in := t.byStore[id]; !in {
				gone = append(gone, id)
			}
		}
	}
	rt := &router{sites: t, names: names}
	// Written in batches: a registry import brings thousands of stores.
	var batch []queue.Record
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := s.store.WriteBatch(batch, rt); err != nil {
			return fmt.Errorf("cannot publish the store rows: %w", err)
		}
		batch = nil
		return nil
	}
	write := func(id string, f routing.Fields, remote int) error {
		f[routing.FieldRemoteSite] = jsonOf(remote)
		b, err := json.Marshal(f)
		if err != nil {
			return err
		}
		if _, known := rows[id]; !known {
			names[f.String(routing.FieldName)] = id
		}
		batch = append(batch, queue.Record{Table: routing.TableStore, ID: id, Action: queue.Update, Data: b})
		if len(batch) == storeRowBatch {
			return flush()
		}
		return nil
	}
	for _, id := range ours {
		want := t.remoteSite(id)
		row, ok := rows[id]
		var f routing.Fields
		switch {
		case !ok:
			f = defaultStoreRow(id)
		case row.remote == want:
			continue
		default:
			if f = routing.Decode(row.data); f == nil {
				f = routing.Fields{}
			}
		}
		if err := write(id, f, want); err != nil {
			return nil, err
		}
	}
	// A store no longer on any of our sites is no longer active there.
	for _, id := range gone {
		row, ok := rows[id]
		if !ok || row.remote <= centralSiteID {
			continue
		}
		f := routing.Decode(row.data)
		if f == nil {
			f = routing.Fields{}
		}
		if err := write(id, f, centralSiteID); err != nil {
			return nil, err
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return rt, nil
}

// changedStores lists the stores whose site differs between prev's table
// and t, when prev is known and they are at most maxStoreChanges.
func changedStores(prev *router, t *siteTable) ([]string, bool) {
	if prev == nil {
		return nil, false
	}
	old := prev.sites
	var changed []string
	for id := range t.byStore {
		if _, was := old.byStore[id]; !was || old.remoteSite(id) != t.remoteSite(id) {
			changed = append(changed, id)
		}
	}
	for id := range old.byStore {
		if _, is := t.byStore[id]; !is {
			changed = append(changed, id)
		}
	}
	if len(changed) > maxStoreChanges {
		return nil, false
	}
	slices.Sort(changed)
	return changed, true
}

// maxStoreChanges is where publishStores reads every store row instead of
// each changed one.
const maxStoreChanges = 1000

// storeRowBatch is the store rows written in one step, storeRowPage those
// read in one (a round trip each on PostgreSQL).
const storeRowBatch, storeRowPage = 1000, 10000

// defaultStoreRow is the row of a store nobody wrote a row for, with the
// fields the reference client requires of a store row
// (server/service/src/sync/translations/store.rs, LegacyStoreRow). An
// open-mSupply remote also needs the name record it names: the central team
// writes both when it serves such remotes (README, "Store rows").
func defaultStoreRow(id string) routing.Fields {
	return routing.Fields{"ID": jsonOf(id), "code": jsonOf(id), "name": jsonOf(id), routing.FieldName: jsonOf(id),
		"store_mode": jsonOf("store"), "logo": jsonOf(""), "created_date": jsonOf("0000-00-00"), "disabled": jsonOf(false)}
}

// routerFor builds the router for t with the current store rows.
func (s *Server) routerFor(t *siteTable) (*router, error) {
	rows, err := s.storeRows()
	if err != nil {
		return nil, err
	}
	return &router{sites: t, names: namesOf(rows)}, nil
}

// storeRow is what the primary reads of a central store row.
type storeRow struct {
	data   json.RawMessage
	name   string // name_ID
	remote int    // sync_id_remote_site
}

// storeRows reads every central store row. Only two fields matter here,
// and a registry of 40,000 sites has as many rows: they are scanned, not
// decoded (jsonscan), unless a row is unusual.
func (s *Server) storeRows() (map[string]storeRow, error) {
	out := map[string]storeRow{}
	after := ""
	for {
		recs, err := s.store.List(routing.TableStore, after, storeRowPage)
		if err != nil {
			return nil, fmt.Errorf("cannot read the store rows: %w", err)
		}
		for _, r := range recs {
			out[r.ID] = readStoreRow(r.Data)
		}
		if len(recs) < storeRowPage {
			return out, nil
		}
		after = recs[len(recs)-1].ID
	}
}

func readStoreRow(data json.RawMessage) storeRow {
	row := storeRow{data: data}
	var name, remote []byte
	ok := jsonscan.Members(data, func(key []byte, escaped bool, v []byte) bool {
		switch {
		case escaped:
			return false
		case string(key) == routing.FieldName:
			name = v
		case string(key) == routing.FieldRemoteSite:
			remote = v
		}
		return true
	})
	if !ok {
		f := routing.Decode(data)
		return storeRow{data: data, name: f.String(routing.FieldName), remote: remoteSiteOf(f)}
	}
	if name != nil {
		if s, plain := jsonscan.PlainString(name); plain {
			row.name = s
		} else {
			json.Unmarshal(name, &row.name)
		}
	}
	if remote != nil {
		row.remote = remoteSiteOf(routing.Fields{routing.FieldRemoteSite: remote})
	}
	return row
}

// namesOf maps each store row's name_ID to its store.
func namesOf(rows map[string]storeRow) map[string]string {
	names := make(map[string]string, len(rows))
	for id, r := range rows {
		if r.name != "" {
			names[r.name] = id
		}
	}
	return names
}

// remoteSiteOf reads sync_id_remote_site, a number (or a numeric string).
func remoteSiteOf(f routing.Fields) int {
	raw := f[routing.FieldRemoteSite]
	var n int
	if json.Unmarshal(raw, &n) == nil {
		return n
	}
	var str string
	if json.Unmarshal(raw, &str) == nil {
		if n, err := strconv.Atoi(str); err == nil {
			return n
		}
	}
	return 0
}

func jsonOf(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
