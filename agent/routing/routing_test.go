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

// TestClaim_scanMatchesUnmarshal: the routing fields read without
// reflection are encoding/json's whenever the fast read answers.
func TestClaim_scanMatchesUnmarshal(t *testing.T) {
	for _, s := range []string{
		`{"store_ID":"s1","name_ID":"n2","status":"fn","transaction_ID":"t","requisition_ID":"r","stock_take_ID":"k"}`,
		`{"STORE_ID":"a","store_id":"b"}`,
		`{"store_ID":7,"name_ID":"n"}`,
		`{"store_ID":null}`,
		`{"store_ID":"caf\u00e9"}`,
		`{"store_ID":"é"}`,
		`{"other":{"store_ID":"inner"},"store_ID":"outer"}`,
		`[1,2]`,
		`{}`,
	} {
		var fast routed
		if !fast.scan([]byte(s)) {
			continue
		}
		var slow routed
		if err := json.Unmarshal([]byte(s), &slow); err != nil {
			t.Errorf("%s: fast read it, encoding/json: %v", s, err)
		}
		if fast != slow {
			t.Errorf("%s: fast %+v, encoding/json %+v", s, fast, slow)
		}
	}
}

func FuzzClaimScan(f *testing.F) {
	f.Add(`{"store_ID":"s1","name_ID":"n2","status":"fn"}`)
	f.Add(`{"Store_ID":"a","x":[{"store_ID":"b"}]}`)
	f.Fuzz(func(t *testing.T, s string) {
		var fast routed
		if !fast.scan([]byte(s)) || !json.Valid([]byte(s)) { // on invalid data: only no panic
			return
		}
		var slow routed
		if err := json.Unmarshal([]byte(s), &slow); err != nil || fast != slow {
			t.Fatalf("%q: fast %+v, encoding/json %+v (%v)", s, fast, slow, err)
		}
	})
}
