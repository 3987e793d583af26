package control

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"syncagent/jsonscan"
)

// MaxBatchRecords bounds the records of one batch request (one commit);
// MaxBody bounds its bytes.
const MaxBatchRecords = 10000

// BatchResult is what a batch write did.
type BatchResult struct {
	Written  int `json:"written"`
	Inserted int `json:"inserted"`
	Updated  int `json:"updated"`
	Deleted  int `json:"deleted"`
}

// Count adds a record written with action ("insert", "update", "delete").
func (b *BatchResult) Count(action string) {
	b.Written++
	switch action {
	case "insert":
		b.Inserted++
	case "delete":
		b.Deleted++
	default:
		b.Updated++
	}
}

// LineError is a batch line that is not a record, or a record the agent
// refused; Line counts from 1. Status is the HTTP status to answer (0:
// 400 Bad Request).
type LineError struct {
	Line   int
	Msg    string
	Status int
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// BatchError is a record of a batch the agent refused: Index is its place
// in the batch (from 0), Status the HTTP status to answer.
type BatchError struct {
	Index  int
	Status int
	Msg    string
}

func (e *BatchError) Error() string { return e.Msg }

// DecodeLines reads a batch body: one record a line, as `syncagent record
// list` prints them ({"table", "id", "data"}), or {"table", "id", "action":
// "delete"} for a delete. "action" may also be "insert" or "update" (both
// mean write). Blank lines are skipped; lines holds the line number of
// each record. A line that is not a record is a *LineError.
func DecodeLines(body []byte) (recs []Record, lines []int, err error) {
	n := 0
	for len(body) > 0 {
		n++
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(recs) == MaxBatchRecords {
			return nil, nil, &LineError{Line: n, Msg: fmt.Sprintf("more than %d records in one batch: send the rest in another", MaxBatchRecords)}
		}
		r, err := decodeLine(line)
		if err != nil {
			return nil, nil, &LineError{Line: n, Msg: err.Error()}
		}
		recs, lines = append(recs, r), append(lines, n)
	}
	return recs, lines, nil
}

// decodeLine reads one record with jsonscan, asking encoding/json only
// about what is unusual (an escaped string) and to say what is wrong.
func decodeLine(line []byte) (Record, error) {
	if valid, _ := jsonscan.Check(line); !valid {
		var v any
		err := json.Unmarshal(line, &v)
		return Record{}, fmt.Errorf("not JSON: %v", err)
	}
	var r Record
	var bad error
	isObject := jsonscan.Members(line, func(key []byte, escaped bool, v []byte) bool {
		var dst *string
		switch k := string(key); {
		case escaped:
			bad = fmt.Errorf("field name %s holds an escape: write it plainly", key)
		case k == "table":
			dst = &r.Table
		case k == "id":
			dst = &r.ID
		case k == "action":
			dst = &r.Action
		case k == "data":
			r.Data = v
		default:
			bad = fmt.Errorf("unknown field %q (a record line has table, id, data and, for a delete, \"action\":\"delete\")", k)
		}
		if dst != nil {
			s, ok := jsonscan.PlainString(v)
			if !ok && (len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil) {
				bad = fmt.Errorf("%s must be a string, not %s", key, v)
			}
			*dst = s
		}
		return bad == nil
	})
	switch {
	case bad != nil:
		return Record{}, bad
	case !isObject:
		return Record{}, fmt.Errorf("a record line is a JSON object, e.g. {\"table\":\"item\",\"id\":\"i1\",\"data\":{…}}")
	case r.Table == "" || r.ID == "":
		return Record{}, fmt.Errorf("a record needs \"table\" and \"id\"")
	}
	switch strings.ToLower(r.Action) {
	case "delete":
		r.Action, r.Data = "delete", nil
	case "", "insert", "update":
		r.Action = ""
		if len(r.Data) == 0 || r.Data[0] != '{' {
			return Record{}, fmt.Errorf("%s/%s: data must be a JSON object", r.Table, r.ID)
		}
	default:
		return Record{}, fmt.Errorf("%s/%s: unknown action %q (leave it out to write, or \"delete\")", r.Table, r.ID, r.Action)
	}
	return r, nil
}
