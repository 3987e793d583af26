package syncapi

import (
	"encoding/json"
	"reflect"
	"testing"
)

var pushSamples = []string{
	`{"queueLength":2,"data":[{"syncOutId":"1","tableName":"item","recordId":"I1","action":"Update","recordData":{"ID":"I1","name":"x"}},{"syncOutId":"2","tableName":"trans_line","recordId":"L1","action":"Delete"}]}`,
	`{"queueLength":0,"data":[]}`,
	` { "data" : [ { "syncOutId" : "a" , "recordData" : [1, 2] } ] , "queueLength" : 5 } `,
	`{"QUEUELENGTH":1,"DATA":[{"SYNCOUTID":"x","extra":{"a":[1,{"b":"}"}]}}]}`,
	`{"data":[{"syncOutId":"a\u00e9"}]}`,
	`{"data":[{"syncOutId":"é"}]}`,
	`{"data":null}`,
	`{"data":[null]}`,
	`{"data":[{"recordData":null}]}`,
	`{"data":[{"syncOutId":1}]}`,
	`{"queueLength":1.5}`,
	`{"queueLength":"1"}`,
	`{"data":[{"syncOutId":"a"}],"data":[{"tableName":"t"}]}`,
	`{"data":[{"syncOutId":"a","syncOutId":"b"}]}`,
	`{"d\u0061ta":[{"syncOutId":"a"}]}`,
	`{"queueLength":99999999999999999999}`,
	`[]`,
	`{"data":{}}`,
	`{}`,
}

// TestDecodePush_matchesUnmarshal: the fast read of a pushed batch gives
// encoding/json's answer whenever it answers.
func TestDecodePush_matchesUnmarshal(t *testing.T) {
	fast := 0
	for _, s := range pushSamples {
		var got Push
		if !decodePush([]byte(s), &got) {
			continue
		}
		fast++
		var want Push
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Errorf("%s: fast read it, encoding/json says %v", s, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\nfast %+v\njson %+v", s, got, want)
		}
	}
	if fast < 5 {
		t.Errorf("the fast path read only %d of the samples", fast)
	}
}

func FuzzFastPush(f *testing.F) {
	for _, s := range pushSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var got Push
		if !decodePush([]byte(s), &got) {
			return
		}
		var want Push
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatalf("%q: fast read it, encoding/json says %v", s, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nfast %+v\njson %+v", s, got, want)
		}
	})
}
