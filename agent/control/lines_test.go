package control

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestDecodeLines protects the batch format: what `record list` prints
// reads back, and every bad line is refused with its number and the fix.
func TestDecodeLines(t *testing.T) {
	good := `{"table":"stock","id":"s1","data":{"store_ID":"a","qty":1}}` + "\n" +
		"\n  \r\n" +
		`{"id":"s\u00e92","table":"stock","action":"Delete","data":{"x":1}}` + "\r\n" +
		` {"table":"stock","id":"s3","action":"update","data": {"a": [1, 2]}} `
	recs, lines, err := DecodeLines([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(recs), 3; got != want {
		t.Fatalf("%d records, want %d", got, want)
	}
	if recs[1].ID != "sé2" || recs[1].Action != "delete" || recs[1].Data != nil {
		t.Errorf("delete line read as %+v", recs[1])
	}
	if string(recs[2].Data) != `{"a": [1, 2]}` || recs[2].Action != "" {
		t.Errorf("update line read as %+v", recs[2])
	}
	if got, want := lines, []int{1, 4, 5}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("lines %v, want %v", got, want)
	}
	for _, c := range []struct{ body, want string }{
		{`{"table":"t","id":"1","data":{}}` + "\n" + `{"table":"t"`, "line 2: not JSON"},
		{`[1]`, "line 1: a record line is a JSON object"},
		{`{"table":"t","data":{}}`, `line 1: a record needs "table" and "id"`},
		{`{"table":"t","id":"1","data":[1]}`, "line 1: t/1: data must be a JSON object"},
		{`{"table":"t","id":"1"}`, "line 1: t/1: data must be a JSON object"},
		{`{"table":"t","id":1,"data":{}}`, "line 1: id must be a string, not 1"},
		{`{"table":"t","id":"1","data":{},"store":"a"}`, `line 1: unknown field "store"`},
		{`{"table":"t","id":"1","action":"merge","data":{}}`, `line 1: t/1: unknown action "merge"`},
		{`{"t\u0061ble":"t","id":"1","data":{}}`, "line 1: field name t\\u0061ble holds an escape"},
		{strings.Repeat(`{"table":"t","id":"1","data":{}}`+"\n", MaxBatchRecords+1), "line 10001: more than 10000 records in one batch"},
	} {
		_, _, err := DecodeLines([]byte(c.body))
		var le *LineError
		if !errors.As(err, &le) || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%.60q: %v, want %q…", c.body, err, c.want)
		}
	}
}

// FuzzDecodeLines: any body either reads as records that encoding/json
// reads the same way, or is refused with a line number inside the body.
func FuzzDecodeLines(f *testing.F) {
	f.Add(`{"table":"stock","id":"s1","data":{"store_ID":"a"}}` + "\n" + `{"table":"t","id":"x","action":"delete"}`)
	f.Add(`{"table":"t\u00e9","id":"\"","data":{"a":"\n"}}`)
	f.Add("\n\n{}\n")
	f.Add(`{"table":"t","id":"1","data":{},"table":"u"}`)
	f.Fuzz(func(t *testing.T, body string) {
		recs, lines, err := DecodeLines([]byte(body))
		n := strings.Count(body, "\n") + 1
		var le *LineError
		if err != nil {
			if !errors.As(err, &le) || le.Line < 1 || le.Line > n {
				t.Fatalf("%q: %v (want a LineError within %d lines)", body, err, n)
			}
			return
		}
		if len(recs) != len(lines) {
			t.Fatalf("%d records, %d line numbers", len(recs), len(lines))
		}
		all := strings.Split(body, "\n")
		for i, r := range recs {
			var want struct {
				Table, ID, Action string
				Data              json.RawMessage
			}
			if err := json.Unmarshal([]byte(all[lines[i]-1]), &want); err != nil {
				t.Fatalf("line %d read as %+v, encoding/json: %v", lines[i], r, err)
			}
			if r.Table != want.Table || r.ID != want.ID || r.Table == "" || r.ID == "" {
				t.Fatalf("line %d: got %q/%q, encoding/json %q/%q", lines[i], r.Table, r.ID, want.Table, want.ID)
			}
			if r.Action == "" && !json.Valid(r.Data) {
				t.Fatalf("line %d: data %q is not JSON", lines[i], r.Data)
			}
		}
	})
}
