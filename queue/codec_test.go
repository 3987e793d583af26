package queue

import (
	"encoding/json"
	"fmt"
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

// TestPadding: the hand-written padding is fmt's %0*d.
func TestPadding(t *testing.T) {
	for _, v := range []uint64{0, 7, 42, 9999999999, 1e10, 18446744073709551615} {
		if got, want := pad(v), fmt.Sprintf("%0*d", seqWidth, v); got != want {
			t.Errorf("pad(%d) = %q, want %q", v, got, want)
		}
		if v >= 1e10 {
			continue
		}
		if got, want := padSite(int(v)), fmt.Sprintf("%0*d", siteWidth, v); got != want {
			t.Errorf("padSite(%d) = %q, want %q", v, got, want)
		}
	}
	if got := padSite(12345678901); got != "12345678901" {
		t.Errorf("padSite past 10 digits = %q", got)
	}
}
