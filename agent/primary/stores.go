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
// t and the rows as they are now.
func (s *Server) publishStores(t *siteTable) (*router, error) {
	rows, err := s.storeRows()
	if err != nil {
		return nil, err
	}
	names := namesOf(rows)
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
	for _, id := range slices.Sorted(maps.Keys(t.byStore)) {
		want := t.remoteSite(id)
		row, ok := rows[id]
		f := defaultStoreRow(id)
		switch {
		case !ok:
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
	for id, row := range rows {
		if _, ours := t.byStore[id]; ours || row.remote <= centralSiteID {
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

// storeRowBatch is the store rows written in one step.
const storeRowBatch = 1000

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
		recs, err := s.store.List(routing.TableStore, after, 1000)
		if err != nil {
			return nil, fmt.Errorf("cannot read the store rows: %w", err)
		}
		for _, r := range recs {
			out[r.ID] = readStoreRow(r.Data)
		}
		if len(recs) < 1000 {
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
