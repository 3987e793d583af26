package primary

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"syncagent/agent/routing"
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
	rt := &router{sites: t, names: namesOf(rows)}
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
	write := func(id string, f routing.Fields) error {
		b, err := json.Marshal(f)
		if err != nil {
			return err
		}
		batch = append(batch, queue.Record{Table: routing.TableStore, ID: id, Action: queue.Update, Data: b})
		if len(batch) == storeRowBatch {
			return flush()
		}
		return nil
	}
	for _, id := range slices.Sorted(maps.Keys(t.byStore)) {
		want := t.remoteSite(id)
		f, ok := rows[id]
		if !ok {
			f = defaultStoreRow(id)
		} else if remoteSiteOf(f) == want {
			continue
		}
		f[routing.FieldRemoteSite] = jsonOf(want)
		if err := write(id, f); err != nil {
			return nil, err
		}
	}
	// A store no longer on any of our sites is no longer active there.
	for id, f := range rows {
		if _, ours := t.byStore[id]; ours {
			continue
		}
		if site := remoteSiteOf(f); site > centralSiteID {
			f[routing.FieldRemoteSite] = jsonOf(centralSiteID)
			if err := write(id, f); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return s.routerFor(t)
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

// storeRows reads every central store row.
func (s *Server) storeRows() (map[string]routing.Fields, error) {
	out := map[string]routing.Fields{}
	after := ""
	for {
		recs, err := s.store.List(routing.TableStore, after, 1000)
		if err != nil {
			return nil, fmt.Errorf("cannot read the store rows: %w", err)
		}
		for _, r := range recs {
			f := routing.Decode(r.Data)
			if f == nil {
				f = routing.Fields{}
			}
			out[r.ID] = f
		}
		if len(recs) < 1000 {
			return out, nil
		}
		after = recs[len(recs)-1].ID
	}
}

// namesOf maps each store row's name_ID to its store.
func namesOf(rows map[string]routing.Fields) map[string]string {
	names := make(map[string]string, len(rows))
	for id, f := range rows {
		if n := f.String(routing.FieldName); n != "" {
			names[n] = id
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
