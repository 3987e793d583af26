package queue

import (
	"slices"
	"strconv"
)

// Hand-written encoders for the values written once per record per push
// (a record's state, its queue entries): encoding/json's reflection was a
// fifth of the primary's CPU per record. They write what encoding/json
// writes for the same structs (TestJSONEnc_matchesMarshal), so readers do
// not care which wrote a value.

// appendString appends s as a JSON string, as encoding/json writes it with
// HTML escaping off (marshal).
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			q, _ := marshal(s) // escapes, and invalid UTF-8 made valid
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendMember appends ,"key": (the comma only after the opening brace's
// first member).
func appendMember(b []byte, key string) []byte {
	if b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

// appendRecordMeta appends v without its data as encoding/json would
// encode RecordState (its omitempty rules), with "n" first when n > 0.
func appendRecordMeta(b []byte, v RecordState, n int) []byte {
	b = append(b, '{')
	if n > 0 {
		b = appendMember(b, "n")
		b = strconv.AppendInt(b, int64(n), 10)
	}
	b = appendMember(b, "v")
	b = strconv.AppendUint(b, v.Version, 10)
	b = appendMember(b, "a")
	b = appendString(b, string(v.Action))
	if v.Deleted {
		b = appendMember(b, "x")
		b = append(b, "true"...)
	}
	if v.Owner != "" {
		b = appendMember(b, "o")
		b = appendString(b, v.Owner)
	}
	if v.Central {
		b = appendMember(b, "c")
		b = append(b, "true"...)
	}
	if len(v.Holders) > 0 {
		b = appendMember(b, "h")
		b = append(b, '[')
		for i, h := range v.Holders {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(h), 10)
		}
		b = append(b, ']')
	}
	if v.Parent != nil {
		b = appendMember(b, "p")
		b = append(b, `{"t":`...)
		b = appendString(b, v.Parent.Table)
		b = append(b, `,"i":`...)
		b = appendString(b, v.Parent.ID)
		b = append(b, '}')
	}
	if v.Held {
		b = appendMember(b, "held")
		b = append(b, "true"...)
	}
	if len(v.From) > 0 {
		b = appendMember(b, "f")
		b = appendMarks(b, v.From)
	}
	return b
}

// appendMarks appends from as encoding/json writes a map[int]string: keys
// sorted as strings ("10" before "2").
func appendMarks(b []byte, from map[int]string) []byte {
	keys := make([]string, 0, len(from))
	for site := range from {
		keys = append(keys, strconv.Itoa(site))
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, '"', ':')
		site, _ := strconv.Atoi(k)
		b = appendString(b, from[site])
	}
	return append(b, '}')
}

// appendQueueOp appends q as encoding/json would encode QueueOp.
func appendQueueOp(b []byte, q QueueOp) []byte {
	b = append(b, `{"s":`...)
	b = strconv.AppendInt(b, int64(q.Site), 10)
	b = append(b, `,"t":`...)
	b = appendString(b, q.Table)
	b = append(b, `,"i":`...)
	b = appendString(b, q.ID)
	b = append(b, `,"o":`...)
	b = strconv.AppendUint(b, q.Ord, 10)
	if q.Del {
		b = append(b, `,"x":true`...)
	}
	if q.Remove {
		b = append(b, `,"rm":true`...)
	}
	return append(b, '}')
}
