package queue

import (
	"encoding/json"
	"testing"
)

// TestNormalize: data is kept as sent when compact, compacted otherwise,
// and refused unless it is a JSON object, whatever whitespace is around.
func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		data, want string // want "" refuses
	}{
		{`{"a":1,"note":"two words"}`, `{"a":1,"note":"two words"}`},
		{`{"a": 1}`, `{"a":1}`},
		{" \n{\"a\":1}\t", `{"a":1}`},
		{`{"a":[1, 2]}`, `{"a":[1,2]}`},
		{`[1]`, ""},
		{` [1]`, ""},
		{`"x"`, ""},
		{`{"a":}`, ""},
		{`{"a":1} {}`, ""},
	} {
		r, err := normalize(Record{Table: "item", ID: "i1", Action: Update, Data: json.RawMessage(tc.data)})
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("normalize(%q) = %s, want refused", tc.data, r.Data)
		case tc.want != "" && err != nil:
			t.Errorf("normalize(%q): %v", tc.data, err)
		case tc.want != "" && string(r.Data) != tc.want:
			t.Errorf("normalize(%q) = %s, want %s", tc.data, r.Data, tc.want)
		}
	}
}
