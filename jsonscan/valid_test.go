package jsonscan

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		in             string
		valid, compact bool
	}{
		{`{}`, true, true},
		{`[]`, true, true},
		{` {}`, true, false},
		{`{} `, true, false},
		{`{"a":1}`, true, true},
		{`{"a": 1}`, true, false},
		{`{"note":"two words, and a tab\t"}`, true, true},
		{`{"a":[1,2,{"b":null}],"c":true,"d":false,"e":-0.5e+3}`, true, true},
		{`{"a":[1,2 ,3]}`, true, false},
		{`{"a":"\u00e9\"\\\/\b\f\n\r\t"}`, true, true},
		{"{\"a\":\"\xff\xfe\"}", true, true}, // encoding/json lets invalid UTF-8 through
		{`"x"`, true, true},
		{`0`, true, true},
		{``, false, false},
		{` `, false, false},
		{`{`, false, false},
		{`{"a"}`, false, false},
		{`{"a":}`, false, false},
		{`{"a":1,}`, false, false},
		{`[1,]`, false, false},
		{`[,1]`, false, false},
		{`{,}`, false, false},
		{`{"a":1}}`, false, false},
		{`{"a":1} x`, false, false},
		{`{} {}`, false, false},
		{`01`, false, false},
		{`-`, false, false},
		{`1.`, false, false},
		{`1e`, false, false},
		{`1e+`, false, false},
		{`.5`, false, false},
		{`tru`, false, false},
		{`nul`, false, false},
		{`truex`, false, false},
		{`"a` + "\n" + `"`, false, false},
		{`"\x"`, false, false},
		{`"\u12"`, false, false},
		{`"\u12g4"`, false, false},
		{`[}`, false, false},
		{`{]`, false, false},
		{`{1:2}`, false, false},
		{strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth), true, true},
		{strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1), false, false},
	} {
		valid, compact := Check([]byte(tc.in))
		if valid != tc.valid || (valid && compact != tc.compact) {
			t.Errorf("Check(%.40q) = %v, %v; want %v, %v", tc.in, valid, compact, tc.valid, tc.compact)
		}
		if want := json.Valid([]byte(tc.in)); valid != want {
			t.Errorf("Check(%.40q) valid %v, json.Valid %v", tc.in, valid, want)
		}
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{}`, `{"a": [1, 2.5e-3, "x\"y", true, null]}`, `[{"a":{}}]`, ` 0 `, `"\u00e9"`, `-01`, `{"a":1,}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		valid, compact := Check(b)
		if want := json.Valid(b); valid != want {
			t.Fatalf("Check(%q) valid = %v, json.Valid = %v", b, valid, want)
		}
		if !valid {
			return
		}
		var c bytes.Buffer
		if err := json.Compact(&c, b); err != nil {
			t.Fatalf("json.Compact(%q): %v", b, err)
		}
		if same := bytes.Equal(c.Bytes(), b); compact != same {
			t.Fatalf("Check(%q) compact = %v, but json.Compact gives %q", b, compact, c.Bytes())
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	doc := []byte(`{"store_ID":"store-a","item_ID":"item-000042","batch":"B00000042","expiry_date":"2027-03-31","pack_size":10,"cost_price":12.5,"sell_price":15.75,"available":42,"total":42,"location_ID":"","note":"a free-text note, with spaces and punctuation, about three hundred bytes long in all......"}`)
	b.Run("jsonscan", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			Check(doc)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			json.Valid(doc)
		}
	})
}
