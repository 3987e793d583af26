package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"syncagent/queue"
	"syncagent/testtools/v5client"
)

// Conformance: a client that syncs request for request as the reference v5
// client does (testtools/v5client, after open-msupply
// server/service/src/sync/remote_data_synchroniser.rs and friends) runs its
// whole cycle against our primary with realistic legacy rows: initialise,
// central pull, queue pull and acknowledgement, a push with transfers and
// child rows sent before their parents, the final empty batch, and waiting
// for integration. Every record must arrive exactly where mSupply puts it.

// The legacy rows' field sets follow the reference client's recorded data
// (server/service/src/sync/test/test_data/{item,name,store,invoice,
// invoice_line,stock_line}.rs).
func legacyItem(id, name string) string {
	return fmt.Sprintf(`{"ID":%q,"item_name":%q,"start_of_year_date":"0000-00-00","manufacture_method":"","default_pack_size":1,"dose_picture":"[object Picture]","atc_category":"","medication_purpose":"","instructions":"","user_field_7":false,"flags":"","ddd_value":"","code":"item_A","other_names":"","type_of":"general","price_editable":false,"price_list":false,"unit_ID":"A02C91EB6C77400BA783C4CD7C565F29","outer_pack_size":1,"category_ID":"","volume_per_pack":0,"weight":0,"ven_category":"","non_stock_name_ID":"","is_vaccine":false,"doses":0}`, id, name)
}

func legacyName(id, name string) string {
	return fmt.Sprintf(`{"ID":%q,"name":%q,"code":"%s","type":"store","customer":true,"supplier":true,"manufacturer":false,"email":"","phone":"","charge code":"","comment":"","country":"","address1":"","address2":"","supplying_store_id":"","isDeleted":false}`, id, name, name)
}

func legacyStore(id, nameID string, site int) string {
	return fmt.Sprintf(`{"ID":%q,"name":%q,"code":%q,"name_ID":%q,"mwks_export_mode":"","IS_HIS":false,"sort_issues_by_status_spare":false,"disabled":false,"responsible_user_ID":"","organisation_name":"","address_1":"","address_2":"","logo":"No logo","sync_id_remote_site":%d,"address_3":"","address_4":"","address_5":"","postal_zip_code":"","store_mode":"store","phone":"","tags":"","custom_data":null,"created_date":"2021-09-03"}`,
		id, id, id, nameID, site)
}

func legacyItemLine(id, store string) string {
	return fmt.Sprintf(`{"ID":%q,"store_ID":%q,"item_ID":"ITEM-A","batch":"stockline_a","expiry_date":"2022-02-17","hold":false,"location_ID":"","pack_size":1,"available":30,"quantity":30,"cost_price":0,"sell_price":0,"note":"","name_ID":"","barcodeID":""}`, id, store)
}

func TestConformance_referenceClientCycle(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"OS-STORE"}, 3: {"IS-STORE"}, 4: {"OTHER-STORE"}})
	// The central team's data: an item, the stores' names, and the store rows
	// as imported from the legacy datafile (real name IDs).
	for _, r := range []queue.Record{
		{Table: "item", ID: "ITEM-A", Action: queue.Update, Data: json.RawMessage(legacyItem("ITEM-A", "Ibuprofen 200mg"))},
		{Table: "name", ID: "NAME-OS", Action: queue.Update, Data: json.RawMessage(legacyName("NAME-OS", "Outbound store"))},
		{Table: "name", ID: "NAME-IS", Action: queue.Update, Data: json.RawMessage(legacyName("NAME-IS", "Inbound store"))},
		{Table: "store", ID: "OS-STORE", Action: queue.Update, Data: json.RawMessage(legacyStore("OS-STORE", "NAME-OS", 2))},
		{Table: "store", ID: "IS-STORE", Action: queue.Update, Data: json.RawMessage(legacyStore("IS-STORE", "NAME-IS", 3))},
	} {
		if _, err := w.prim.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	// A name_store_join written on the central server reaches its store's site.
	if _, err := w.prim.Write(queue.Record{Table: "name_store_join", ID: "NSJ-1", Action: queue.Update,
		Data: json.RawMessage(`{"ID":"NSJ-1","name_ID":"NAME-IS","store_ID":"OS-STORE","inactive":false}`)}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	client := func(id int) *v5client.Client {
		c := v5client.New(w.srv.URL, fmt.Sprintf("site-%d", id), fmt.Sprintf("pw-%d", id), fmt.Sprintf("hw-%d", id))
		c.PushBatch = 2 // several push batches, then the empty one
		return c
	}
	outbound, inbound, other := client(2), client(3), client(4)
	for _, c := range []*v5client.Client{outbound, inbound, other} {
		info, err := c.Sync(ctx, false)
		if err != nil {
			t.Fatalf("%s: first sync: %v", c.User, err)
		}
		if info.InitialisationStatus != "new" {
			t.Errorf("%s: GET site said %q before initialising", c.User, info.InitialisationStatus)
		}
	}
	if got := strings.Join(outbound.Requests[:4], " | "); got != "GET site | POST initialise | GET site_status | GET central_records?cursor=0&limit=500" {
		t.Errorf("first requests: %s", got)
	}
	// Each site learns its store from the central store rows.
	var row struct {
		Remote int `json:"sync_id_remote_site"`
	}
	json.Unmarshal(outbound.Records["store"]["OS-STORE"], &row)
	if row.Remote != 2 {
		t.Errorf("outbound site's store row names site %d", row.Remote)
	}
	if _, ok := outbound.Records["name_store_join"]["NSJ-1"]; !ok {
		t.Error("the name_store_join did not reach its store's site")
	}
	if _, ok := inbound.Records["name_store_join"]["NSJ-1"]; ok {
		t.Error("the name_store_join reached another store's site")
	}

	// The outbound site ships to the inbound store: lines first, as the
	// reference client sends them, then the shipment, picked (cn).
	outbound.Write("trans_line", "LINE-1", json.RawMessage(transLine("LINE-1", "SHIP-1", 10)))
	outbound.Write("trans_line", "LINE-2", json.RawMessage(transLine("LINE-2", "SHIP-1", 20)))
	outbound.Write("transact", "SHIP-1", json.RawMessage(transact("SHIP-1", "OS-STORE", "NAME-IS", "cn")))
	outbound.Write("item_line", "STOCK-1", json.RawMessage(legacyItemLine("STOCK-1", "OS-STORE")))
	before := len(outbound.Requests)
	if _, err := outbound.Sync(ctx, true); err != nil {
		t.Fatalf("outbound push: %v", err)
	}
	pushes := 0
	for _, r := range outbound.Requests[before:] {
		if r == "POST queued_records" {
			pushes++
		}
	}
	if pushes != 3 { // 2 + 2 records, then the empty batch that starts integration
		t.Errorf("pushes = %d, want 3: %v", pushes, outbound.Requests[before:])
	}
	for _, key := range []string{"transact/SHIP-1", "trans_line/LINE-1", "trans_line/LINE-2", "item_line/STOCK-1"} {
		table, id, _ := strings.Cut(key, "/")
		if _, ok, _ := w.central.Get(table, id); !ok {
			t.Errorf("the primary refused or lost %s", key)
		}
	}
	for _, c := range []*v5client.Client{inbound, other} {
		if _, err := c.Sync(ctx, true); err != nil {
			t.Fatalf("%s: %v", c.User, err)
		}
	}
	for _, key := range []string{"transact/SHIP-1", "trans_line/LINE-1", "trans_line/LINE-2"} {
		table, id, _ := strings.Cut(key, "/")
		if _, ok := inbound.Records[table][id]; !ok {
			t.Errorf("the receiving site lacks %s", key)
		}
		if _, ok := other.Records[table][id]; ok {
			t.Errorf("an unrelated site holds %s", key)
		}
	}
	if _, ok := inbound.Records["item_line"]["STOCK-1"]; ok {
		t.Error("the sender's stock line reached the receiver")
	}
	// Nobody was sent back their own records, and every queue is empty.
	for _, id := range []int{2, 3, 4} {
		if n := w.central.QueueLen(id); n != 0 {
			t.Errorf("site %d queue = %d after its cycle", id, n)
		}
	}
	// Integration finished: site_status says idle to everyone.
	for _, c := range []*v5client.Client{outbound, inbound} {
		var st struct{ Code string }
		status, b := w.raw(http.MethodGet, "/sync/v5/site_status", siteOf(c), "hw-"+fmt.Sprint(siteOf(c)), "")
		json.Unmarshal(b, &st)
		if status != 200 || st.Code != "idle" {
			t.Errorf("%s: site_status %d %s", c.User, status, b)
		}
	}
	// A second initialise by a reinstalled client downloads each record once.
	again := client(2)
	if _, err := again.Sync(ctx, false); err != nil {
		t.Fatal(err)
	}
	want := []string{"item_line", "name_store_join", "trans_line", "transact"}
	var got []string
	for table, recs := range again.Records {
		if len(recs) > 0 && !slices.Contains([]string{"item", "name", "store"}, table) {
			got = append(got, table)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("reinstalled site holds tables %v, want %v", got, want)
	}
}

func siteOf(c *v5client.Client) int {
	var id int
	fmt.Sscanf(c.User, "site-%d", &id)
	return id
}
