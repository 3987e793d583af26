package queue

import (
	"testing"
)

// TestJSONEnc_matchesMarshal: the hand-written encoders write exactly what
// encoding/json writes for the same values.
func TestJSONEnc_matchesMarshal(t *testing.T) {
	states := []RecordState{
		{},
		{Version: 1, Action: Update},
		{Version: 1 << 63, Action: Merge, Deleted: true, Owner: "store-a", Central: true, Holders: []int{2, 3, -1}, Parent: &Ref{"transact", "t\"1"}, Held: true, From: map[int]string{10: "b", 2: "a\n"}},
		{Owner: "café <b>&\u2028", Parent: &Ref{}, From: map[int]string{}},
		{Owner: "bad \xff utf-8", Holders: []int{}},
	}
	for _, v := range states {
		want, _ := marshal(v)
		got := append(appendRecordMeta(nil, v, 0), '}')
		if string(got) != string(want) {
			t.Errorf("record meta:\n got %s\nwant %s", got, want)
		}
	}
	for _, q := range []QueueOp{{}, {Site: 2, Table: "item_line", ID: "r1", Ord: 9}, {Site: -1, Table: "t\\", ID: "é", Ord: 1 << 63, Del: true, Remove: true}} {
		want, _ := marshal(q)
		if got := appendQueueOp(nil, q); string(got) != string(want) {
			t.Errorf("queue op:\n got %s\nwant %s", got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "quo\"te", "back\\slash", "\x00\x1f", "é", "\xff", "<>&", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	})
}
