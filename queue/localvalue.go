package queue

import (
	"encoding/json"
	"fmt"
	"strconv"

	"syncagent/jsonscan"
)

// localValue is the value of a satellite's rec:<table>:<id> key: the record
// and its outbox state in ONE key, so a local write and its outbox entry are
// atomic across power loss by construction.
type localValue struct {
	Pending uint64 // outbox seq; 0 = nothing to push
	Version uint64 // bumped on every change of the key
	// Gen is the datafile's generation when the key was last written by a
	// local write, an apply or a push (see Local.Generation): a clean
	// re-initialisation removes what an older generation left behind.
	Gen    uint64
	Action Action
	Tomb   bool   // a delete or a merge that removed this id: reads as absent
	PushID string // id of the record to push when it is not the key's (a merge)
	Data   json.RawMessage
}

// localValueJSON fixes the field order and format: the value starts with
// {"pending":"<20 digits>" (files written before the outbox was kept in
// memory were ordered by that prefix; appendTo writes the same bytes).
type localValueJSON struct {
	Pending string          `json:"pending"`
	Version uint64          `json:"version"`
	Gen     uint64          `json:"gen,omitempty"`
	Action  Action          `json:"action"`
	Tomb    bool            `json:"tomb,omitempty"`
	PushID  string          `json:"rid,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (v localValue) encode() (string, error) {
	return string(v.appendTo(make([]byte, 0, 96+len(v.PushID)+len(v.Data)))), nil
}

// appendTo appends v as encoding/json writes localValueJSON (marshal;
// TestLocalValue_encodeMatchesMarshal), without reflection: it runs once
// per record per write.
func (v localValue) appendTo(b []byte) []byte {
	b = append(b, `{"pending":"`...)
	b = appendPad(b, v.Pending)
	b = append(b, `","version":`...)
	b = strconv.AppendUint(b, v.Version, 10)
	if v.Gen != 0 {
		b = append(b, `,"gen":`...)
		b = strconv.AppendUint(b, v.Gen, 10)
	}
	b = append(b, `,"action":`...)
	b = appendString(b, string(v.Action))
	if v.Tomb {
		b = append(b, `,"tomb":true`...)
	}
	if v.PushID != "" {
		b = append(b, `,"rid":`...)
		b = appendString(b, v.PushID)
	}
	if len(v.Data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, v.Data...) // compact already (normalize)
	}
	return append(b, '}')
}

// decodeLocal reads a rec: value. Values are JSON that json.Valid accepted
// (on open) or that encode wrote; the members are read with jsonscan, and
// anything unusual (an escaped string, an unknown member) goes to
// encoding/json, so a value reads the same either way.
func decodeLocal(s string) (localValue, error) { return decodeLocalBytes([]byte(s)) }

// decodeLocalBytes is decodeLocal of b; the value's Data is a slice of b.
func decodeLocalBytes(b []byte) (localValue, error) {
	var v localValue
	var pending string
	plain := jsonscan.Members(b, func(key []byte, escaped bool, val []byte) bool {
		var ok bool
		switch string(key) {
		case "pending":
			pending, ok = jsonscan.PlainString(val)
			ok = ok && len(pending) == seqWidth
		case "version":
			v.Version, ok = plainUint(val)
		case "gen":
			v.Gen, ok = plainUint(val)
		case "action":
			var a string
			a, ok = jsonscan.PlainString(val)
			v.Action = Action(a)
		case "tomb":
			v.Tomb, ok = string(val) == "true", string(val) == "true" || string(val) == "false"
		case "rid":
			v.PushID, ok = jsonscan.PlainString(val)
		case "data":
			if string(val) != "null" {
				v.Data = val
			}
			ok = true
		}
		return ok && !escaped
	})
	if !plain {
		return decodeLocalSlow(string(b))
	}
	p, err := parseUint(pending)
	if err != nil {
		return localValue{}, fmt.Errorf("bad pending seq %q", pending)
	}
	v.Pending = p
	if _, err := ParseAction(string(v.Action)); err != nil {
		return localValue{}, err
	}
	return v, nil
}

// plainUint reads a JSON number that is a plain unsigned integer.
func plainUint(v []byte) (uint64, bool) {
	n, err := strconv.ParseUint(string(v), 10, 64)
	return n, err == nil
}

// decodeLocalSlow is decodeLocal by encoding/json.
func decodeLocalSlow(s string) (localValue, error) {
	var j localValueJSON
	if err := json.Unmarshal([]byte(s), &j); err != nil {
		return localValue{}, err
	}
	p, err := parseUint(j.Pending)
	if err != nil || len(j.Pending) != seqWidth {
		return localValue{}, fmt.Errorf("bad pending seq %q", j.Pending)
	}
	if _, err := ParseAction(string(j.Action)); err != nil {
		return localValue{}, err
	}
	return localValue{p, j.Version, j.Gen, j.Action, j.Tomb, j.PushID, j.Data}, nil
}

// live reports whether the key holds a readable record.
func (v localValue) live() bool { return !v.Tomb }

// outboxRecord is the record to push for this key.
func (v localValue) outboxRecord(table, id string) Record {
	if v.PushID != "" {
		id = v.PushID
	}
	return Record{Table: table, ID: id, Action: v.Action, Data: v.Data}
}
