// Package queue is syncagent's durable storage: the satellite's datafile and
// outbox, and the primary's central datafile, central log, per-site queues and
// site registry. It is the only package that imports buntdb. The primary's
// replication model (docs/replication.md) lives here too: Decide turns a push
// into a Plan on any backend (queue/pg applies plans in PostgreSQL).
//
// Every commit is fsynced (SyncPolicy Always). BuntDB is not atomic across
// power loss for a multi-key transaction (a torn tail is replayed command by
// command), so anything that must change together lives in one value, or is
// re-derived on open from a single intent key written first.
//
// One BuntDB file per role (Local for a satellite, Central for the primary):
//
//	rec:<table>:<id>      the datafile; on a satellite the value also holds
//	                      the record's outbox state (pending seq), so a local
//	                      write and its outbox entry are one key; on the
//	                      primary it holds the current copy, its version,
//	                      owner, holders, parent and last change per site
//	aside:<table>:<id>    satellite: records taken out of the outbox
//	cur:<name>, meta:<k>  satellite: cursors and small blobs
//	clog:<version>        primary: central log, one entry per record
//	q:<site>:<table>:<id> primary: per-site queues, one entry per record,
//	                      ordered by an index over the version that queued it
//	inbox:<version>       primary: the plan of a change being applied
//	kid:<table>:<n>:<id>:<child table>:<child id>
//	                      primary: which child rows belong to a parent
//	site:<id>             primary: site registry
//	sys:*                 counters, epoch, membership, recovery note
//
// Opening a file first reads it strictly (scan.go): a torn tail is cut, a
// garbage tail is cut after the file is copied to <path>.corrupt-<time>, and
// a file corrupt in the middle is copied there and replaced by a fresh one
// holding what could be read (recover.go). Local and Central report that
// through Recovered. BuntDB's own shrink is off; compaction (store.go)
// fsyncs its temp file before renaming it over the datafile.
package queue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"syncagent/jsonscan"
)

// Action is what a record does to the datafile.
type Action string

// The actions of sync API v5. Insert and Update both mean upsert.
const (
	Insert Action = "insert"
	Update Action = "update"
	Delete Action = "delete"
	Merge  Action = "merge"
)

// ParseAction accepts an action in any letter case ("Insert" as the reference
// client sends it) and returns its canonical form.
func ParseAction(s string) (Action, error) {
	switch a := Action(strings.ToLower(s)); a {
	case Insert, Update, Delete, Merge:
		return a, nil
	}
	return "", fmt.Errorf("unknown action %q (want insert, update, delete or merge)", s)
}

// Record is one change to one row of one table.
type Record struct {
	Table  string
	ID     string
	Action Action
	// Data is the row as a JSON object; empty on delete. A merge carries
	// {"mergeIdToKeep": …, "mergeIdToDelete": …}.
	Data json.RawMessage
}

// StoreField is the key inside Data that names the store a record belongs to.
const StoreField = "store_ID"

// StoreID returns the store this record belongs to, or "" for central data
// (data without a store, read by every site).
func (r Record) StoreID() string {
	if len(r.Data) == 0 {
		return ""
	}
	var probe map[string]json.RawMessage
	if json.Unmarshal(r.Data, &probe) != nil {
		return ""
	}
	var s string
	if raw, ok := probe[StoreField]; !ok || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// MergeIDs returns the ids a merge keeps and deletes.
func (r Record) MergeIDs() (keep, drop string, err error) {
	var m struct {
		Keep string `json:"mergeIdToKeep"`
		Drop string `json:"mergeIdToDelete"`
	}
	if err := json.Unmarshal(r.Data, &m); err != nil {
		return "", "", fmt.Errorf("merge %s/%s: %w", r.Table, r.ID, err)
	}
	if m.Keep == "" || m.Drop == "" {
		return "", "", fmt.Errorf("merge %s/%s: mergeIdToKeep and mergeIdToDelete are both required", r.Table, r.ID)
	}
	return m.Keep, m.Drop, nil
}

// Validate reports what is wrong with a record, in words a caller can act on.
func (r Record) Validate() error {
	if err := r.validateShape(); err != nil {
		return err
	}
	if len(r.Data) > 0 && r.Action != Delete && !isObject(r.Data) {
		return fmt.Errorf("record %s/%s: recordData must be a JSON object", r.Table, r.ID)
	}
	return nil
}

// isObject reports whether data is one JSON object (a scan, no decoding).
func isObject(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return false
	}
	valid, _ := jsonscan.Check(t)
	return valid
}

// validateShape is Validate without looking into the data.
func (r Record) validateShape() error {
	switch {
	case r.Table == "":
		return fmt.Errorf("record has no table name")
	case r.ID == "":
		return fmt.Errorf("record in table %q has no record id", r.Table)
	case strings.ContainsAny(r.Table, ":\x00") || strings.ContainsAny(r.ID, "\x00"):
		return fmt.Errorf("record %q/%q: table name may not contain ':' or NUL", r.Table, r.ID)
	case hasControl(r.Table) || hasControl(r.ID):
		return fmt.Errorf("record %q/%q: table name and record id may not contain control characters", r.Table, r.ID)
	}
	if _, err := ParseAction(string(r.Action)); err != nil {
		return fmt.Errorf("record %s/%s: %w", r.Table, r.ID, err)
	}
	if r.Action == Merge {
		if _, _, err := r.MergeIDs(); err != nil {
			return err
		}
	}
	return nil
}

// hasControl reports whether s holds an ASCII control character. Keys never
// do, so the datafile's framing (CR LF) can never appear inside one.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}
