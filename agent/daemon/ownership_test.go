package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"syncagent/agent/control"
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
	// A batch follows the same rules, inside its commit: a line checks
	// against the lines before it, and one refused line writes nothing.
	batch := `{"table":"transact","id":"T5","data":{"store_ID":"a"}}` + "\n" +
		`{"table":"trans_line","id":"L5","data":{"transaction_ID":"T5"}}` + "\n" +
		`{"table":"transact","id":"T6","data":{"store_ID":"b"}}` + "\n"
	var le *control.LineError
	if _, err := b.client.PutLines(ctx, []byte(batch)); !errors.As(err, &le) || le.Line != 3 || le.Status != http.StatusBadRequest {
		t.Errorf("a batch with another store's record: %v, want line 3 refused (400)", err)
	}
	if _, err := b.client.GetRecord(ctx, "transact", "T5"); err == nil {
		t.Error("a refused batch wrote its first line")
	}
	res, err := b.client.PutLines(ctx, []byte(batch[:strings.LastIndex(batch[:len(batch)-1], "\n")+1]))
	if err != nil || res.Written != 2 || res.Inserted != 2 {
		t.Errorf("a good batch: %+v, %v", res, err)
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
	if _, err := l.Apply([]queue.Record{{Table: "transact", ID: "T9", Action: queue.Update, Data: json.RawMessage(`{"store_ID":"b","name_ID":"a","status":"fn"}`)}}); err != nil {
		t.Fatal(err)
	}
	mine := []string{"a"}
	if err := checkOwner(queue.Record{Table: "trans_line", ID: "L9", Action: queue.Insert, Data: json.RawMessage(`{"transaction_ID":"T9"}`)}, queue.Record{}, false, mine, l.Get); err == nil {
		t.Error("an app may add a line to another store's shipment")
	}
	held, _, _ := l.Get("transact", "T9")
	if err := checkOwner(held, held, true, mine, l.Get); err == nil {
		t.Error("an app may delete another store's shipment")
	}
}
