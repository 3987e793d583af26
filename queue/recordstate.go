package queue

import (
	"encoding/json"
	"strconv"
	"strings"
)

// A record's state on the primary (rec:<table>:<id>) is a JSON object whose
// first member is the length of its data and whose last is the data:
//
//	{"n":<len(data)>,"v":…,"a":…,…,"d":<data>}
//
// so reading it parses only the small part before the data, and writing it
// copies the data as it is: the data was validated and compacted once when
// it arrived (Record.normalize), and encoding/json would scan it again on
// every read and write (a third of the primary's CPU per pushed record). It
// is still one JSON object with the same members, so the file's check at
// open (json.Valid) and intents decoded by encoding/json read it unchanged;
// values written before (no "n") are read with encoding/json.
const (
	stateLenPrefix = `{"n":`
	stateDataKey   = `,"d":`
)

// encodeRecordState encodes v as above.
func encodeRecordState(v RecordState) ([]byte, error) {
	data := v.Data
	v.Data = nil
	meta, err := marshal(v)
	if err != nil {
		return nil, err
	}
	if len(data) == 0 {
		return meta, nil
	}
	b := make([]byte, 0, len(meta)+len(data)+32)
	b = append(b, stateLenPrefix...)
	b = strconv.AppendInt(b, int64(len(data)), 10)
	if len(meta) > 2 { // more members than none
		b = append(b, ',')
		b = append(b, meta[1:len(meta)-1]...)
	}
	b = append(b, stateDataKey...)
	b = append(b, data...)
	return append(b, '}'), nil
}

// decodeRecordState decodes a value written by encodeRecordState (or, the
// slow way, by encoding/json). The data is a copy of s's.
func decodeRecordState(s string, v *RecordState) error {
	*v = RecordState{}
	meta, data, ok := splitRecordState(s)
	if !ok {
		return json.Unmarshal([]byte(s), v)
	}
	if err := json.Unmarshal(meta, v); err != nil {
		return err
	}
	if data != "" {
		v.Data = json.RawMessage(data)
	}
	return nil
}

// splitRecordState finds the members before the data and the data itself
// in a value encodeRecordState wrote; ok is false for any other value.
func splitRecordState(s string) (meta []byte, data string, ok bool) {
	if !strings.HasPrefix(s, stateLenPrefix) || !strings.HasSuffix(s, "}") {
		return nil, "", false
	}
	digits := len(stateLenPrefix)
	for digits < len(s) && s[digits] >= '0' && s[digits] <= '9' {
		digits++
	}
	n, err := strconv.Atoi(s[len(stateLenPrefix):digits])
	end := len(s) - 1
	start := end - n
	if err != nil || n <= 0 || start-len(stateDataKey) < digits || s[start-len(stateDataKey):start] != stateDataKey {
		return nil, "", false
	}
	head := s[:start-len(stateDataKey)]
	meta = make([]byte, 0, len(head)+1)
	meta = append(meta, head...)
	meta = append(meta, '}')
	return meta, s[start:end], true
}
