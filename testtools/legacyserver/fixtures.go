package legacyserver

import (
	"embed"
	"encoding/json"
	"fmt"
)

// The fixtures are legacy rows with the full field sets the reference
// client's recorded test data shows (open-msupply
// server/service/src/sync/test/test_data/: item.rs, unit.rs, name.rs,
// store.rs, name_store_join.rs, invoice.rs for transact, invoice_line.rs
// for trans_line), with values of our own: a clinic (site 12, store
// ST-CLINIC-12) and its district store.
//
//go:embed testdata/*.json
var fixtures embed.FS

// Central is central data: units, items, names, stores (each with
// sync_id_remote_site), an update and a delete.
func Central() []Row { return load("central.json") }

// SiteData is what an initialisation of site 12 fills its queue with: a
// name_store_join and an inbound shipment (transact) with its trans_lines.
func SiteData() []Row { return load("site.json") }

// LocalWrites are what the clinic's apps write: an outbound shipment's
// trans_lines, then the transact they belong to (children before their
// parent, as the reference client pushes).
func LocalWrites() []Row { return load("local.json") }

func load(name string) []Row {
	b, err := fixtures.ReadFile("testdata/" + name)
	if err != nil {
		panic(err)
	}
	var rows []Row
	if err := json.Unmarshal(b, &rows); err != nil {
		panic(fmt.Sprintf("fixture %s: %v", name, err))
	}
	return rows
}
