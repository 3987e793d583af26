package e2e

import (
	"encoding/json"
	"fmt"
	"testing"

	"syncagent/queue"
)

// Real mSupply data between two satellites through a real primary: an
// outbound shipment with its lines goes from the sending store's site to
// the receiving store's site once it is picked, children first as the
// reference client sends them; an internal order likewise once sent. Field
// sets follow the reference client's recorded legacy rows
// (open-msupply server/service/src/sync/test/test_data/invoice.rs,
// invoice_line.rs, requisition.rs).

func (s *site) putRaw(t *testing.T, table, id, data string) {
	t.Helper()
	if _, err := s.store.Write(queue.Record{Table: table, ID: id, Action: queue.Update, Data: json.RawMessage(data)}); err != nil {
		t.Fatal(err)
	}
}

func transact(id, store, name, status string) string {
	return fmt.Sprintf(`{"ID":%q,"name_ID":%q,"store_ID":%q,"type":"ci","status":%q,"invoice_num":1,"their_ref":"","comment":"","total":0,"entry_date":"2021-07-30","confirm_date":"0000-00-00","user_ID":"","hold":false,"mode":"store","linked_transaction_id":"","requisition_ID":""}`,
		id, name, store, status)
}

func transLine(id, parent string, qty int) string {
	return fmt.Sprintf(`{"ID":%q,"transaction_ID":%q,"item_ID":"8F252B5884B74888AAB73A0D42C09E7F","item_name":"Ibuprofen 200mg","batch":"b1","quantity":%d,"pack_size":1,"cost_price":0,"sell_price":0,"expiry_date":"0000-00-00","type":"stock_out","line_number":1}`,
		id, parent, qty)
}

func TestRouting_shipmentWithLinesReachesTheReceiver(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"store-a"}, 3: {"store-b"}, 4: {"store-c"}})
	a, b, c := w.sats[2], w.sats[3], w.sats[4]
	syncAll(t, 1, a, b, c)
	// Lines first, then their shipment, in one push; the shipment is new.
	a.putRaw(t, "trans_line", "L1", transLine("L1", "OS1", 5))
	a.putRaw(t, "trans_line", "L2", transLine("L2", "OS1", 7))
	a.putRaw(t, "transact", "OS1", transact("OS1", "store-a", "store-b", "nw"))
	if res := a.sync(t); res.SetAside != 0 || res.Pushed != 3 {
		t.Fatalf("push: pushed %d, set aside %d", res.Pushed, res.SetAside)
	}
	syncAll(t, 1, b, c)
	for _, id := range []string{"OS1"} {
		if _, ok := b.has(t, "transact", id); ok {
			t.Fatal("a new (unpicked) shipment reached the receiver")
		}
	}
	// Picked: it goes to store-b's site with its lines; never to store-c's.
	a.putRaw(t, "transact", "OS1", transact("OS1", "store-a", "store-b", "cn"))
	a.sync(t)
	syncAll(t, 1, b, c)
	for table, ids := range map[string][]string{"transact": {"OS1"}, "trans_line": {"L1", "L2"}} {
		for _, id := range ids {
			if _, ok := b.has(t, table, id); !ok {
				t.Errorf("receiver lacks %s/%s", table, id)
			}
			if _, ok := c.has(t, table, id); ok {
				t.Errorf("an unrelated site holds %s/%s", table, id)
			}
		}
	}
	// A line added later follows its shipment to the receiver.
	a.putRaw(t, "trans_line", "L3", transLine("L3", "OS1", 1))
	a.sync(t)
	b.sync(t)
	if m, ok := b.has(t, "trans_line", "L3"); !ok || m["quantity"] != 1.0 {
		t.Errorf("receiver: trans_line/L3 = %v", m)
	}
	// The receiver may not change the sender's shipment: refused, set aside,
	// and its copy restored to the sender's.
	b.putRaw(t, "transact", "OS1", transact("OS1", "store-a", "store-b", "fn"))
	if res := b.sync(t); res.SetAside != 1 {
		t.Errorf("receiver's change set aside %d, want 1", res.SetAside)
	}
	b.sync(t)
	if m, _ := b.has(t, "transact", "OS1"); m["status"] != "cn" {
		t.Errorf("receiver's copy = %v, want the sender's (status cn)", m["status"])
	}
}

func TestRouting_internalOrderReachesTheSupplier(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"clinic"}, 3: {"district"}})
	clinic, district := w.sats[2], w.sats[3]
	syncAll(t, 1, clinic, district)
	req := func(status string) string {
		return fmt.Sprintf(`{"ID":"RQ1","serial_number":1,"name_ID":"district","store_ID":"clinic","type":"request","status":%q,"date_entered":"2021-07-30","lastModifiedAt":0,"requester_reference":"","linked_requisition_id":"","thresholdMOS":3,"daysToSupply":30,"comment":""}`, status)
	}
	clinic.putRaw(t, "requisition_line", "RQL1", `{"ID":"RQL1","requisition_ID":"RQ1","item_ID":"item-1","Cust_stock_order":20,"actualQuan":0,"line_number":1}`)
	clinic.putRaw(t, "requisition", "RQ1", req("sg"))
	clinic.sync(t)
	district.sync(t)
	if _, ok := district.has(t, "requisition", "RQ1"); ok {
		t.Fatal("a draft order reached the supplier")
	}
	clinic.putRaw(t, "requisition", "RQ1", req("fn"))
	clinic.sync(t)
	district.sync(t)
	if _, ok := district.has(t, "requisition", "RQ1"); !ok {
		t.Error("the sent order did not reach the supplier")
	}
	if _, ok := district.has(t, "requisition_line", "RQL1"); !ok {
		t.Error("the order's line did not reach the supplier")
	}
}

// The primary publishes a store row per store, naming the site where it is
// active, and keeps it in step when the rows change.
func TestRouting_storeRowsPublished(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"store-a"}, 3: {"store-b"}})
	remote := func(id string) any {
		r, ok, _ := w.central.Get("store", id)
		if !ok {
			return nil
		}
		var m map[string]any
		json.Unmarshal(r.Data, &m)
		return m["sync_id_remote_site"]
	}
	if remote("store-a") != 2.0 || remote("store-b") != 3.0 {
		t.Fatalf("store rows: a on %v, b on %v", remote("store-a"), remote("store-b"))
	}
	a := w.sats[2]
	a.sync(t)
	if m, ok := a.has(t, "store", "store-b"); !ok || m["sync_id_remote_site"] != 3.0 || m["store_mode"] != "store" {
		t.Errorf("site 2's copy of store-b's row: %v", m)
	}
	reconfigure(t, w, map[int][]string{2: {"store-a", "store-b"}})
	if remote("store-b") != 2.0 {
		t.Errorf("after the move store-b is on %v, want 2", remote("store-b"))
	}
	reconfigure(t, w, map[int][]string{2: {"store-a"}})
	if remote("store-b") != 1.0 {
		t.Errorf("a store on no site is on %v, want the central site 1", remote("store-b"))
	}
}
