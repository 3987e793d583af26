package queue

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestRecordState_roundTrip protects the primary's record values: what
// encodeRecordState writes reads back the same with the fast split and with
// encoding/json (intents and the open-time check read it that way), and
// values written before by encoding/json still read.
func TestRecordState_roundTrip(t *testing.T) {
	cases := []struct {
		name string
		v    RecordState
	}{
		{"data", RecordState{Version: 7, Action: Update, Owner: "s1", Holders: []int{2, 3}, From: map[int]string{2: "x-1"}, Data: json.RawMessage(`{"store_ID":"s1","n":1}`)}},
		{"data holding the data key", RecordState{Version: 8, Action: Update, Data: json.RawMessage(`{"d":{"n":3},",\"d\":":"}"}`)}},
		{"no data", RecordState{Version: 9, Action: Delete, Deleted: true}},
		{"only data", RecordState{Data: json.RawMessage(`[1,2]`)}},
		{"scalar data", RecordState{Version: 1, Action: Update, Data: json.RawMessage(`12345`)}},
		{"parent and held", RecordState{Version: 2, Action: Update, Parent: &Ref{"transact", "t1"}, Held: true, Data: json.RawMessage(`{"transaction_ID":"t1"}`)}},
		{"every member", RecordState{Version: 1 << 60, Action: Merge, Deleted: true, Owner: "store-a", Central: true, Holders: []int{2, 30, 400}, Parent: &Ref{"requisition", "R9"}, Held: true, From: map[int]string{2: "9f2c", 30: "x-1"}, Data: json.RawMessage(`{"a":[1,{"b":null}]}`)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			enc := encodeRecordState(c.v)
			if !json.Valid([]byte(enc)) {
				t.Fatalf("not JSON: %s", enc)
			}
			var fast, slow RecordState
			if err := decodeRecordState(enc, &fast); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(enc), &slow); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(fast, c.v) || !reflect.DeepEqual(slow, c.v) {
				t.Fatalf("%s\nfast %+v\nslow %+v\nwant %+v", enc, fast, slow, c.v)
			}
			meta, _, split := splitRecordState(enc)
			if split != (len(c.v.Data) > 0) {
				t.Errorf("fast path taken %v for %s", split, enc)
			}
			if split {
				var m RecordState
				if !scanRecordMeta(meta, &m) {
					t.Errorf("the members before the data were read by encoding/json: %s", meta)
				}
			}
			old, _ := marshal(c.v) // a value written before this format
			var got RecordState
			if err := decodeRecordState(string(old), &got); err != nil || !reflect.DeepEqual(got, c.v) {
				t.Fatalf("old value %s read as %+v (%v)", old, got, err)
			}
		})
	}
}

// FuzzDecodeRecordState: whatever a datafile holds, the fast read never
// panics and, for a JSON value, agrees with encoding/json.
func FuzzDecodeRecordState(f *testing.F) {
	for _, s := range []string{`{"n":2,"v":7,"a":"Update","x":true,"o":"s1","c":true,"h":[2,3],"p":{"t":"transact","i":"t1"},"held":true,"f":{"2":"x-1","10":"ab"},"d":{}}`, `{"n":2,"v":1,"d":{}}`, `{"n":3,"d":[1]}`, `{"n":99,"d":1}`, `{"n":1,"d":1}`, `{"v":1,"a":"Update","d":{"a":1}}`, `{"n":-1,"d":1}`, `{"n":5,"x":",\"d\":1}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var fast RecordState
		ferr := decodeRecordState(s, &fast)
		if !json.Valid([]byte(s)) {
			return
		}
		var slow RecordState
		serr := json.Unmarshal([]byte(s), &slow)
		if (ferr == nil) != (serr == nil) {
			t.Fatalf("%q: fast %v, encoding/json %v", s, ferr, serr)
		}
		if ferr == nil && !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q:\nfast %+v\nslow %+v", s, fast, slow)
		}
	})
}
