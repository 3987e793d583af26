package queue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"syncagent/jsonscan"
)

// Key layout shared by both roles. Every value stored is JSON, so a value
// never holds a raw CR LF and a corrupt value is recognisable on open.
const (
	recPrefix    = "rec:"   // rec:<table>:<id> — the datafile, one key per record
	sysPrefix    = "sys:"   // internal counters and identity
	metaPrefix   = "meta:"  // caller's small blobs
	cursorPrefix = "cur:"   // caller's named cursors
	asidePrefix  = "aside:" // aside:<table>:<id> — satellite's poison records
	clogPrefix   = "clog:"  // clog:<version> — primary's central log
	queuePrefix  = "q:"     // q:<site>:<table>:<id> — primary's per-site queues, one entry per record
	inboxPrefix  = "inbox:" // inbox:<id> — primary's intent keys
	kidPrefix    = "kid:"   // kid:<table>:<len>:<id>:<child table>:<child id> — primary's child rows
	sitePrefix   = "site:"  // site:<id> — primary's site registry
	diagPrefix   = "diag:"  // diag:<id> — a site's diagnostics request, upload and last bundle
	seqWidth     = 20       // digits of a zero-padded uint64
	siteWidth    = 10       // digits of a zero-padded site id
)

func recKey(table, id string) string { return recPrefix + table + ":" + id }

// splitRecKey returns the table and id of a rec: key.
func splitRecKey(key string) (table, id string, ok bool) {
	rest, ok := strings.CutPrefix(key, recPrefix)
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, ":")
}

func pad(v uint64) string { return string(appendPad(nil, v)) }

// appendPad appends v zero-padded to seqWidth digits.
func appendPad(b []byte, v uint64) []byte { return appendDigits(b, v, seqWidth) }

// appendDigits appends the last width digits of v, zero-padded.
func appendDigits(b []byte, v uint64, width int) []byte {
	b = append(b, make([]byte, width)...)
	for i := len(b) - 1; i >= len(b)-width; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}

// padSite is site zero-padded to siteWidth digits (by hand: it is in
// every queue key, and fmt showed in the primary's profile).
func padSite(site int) string {
	if site < 0 || site >= 1e10 {
		return fmt.Sprintf("%0*d", siteWidth, site)
	}
	var d [siteWidth]byte
	return string(appendDigits(d[:0], uint64(site), siteWidth))
}

// marshal encodes v as compact JSON without HTML escaping, so record data
// comes back byte for byte as the caller wrote it (less insignificant space).
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// recordJSON is how a Record is stored inside the primary's log, queues and
// intents (an internal format, not the wire format).
type recordJSON struct {
	Table  string          `json:"t"`
	ID     string          `json:"i"`
	Action Action          `json:"a"`
	Data   json.RawMessage `json:"d,omitempty"`
}

func toJSON(r Record) recordJSON { return recordJSON(r) }

func (j recordJSON) record() Record { return Record(j) }

// normalize validates r and returns it in canonical form: lower-case action,
// compact data, no data on a delete.
func normalize(r Record) (Record, error) {
	if err := r.validateShape(); err != nil { // Compact below checks the data
		return Record{}, err
	}
	a, _ := ParseAction(string(r.Action))
	r.Action = a
	if a == Delete || len(bytes.TrimSpace(r.Data)) == 0 {
		r.Data = nil
		return r, nil
	}
	switch valid, compact := jsonscan.Check(r.Data); {
	case !valid:
		return Record{}, fmt.Errorf("record %s/%s: recordData must be a JSON object", r.Table, r.ID)
	case compact && r.Data[0] == '{':
		return r, nil // what apps and peers send: Compact would copy it unchanged
	}
	var b bytes.Buffer
	b.Grow(len(r.Data))
	if err := json.Compact(&b, r.Data); err != nil || b.Len() == 0 || b.Bytes()[0] != '{' {
		return Record{}, fmt.Errorf("record %s/%s: recordData must be a JSON object", r.Table, r.ID)
	}
	r.Data = json.RawMessage(b.Bytes())
	return r, nil
}

// targetID is the id of the record a change lands on: the record itself, or
// for a merge the record it deletes.
func targetID(r Record) string {
	if r.Action == Merge {
		if _, drop, err := r.MergeIDs(); err == nil {
			return drop
		}
	}
	return r.ID
}

// checkName refuses an empty name or one with control characters (cursor
// and meta names end up inside keys).
func checkName(kind, name string) error {
	if name == "" || hasControl(name) {
		return fmt.Errorf("invalid %s name %q", kind, name)
	}
	return nil
}

func formatUint(v uint64) string { return strconv.FormatUint(v, 10) }

func parseUint(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) }

// approxSize estimates the bytes r takes in a v5 JSON body.
func approxSize(syncOutID string, r Record) int {
	const overhead = len(`{"syncOutId":"","tableName":"","recordId":"","action":"","recordData":},`)
	return overhead + len(syncOutID) + len(r.Table) + len(r.ID) + len(r.Action) + max(len(r.Data), 2)
}

// validTable reports whether a table name can be looked up (the same rule
// Validate applies to writes), so "a:b" cannot read table "a".
func validTable(table string) bool {
	return table != "" && !strings.ContainsAny(table, ":\x00") && !hasControl(table)
}
