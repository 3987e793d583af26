package syncapi

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"syncagent/queue"
)

// keyShape returns the object keys of a JSON value, recursively, so two
// documents can be compared field for field regardless of values.
func keyShape(t *testing.T, raw []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("bad JSON %s: %v", raw, err)
	}
	return shapeOf(v)
}

func shapeOf(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, val := range x {
			out[k] = shapeOf(val)
		}
		return out
	case []any:
		merged := map[string]any{}
		for _, e := range x {
			if m, ok := shapeOf(e).(map[string]any); ok {
				for k, val := range m {
					merged[k] = val
				}
			}
		}
		return merged
	default:
		return "value"
	}
}

// TestWire_matchesProtocolExamples protects the field names and casing of
// every body in PROTOCOL.md: decoding the example and encoding it again must
// give the same fields.
func TestWire_matchesProtocolExamples(t *testing.T) {
	cases := []struct {
		file string
		into any
	}{
		{"site.json", &SiteInfo{}},
		{"site_status.json", &SiteStatus{}},
		{"initialise.json", &InitialiseResponse{}},
		{"central_records.json", &CentralRecords{}},
		{"queued_records.json", &QueuedRecords{}},
		{"acknowledged_records.json", &Acknowledge{}},
		{"push.json", &Push{}},
		{"push_response.json", &PushResponse{}},
		{"error.json", &ErrorBody{}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, c.into); err != nil {
				t.Fatalf("decode: %v", err)
			}
			again, err := json.Marshal(c.into)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := keyShape(t, again), keyShape(t, raw); !reflect.DeepEqual(got, want) {
				t.Errorf("fields differ:\n got %v\nwant %v\n(%s)", got, want, again)
			}
		})
	}
}

// TestQueuedRecord_Record protects the action parsing: any letter case in,
// canonical out, and unknown actions refused.
func TestQueuedRecord_Record(t *testing.T) {
	cases := []struct {
		action string
		data   string
		want   queue.Action
		ok     bool
	}{
		{"insert", `{"store_ID":"s"}`, queue.Insert, true},
		{"Insert", `{"store_ID":"s"}`, queue.Insert, true},
		{"UPDATE", `{"a":1}`, queue.Update, true},
		{"delete", ``, queue.Delete, true},
		{"delete", `null`, queue.Delete, true},
		{"merge", `{"mergeIdToKeep":"a","mergeIdToDelete":"b"}`, queue.Merge, true},
		{"merge", `{}`, "", false},
		{"upsert", `{}`, "", false},
		{"insert", `[1,2]`, "", false},
	}
	for _, c := range cases {
		q := QueuedRecord{SyncOutID: "1", TableName: "t", RecordID: "r", Action: c.action}
		if c.data != "" {
			q.RecordData = json.RawMessage(c.data)
		}
		r, err := q.Record()
		if (err == nil) != c.ok {
			t.Errorf("%s %s: err = %v, want ok=%v", c.action, c.data, err, c.ok)
			continue
		}
		if c.ok && r.Action != c.want {
			t.Errorf("%s: action = %q, want %q", c.action, r.Action, c.want)
		}
	}
}

// TestFromRecord_deleteHasNoData protects the reference server's habit of
// leaving recordData out on delete.
func TestFromRecord_deleteHasNoData(t *testing.T) {
	b, _ := json.Marshal(FromRecord("x", queue.Record{Table: "t", ID: "r", Action: queue.Delete, Data: json.RawMessage(`{"a":1}`)}))
	if got, want := string(b), `{"syncOutId":"x","tableName":"t","recordId":"r","action":"delete"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
