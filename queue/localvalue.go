package queue

import (
	"encoding/json"
	"fmt"
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

// localValueJSON fixes the field order: the value starts with
// {"pending":"<20 digits>" so the outbox index compares a fixed prefix.
type localValueJSON struct {
	Pending string          `json:"pending"`
	Version uint64          `json:"version"`
	Gen     uint64          `json:"gen,omitempty"`
	Action  Action          `json:"action"`
	Tomb    bool            `json:"tomb,omitempty"`
	PushID  string          `json:"rid,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// pendingPrefixLen is len(`{"pending":"`) + seqWidth.
const pendingPrefixLen = len(`{"pending":"`) + seqWidth

func (v localValue) encode() (string, error) {
	b, err := marshal(localValueJSON{pad(v.Pending), v.Version, v.Gen, v.Action, v.Tomb, v.PushID, v.Data})
	return string(b), err
}

func decodeLocal(s string) (localValue, error) {
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

// pendingPrefix is the part of a value the outbox index orders by.
func pendingPrefix(v string) string {
	if len(v) > pendingPrefixLen {
		return v[:pendingPrefixLen]
	}
	return v
}

// lessPending orders rec: values by pending seq (the outbox index).
func lessPending(a, b string) bool { return pendingPrefix(a) < pendingPrefix(b) }

// firstPending is the smallest index value with a non-zero pending seq.
var firstPending = `{"pending":"` + pad(1)
