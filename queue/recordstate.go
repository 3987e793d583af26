package queue

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"syncagent/jsonscan"
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

// encodeRecordState encodes v as above, as a string built in place (the
// value is written into the datafile and the intent as it is: no copy).
func encodeRecordState(v RecordState) string {
	var meta [160]byte
	m := appendRecordMeta(meta[:0], v, len(v.Data))
	var b strings.Builder
	b.Grow(len(m) + len(stateDataKey) + len(v.Data) + 1)
	b.Write(m)
	if len(v.Data) > 0 {
		b.WriteString(stateDataKey)
		b.Write(v.Data)
	}
	b.WriteByte('}')
	return b.String()
}

// decodeRecordState decodes a value written by encodeRecordState (or, the
// slow way, by encoding/json). The data is a copy of s's.
func decodeRecordState(s string, v *RecordState) error {
	*v = RecordState{}
	meta, data, ok := splitRecordState(s)
	if !ok {
		return json.Unmarshal([]byte(s), v)
	}
	if !scanRecordMeta(meta, v) {
		*v = RecordState{}
		if err := json.Unmarshal(meta, v); err != nil {
			return err
		}
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

// scanRecordMeta reads the members before the data the way json.Unmarshal
// would, without reflection, for the values encodeRecordState writes; false
// (anything else: an escape, another kind of value, a key given twice):
// ask encoding/json (FuzzDecodeRecordState). meta is trusted to be JSON as
// far as its structure goes: the datafile's open-time check saw it.
func scanRecordMeta(meta []byte, v *RecordState) bool {
	if valid, _ := jsonscan.Check(meta); !valid {
		return false
	}
	var seen uint16 // the known members met so far, by their bit in metaKeys
	return jsonscan.Members(meta, func(key []byte, escaped bool, val []byte) bool {
		k := string(key) // no allocation: only compared
		bit := metaKeyBit(k)
		if escaped || bit == 0 || seen&bit != 0 {
			return false // unknown, escaped or given twice: encoding/json decides
		}
		seen |= bit
		switch k {
		case "n":
			return true
		case "v":
			n, err := strconv.ParseUint(string(val), 10, 64)
			v.Version = n
			return err == nil
		case "a", "o":
			s, ok := jsonscan.PlainString(val)
			if k == "a" {
				v.Action = Action(s)
			} else {
				v.Owner = s
			}
			return ok
		case "x", "c", "held":
			b, ok := plainBool(val)
			switch k {
			case "x":
				v.Deleted = b
			case "c":
				v.Central = b
			default:
				v.Held = b
			}
			return ok
		case "h":
			v.Holders = []int{}
			return jsonscan.Elements(val, func(e []byte) bool {
				n, err := strconv.Atoi(string(e))
				v.Holders = append(v.Holders, n)
				return err == nil
			})
		case "p":
			var f [2]string
			if !jsonscan.Object(val, []string{"t", "i"}, f[:]) || !exactKeys(val, "t", "i") {
				return false
			}
			v.Parent = &Ref{Table: f[0], ID: f[1]}
			return true
		case "f":
			v.From = map[int]string{}
			return jsonscan.Members(val, func(sk []byte, esc bool, sv []byte) bool {
				site, err := strconv.Atoi(string(sk))
				s, ok := jsonscan.PlainString(sv)
				if esc || err != nil || !ok || strconv.Itoa(site) != string(sk) {
					return false
				}
				if _, dup := v.From[site]; dup {
					return false
				}
				v.From[site] = s
				return true
			})
		}
		return false // a member this reader does not know: encoding/json decides
	})
}

// metaKeys are the members scanRecordMeta reads.
var metaKeys = [...]string{"n", "v", "a", "o", "x", "c", "held", "h", "p", "f"}

// metaKeyBit is k's bit among metaKeys, 0 for any other key.
func metaKeyBit(k string) uint16 {
	for i, m := range metaKeys {
		if k == m {
			return 1 << i
		}
	}
	return 0
}

func plainBool(b []byte) (bool, bool) {
	switch string(b) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// exactKeys reports whether the object b has only the keys named, each at
// most once and spelled exactly (encoding/json would fold other spellings).
func exactKeys(b []byte, keys ...string) bool {
	seen := map[string]bool{}
	return jsonscan.Members(b, func(k []byte, esc bool, _ []byte) bool {
		s := string(k)
		if esc || seen[s] || !slices.Contains(keys, s) {
			return false
		}
		seen[s] = true
		return true
	})
}
