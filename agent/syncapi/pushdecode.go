package syncapi

import (
	"bytes"
	"strconv"

	"syncagent/jsonscan"
)

// decodePush reads a pushed batch (POST queued_records) into p as
// json.Unmarshal would, without reflection, for the body a client sends: a
// third of the primary's CPU per record went into decoding it. Anything
// unusual — an escaped or non-ASCII key, a member given twice where
// encoding/json would merge, a null, a value of another kind — reports
// false, and the caller decodes with encoding/json, so every answer
// (errors included) stays encoding/json's (FuzzFastPush).
func decodePush(body []byte, p *Push) bool {
	if valid, _ := jsonscan.Check(body); !valid {
		return false
	}
	var out Push
	seenData := false
	ok := jsonscan.Members(body, func(key []byte, escaped bool, v []byte) bool {
		if escaped || !ascii(key) {
			return false
		}
		switch {
		case bytes.EqualFold(key, []byte("queueLength")):
			n, err := strconv.Atoi(string(v))
			if err != nil {
				return false
			}
			out.QueueLength = n
		case bytes.EqualFold(key, []byte("data")):
			if seenData || v[0] != '[' {
				return false
			}
			seenData = true
			out.Data = make([]QueuedRecord, 0, bytes.Count(v, []byte(`"syncOutId"`)))
			return jsonscan.Elements(v, func(e []byte) bool {
				q, ok := decodeQueued(e)
				out.Data = append(out.Data, q)
				return ok
			})
		}
		return true
	})
	if ok {
		*p = out
	}
	return ok
}

// decodeQueued reads one pushed record; false: ask encoding/json.
func decodeQueued(e []byte) (QueuedRecord, bool) {
	var q QueuedRecord
	ok := jsonscan.Members(e, func(key []byte, escaped bool, v []byte) bool {
		if escaped || !ascii(key) {
			return false
		}
		var dst *string
		switch {
		case bytes.EqualFold(key, []byte("syncOutId")):
			dst = &q.SyncOutID
		case bytes.EqualFold(key, []byte("tableName")):
			dst = &q.TableName
		case bytes.EqualFold(key, []byte("recordId")):
			dst = &q.RecordID
		case bytes.EqualFold(key, []byte("action")):
			dst = &q.Action
		case bytes.EqualFold(key, []byte("recordData")):
			if string(v) == "null" {
				return false
			}
			q.RecordData = bytes.Clone(v)
			return true
		default:
			return true
		}
		s, plain := jsonscan.PlainString(v)
		*dst = s
		return plain
	})
	return q, ok
}

func ascii(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
