package jsonscan

import (
	"bytes"
	"encoding/json"
	"testing"
)

// members collects what Members hands out; ok false when it stopped.
func members(b []byte) (map[string]string, []string, bool) {
	m := map[string]string{}
	var order []string
	ok := Members(b, func(k []byte, esc bool, v []byte) bool {
		if esc {
			return false
		}
		m[string(k)] = string(v)
		order = append(order, string(k))
		return true
	})
	return m, order, ok
}

func TestMembers(t *testing.T) {
	cases := []struct {
		in   string
		want map[string]string
		ok   bool
	}{
		{`{}`, map[string]string{}, true},
		{` { "a" : 1 , "b":"x}" ,"c":{"d":[1,{"e":"]"}]},"f":null,"g":true } `, map[string]string{"a": "1", "b": `"x}"`, "c": `{"d":[1,{"e":"]"}]}`, "f": "null", "g": "true"}, true},
		{`{"a\"b":1}`, map[string]string{}, false},
		{`[1]`, map[string]string{}, false},
		{`"x"`, map[string]string{}, false},
	}
	for _, c := range cases {
		got, _, ok := members([]byte(c.in))
		if ok != c.ok || len(got) != len(c.want) {
			t.Errorf("%s: %v %v, want %v %v", c.in, got, ok, c.want, c.ok)
			continue
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%s: %s = %s, want %s", c.in, k, got[k], v)
			}
		}
	}
	var elems []string
	if !Elements([]byte(` [1, "a,b" ,[2,3],{"x":"]"} ] `), func(e []byte) bool { elems = append(elems, string(e)); return true }) || len(elems) != 4 || elems[2] != "[2,3]" || elems[3] != `{"x":"]"}` {
		t.Errorf("Elements: %q", elems)
	}
	out := make([]string, 2)
	if !Object([]byte(`{"A":"1","b":"2","a":"3"}`), []string{"a", "b"}, out) || out[0] != "3" || out[1] != "2" {
		t.Errorf("Object: %q", out)
	}
	if Object([]byte(`{"a":1}`), []string{"a"}, out) {
		t.Error("Object read a number as a string")
	}
}

// FuzzMembers: on any valid object with plain keys, Members hands out what
// encoding/json reads; on anything at all it returns.
func FuzzMembers(f *testing.F) {
	f.Add(`{"a":1,"b":[1,2,{"c":"}"}],"d":"x\"y"}`)
	f.Add(`{"a":{"b":{"c":[]}}}`)
	f.Add(`{"a"`)
	f.Fuzz(func(t *testing.T, s string) {
		got, order, ok := members([]byte(s))
		Elements([]byte(s), func([]byte) bool { return true })
		if !json.Valid([]byte(s)) || !ok {
			return
		}
		var want map[string]json.RawMessage
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatalf("%q: Members read it, encoding/json: %v", s, err)
		}
		seen := map[string]bool{}
		for _, k := range order {
			for _, c := range []byte(k) {
				if c >= 0x80 {
					return // encoding/json replaces invalid UTF-8 in keys: callers take such keys slowly
				}
			}
			seen[k] = true
		}
		if len(seen) != len(want) {
			t.Fatalf("%q: keys %v, encoding/json %d", s, order, len(want))
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || !bytes.Equal([]byte(g), v) {
				t.Fatalf("%q: %s = %q, encoding/json %q", s, k, g, v)
			}
		}
	})
}
