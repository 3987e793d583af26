package control

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// The put and get answers are written by hand: they must read back as the
// same record, and be byte for byte what encoding/json's Encoder writes
// when the data has nothing it would escape.
func TestRecord_appendJSON(t *testing.T) {
	for _, r := range []Record{
		{Table: "item", ID: "i1", Data: json.RawMessage(`{"code":"AMX","n":1}`)},
		{Table: "stock_line", ID: "s 1", Action: "insert", Data: json.RawMessage(`{"note":"two words"}`)},
		{Table: "item", ID: "i2", Action: "delete"},
		{Table: "item", ID: `q"uote\back`, Data: json.RawMessage(`{}`)},
		{Table: "item", ID: "<b>&amp;</b>", Data: json.RawMessage(`{"a":[]}`)},
		{Table: "item", ID: "é\u2028\x01", Data: json.RawMessage(`{"a":null}`)},
		{Table: "item", ID: "bad\xffutf8", Data: json.RawMessage(`{"a":true}`)},
	} {
		got := r.appendJSON(nil)
		var want bytes.Buffer
		json.NewEncoder(&want).Encode(r)
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("appendJSON(%+v)\n got %s\nwant %s", r, got, want.Bytes())
		}
	}
}

func FuzzRecord_appendJSON(f *testing.F) {
	f.Add("item", "i1", "", []byte(`{"a":1}`))
	f.Add("it<em", "i\"1", "delete", []byte(`{"a":"<&>"}`))
	f.Fuzz(func(t *testing.T, table, id, action string, data []byte) {
		if len(data) > 0 && !json.Valid(data) {
			return
		}
		r := Record{Table: table, ID: id, Action: action, Data: data}
		var back, want Record
		if err := json.Unmarshal(r.appendJSON(nil), &back); err != nil {
			t.Fatalf("appendJSON(%+v) is not JSON: %v", r, err)
		}
		enc, _ := json.Marshal(r)
		json.Unmarshal(enc, &want)
		// Data compares as JSON: the Encoder compacts and escapes it.
		var bd, wd any
		json.Unmarshal(back.Data, &bd)
		json.Unmarshal(want.Data, &wd)
		back.Data, want.Data = nil, nil
		if !reflect.DeepEqual(back, want) || !reflect.DeepEqual(bd, wd) {
			t.Fatalf("appendJSON(%+v) reads back as %+v %v, encoding/json's as %+v %v", r, back, bd, want, wd)
		}
	})
}
