package daemon

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"syncagent/queue"
)

// TestLocalAPI_ownershipByRoutingRules protects the apps' writes on a
// satellite: they follow the primary's routing rules, so an app can write a
// trans_line of a local transact (it has no store_ID of its own: it was
// refused), but not one of another store's, nor central data.
func TestLocalAPI_ownershipByRoutingRules(t *testing.T) {
	b := newBox(t)
	b.write(b.render(satellite12("http://127.0.0.1:9")))
	b.start()
	ctx := context.Background()
	put := func(table, id, data string) error {
		_, err := b.client.PutRecord(ctx, table, id, json.RawMessage(data))
		return err
	}
	for _, c := range []struct {
		what, table, id, data string
		ok                    bool
	}{
		{"a line before its shipment", "trans_line", "L0", `{"transaction_ID":"T1","quantity":1}`, true},
		{"a shipment of this store", "transact", "T1", `{"store_ID":"a","name_ID":"n"}`, true},
		{"a line of it", "trans_line", "L1", `{"transaction_ID":"T1","quantity":2}`, true},
		{"a shipment of another store", "transact", "T2", `{"store_ID":"b"}`, false},
		{"a line without its shipment's ID", "trans_line", "L2", `{"quantity":2}`, false},
		{"central data", "item", "I1", `{"name":"x"}`, false},
		{"a record moved to another store", "transact", "T1", `{"store_ID":"b"}`, false},
	} {
		if err := put(c.table, c.id, c.data); (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok %v", c.what, err, c.ok)
		}
	}
}

// A line of a shipment held here for another store (a transfer received)
// is not this site's to write, nor the shipment its to delete.
func TestLocalRecords_transferReceivedIsNotOurs(t *testing.T) {
	l, err := queue.OpenLocal(filepath.Join(t.TempDir(), "s.db"), queue.LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	recs := &localRecords{local: l}
	if _, err := l.Apply([]queue.Record{{Table: "transact", ID: "T9", Action: queue.Update, Data: json.RawMessage(`{"store_ID":"b","name_ID":"a","status":"fn"}`)}}); err != nil {
		t.Fatal(err)
	}
	mine := []string{"a"}
	if err := recs.checkOwner(queue.Record{Table: "trans_line", ID: "L9", Action: queue.Insert, Data: json.RawMessage(`{"transaction_ID":"T9"}`)}, mine); err == nil {
		t.Error("an app may add a line to another store's shipment")
	}
	held, _, _ := l.Get("transact", "T9")
	if err := recs.checkOwner(held, mine); err == nil {
		t.Error("an app may delete another store's shipment")
	}
}
