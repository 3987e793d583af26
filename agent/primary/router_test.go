package primary

import (
	"encoding/json"
	"slices"
	"testing"

	"syncagent/agent/routing"
	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// Site 2 holds store A, site 3 store B, sites 4 and 5 share store C. Store
// B's name record is "name-B" (from its central store row); store C has no
// row, so its name ID is its ID.
func testRouter(t *testing.T) *router {
	t.Helper()
	tbl, err := newSiteTable([]SiteRow{
		{SyncID: 2, User: "a", Stores: []string{"A"}},
		{SyncID: 3, User: "b", Stores: []string{"B"}},
		{SyncID: 4, User: "c", Stores: []string{"C"}},
		{SyncID: 5, User: "d", Stores: []string{"C"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &router{sites: tbl, names: map[string]string{"name-B": "B"}}
}

// held is what the primary holds in these tests.
var held = map[string]queue.Current{
	"transact/TA":    {Exists: true, Version: 1, Owner: "A", Holders: []int{2}, Record: rec("transact", "TA", `{"store_ID":"A"}`)},
	"transact/TB":    {Exists: true, Version: 2, Owner: "B", Holders: []int{3}, Record: rec("transact", "TB", `{"store_ID":"B"}`)},
	"transact/TX":    {Exists: true, Version: 3, Owner: "A", Holders: []int{2, 3}, Record: rec("transact", "TX", `{"store_ID":"A","name_ID":"name-B","status":"fn"}`)},
	"requisition/RA": {Exists: true, Version: 4, Owner: "A", Holders: []int{2}, Record: rec("requisition", "RA", `{"store_ID":"A"}`)},
	"Stock_take/SA":  {Exists: true, Version: 5, Owner: "A", Holders: []int{2}, Record: rec("Stock_take", "SA", `{"store_ID":"A"}`)},
	"item/I1":        {Exists: true, Version: 6, Central: true, Record: rec("item", "I1", `{"name":"x"}`)},
	"transact/Gone":  {Exists: true, Deleted: true, Version: 7, Owner: "B", Holders: []int{3}, Record: queue.Record{Table: "transact", ID: "Gone", Action: queue.Delete}},
}

func rec(table, id, data string) queue.Record {
	return queue.Record{Table: table, ID: id, Action: queue.Update, Data: json.RawMessage(data)}
}

func look(table, id string) queue.Current { return held[table+"/"+id] }

func TestRouter_Route(t *testing.T) {
	rt := testRouter(t)
	cases := []struct {
		name    string
		origin  int
		r       queue.Record
		refuse  string // expected refusal code, or ""
		owner   string
		holders []int
		held    bool
		central bool
	}{
		// Store data owned by store_ID.
		{"transact of own store", 2, rec("transact", "T1", `{"store_ID":"A","name_ID":"cust"}`), "", "A", []int{2}, false, false},
		{"transact of another store", 2, rec("transact", "T1", `{"store_ID":"B"}`), syncapi.CodeStoreNotActive, "", nil, false, false},
		{"transact of a store nobody has", 2, rec("transact", "T1", `{"store_ID":"Z"}`), syncapi.CodeStoreNotActive, "", nil, false, false},
		{"transact without store_ID", 2, rec("transact", "T1", `{"name_ID":"x"}`), syncapi.CodeInvalidRecord, "", nil, false, false},
		{"item_line", 4, rec("item_line", "L", `{"store_ID":"C"}`), "", "C", []int{4, 5}, false, false},
		{"name_store_join reaches its store's site", 0, rec("name_store_join", "J", `{"store_ID":"B","name_ID":"n"}`), "", "B", []int{3}, false, false},
		{"item_store_join reaches its store's site", 0, rec("item_store_join", "J", `{"store_ID":"C"}`), "", "C", []int{4, 5}, false, false},
		{"Stock_take", 2, rec("Stock_take", "S1", `{"store_ID":"A"}`), "", "A", []int{2}, false, false},
		// Transfers by name_ID, once sent.
		{"shipment still new stays home", 2, rec("transact", "T2", `{"store_ID":"A","name_ID":"name-B","status":"nw"}`), "", "A", []int{2}, false, false},
		{"shipment picked reaches the receiver", 2, rec("transact", "T2", `{"store_ID":"A","name_ID":"name-B","status":"cn"}`), "", "A", []int{2, 3}, false, false},
		{"shipment shipped reaches the receiver", 2, rec("transact", "T2", `{"store_ID":"A","name_ID":"name-B","status":"fn"}`), "", "A", []int{2, 3}, false, false},
		{"shipment to a store without a row (name = ID)", 2, rec("transact", "T2", `{"store_ID":"A","name_ID":"C","status":"fn"}`), "", "A", []int{2, 4, 5}, false, false},
		{"shipment to a customer (a name, no store)", 2, rec("transact", "T2", `{"store_ID":"A","name_ID":"patient-7","status":"fn"}`), "", "A", []int{2}, false, false},
		{"internal order draft stays home", 2, rec("requisition", "R2", `{"store_ID":"A","name_ID":"name-B","status":"sg"}`), "", "A", []int{2}, false, false},
		{"internal order sent reaches the supplier", 2, rec("requisition", "R2", `{"store_ID":"A","name_ID":"name-B","status":"fn"}`), "", "A", []int{2, 3}, false, false},
		// Children through their parents.
		{"trans_line of a known transact", 2, rec("trans_line", "L1", `{"transaction_ID":"TA"}`), "", "A", []int{2}, false, false},
		{"trans_line of a transferred transact", 2, rec("trans_line", "L1", `{"transaction_ID":"TX"}`), "", "A", []int{2, 3}, false, false},
		{"trans_line before its transact", 2, rec("trans_line", "L1", `{"transaction_ID":"T-new"}`), "", "", nil, true, false},
		{"trans_line of a deleted transact is held", 3, rec("trans_line", "L1", `{"transaction_ID":"Gone"}`), "", "", nil, true, false},
		{"trans_line of another store's transact", 2, rec("trans_line", "L1", `{"transaction_ID":"TB"}`), syncapi.CodeStoreNotActive, "", nil, false, false},
		{"receiver may not add lines to a sender's shipment", 3, rec("trans_line", "L1", `{"transaction_ID":"TX"}`), syncapi.CodeStoreNotActive, "", nil, false, false},
		{"trans_line without transaction_ID", 2, rec("trans_line", "L1", `{"item_ID":"x"}`), syncapi.CodeInvalidRecord, "", nil, false, false},
		{"requisition_line", 2, rec("requisition_line", "RL", `{"requisition_ID":"RA"}`), "", "A", []int{2}, false, false},
		{"Stock_take_lines", 2, rec("Stock_take_lines", "SL", `{"stock_take_ID":"SA"}`), "", "A", []int{2}, false, false},
		// Central data.
		{"item from a site", 2, rec("item", "I2", `{"name":"y"}`), syncapi.CodeCentralFromSite, "", nil, false, false},
		{"item from the primary", 0, rec("item", "I2", `{"name":"y"}`), "", "", nil, false, true},
		{"store row from a site", 2, rec("store", "A", `{"name_ID":"A"}`), syncapi.CodeCentralFromSite, "", nil, false, false},
		{"central record given a store_ID", 2, rec("item", "I1", `{"store_ID":"A"}`), syncapi.CodeCentralFromSite, "", nil, false, false},
		{"unlisted table with store_ID", 4, rec("stock", "s", `{"store_ID":"C"}`), "", "C", []int{4, 5}, false, false},
		{"unlisted table without store_ID is central", 4, rec("stock", "s", `{"qty":1}`), syncapi.CodeCentralFromSite, "", nil, false, false},
		// Ownership is the primary's copy's.
		{"another store's record claimed as own", 2, rec("transact", "TB", `{"store_ID":"A"}`), syncapi.CodeStoreNotActive, "", nil, false, false},
		{"own record moved to another site's store", 2, rec("transact", "TA", `{"store_ID":"B"}`), syncapi.CodeStoreNotActive, "", nil, false, false},
		{"a deleted record may be created again", 2, rec("transact", "Gone", `{"store_ID":"A"}`), "", "A", []int{2}, false, false},
		{"the primary changes any store's record", 0, rec("transact", "TB", `{"store_ID":"B","x":1}`), "", "B", []int{3}, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := rt.Route(tc.origin, tc.r, look(tc.r.Table, tc.r.ID), look)
			if tc.refuse != "" {
				if got.Refuse == nil || got.Refuse.Code != tc.refuse {
					t.Fatalf("Route = %+v, want refusal %s", got, tc.refuse)
				}
				return
			}
			if got.Refuse != nil {
				t.Fatalf("refused: %s: %s", got.Refuse.Code, got.Refuse.Message)
			}
			holders := slices.Sorted(slices.Values(slices.Compact(slices.Sorted(slices.Values(got.Holders)))))
			if got.Owner != tc.owner || !slices.Equal(holders, tc.holders) || got.Held != tc.held || got.Central != tc.central {
				t.Fatalf("Route = owner %q holders %v held %v central %v; want %q %v %v %v",
					got.Owner, holders, got.Held, got.Central, tc.owner, tc.holders, tc.held, tc.central)
			}
		})
	}
}

func TestRouter_Deletes(t *testing.T) {
	rt := testRouter(t)
	del := func(table, id string) queue.Record { return queue.Record{Table: table, ID: id, Action: queue.Delete} }
	cases := []struct {
		name    string
		origin  int
		r       queue.Record
		refuse  string
		holders []int
	}{
		{"own record", 2, del("transact", "TA"), "", []int{2}},
		{"transferred record, by its owner", 2, del("transact", "TX"), "", []int{2, 3}},
		{"transferred record, by the receiver", 3, del("transact", "TX"), syncapi.CodeStoreNotActive, nil},
		{"another store's record", 2, del("transact", "TB"), syncapi.CodeStoreNotActive, nil},
		{"central data", 2, del("item", "I1"), syncapi.CodeCentralFromSite, nil},
		{"central data, by the primary", 0, del("item", "I1"), "", nil},
		{"never known here", 2, del("transact", "T-none"), "", []int{2}},
		{"merge of another store's record", 2, queue.Record{Table: "transact", ID: "TB", Action: queue.Merge, Data: json.RawMessage(`{"mergeIdToKeep":"TA","mergeIdToDelete":"TB"}`)}, syncapi.CodeStoreNotActive, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := rt.Route(tc.origin, tc.r, look(tc.r.Table, tc.r.ID), look)
			switch {
			case tc.refuse != "" && (got.Refuse == nil || got.Refuse.Code != tc.refuse):
				t.Fatalf("Route = %+v, want refusal %s", got, tc.refuse)
			case tc.refuse == "" && got.Refuse != nil:
				t.Fatalf("refused: %+v", got.Refuse)
			case tc.refuse == "" && !slices.Equal(got.Holders, tc.holders):
				t.Fatalf("holders %v, want %v", got.Holders, tc.holders)
			}
		})
	}
}

// Holders recomputes a stored record's holders from the current rows: a
// child follows its parent's.
func TestRouter_Holders(t *testing.T) {
	rt := testRouter(t)
	line := queue.Current{Exists: true, Owner: "A", Holders: []int{2}, Parent: &queue.Ref{Table: "transact", ID: "TX"}, Record: rec("trans_line", "L", `{"transaction_ID":"TX"}`)}
	if got := rt.Holders(line, look); !slices.Equal(got, []int{2, 3}) {
		t.Errorf("child of a transferred transact: %v, want [2 3]", got)
	}
	if got := rt.Holders(held["transact/TX"], look); !slices.Equal(got, []int{2, 3}) {
		t.Errorf("transferred transact: %v", got)
	}
	// Store A moves to site 4.
	tbl, _ := newSiteTable([]SiteRow{{SyncID: 3, User: "b", Stores: []string{"B"}}, {SyncID: 4, User: "c", Stores: []string{"A", "C"}}})
	moved := &router{sites: tbl, names: rt.names}
	if got := moved.Holders(held["transact/TA"], look); !slices.Equal(got, []int{4}) {
		t.Errorf("after the move: %v, want [4]", got)
	}
}

// Every rule names a table once, and the rules describe each table of the
// issue's list.
func TestRouting_RulesCoverTheLegacyTables(t *testing.T) {
	for _, table := range []string{"transact", "trans_line", "requisition", "requisition_line", "Stock_take", "Stock_take_lines",
		"item_line", "name_store_join", "item_store_join", "store", "item", "name", "unit", "list_master", "list_master_line"} {
		if !routing.Listed(table) {
			t.Errorf("no rule for %s", table)
		}
	}
	for _, r := range routing.Rules {
		if r.Child() && !routing.Listed(r.ParentTable) {
			t.Errorf("%s's parent %s has no rule", r.Table, r.ParentTable)
		}
		if r.Central && (r.StoreField != "" || r.Child() || r.TransferField != "") {
			t.Errorf("central table %s also names an owner: %+v", r.Table, r)
		}
		if !r.Central && r.StoreField == "" && !r.Child() {
			t.Errorf("table %s has no owner", r.Table)
		}
	}
}
