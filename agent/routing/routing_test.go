package routing

import (
	"encoding/json"
	"testing"
)

// Every field a rule reads is one Claim can read (field panics otherwise).
func TestRules_fieldsAreRead(t *testing.T) {
	for _, r := range append(Rules, Default) {
		r.Claim(json.RawMessage(`{"store_ID":"s","name_ID":"n","status":"fn","transaction_ID":"t","requisition_ID":"r","stock_take_ID":"k"}`))
	}
}

func TestClaim(t *testing.T) {
	cases := []struct {
		table, data string
		want        Claim
	}{
		{"transact", `{"store_ID":"a","name_ID":"b","status":"fn"}`, Claim{Store: "a", TransferName: "b"}},
		{"transact", `{"store_ID":"a","name_ID":"b","status":"nw"}`, Claim{Store: "a"}},
		{"transact", `{"store_ID":7,"name_ID":null}`, Claim{}},
		{"trans_line", `{"transaction_ID":"T1","store_ID":"ignored"}`, Claim{ParentTable: "transact", ParentID: "T1"}},
		{"Stock_take_lines", `{"stock_take_ID":"S"}`, Claim{ParentTable: "Stock_take", ParentID: "S"}},
		{"item", `{"store_ID":"a"}`, Claim{Central: true}},
		{"custom", `{"store_ID":"a"}`, Claim{Store: "a"}},
		{"custom", `{"x":1}`, Claim{Central: true}},
		{"custom", `not json`, Claim{Central: true}},
	}
	for _, c := range cases {
		if got := For(c.table).Claim(json.RawMessage(c.data)); got != c.want {
			t.Errorf("%s %s: %+v, want %+v", c.table, c.data, got, c.want)
		}
	}
}
