package queue

import (
	"encoding/json"
	"slices"
	"time"
)

// The primary's storage decides nothing about mSupply tables: the caller
// passes a Router that says, for each change, who owns the record and which
// sites must hold it. Central calls it with its lock held and the primary's
// current copies at hand, so a decision and the change it decides are one
// step in the primary's order.

// Ref names one record.
type Ref struct {
	Table string `json:"t"`
	ID    string `json:"i"`
}

// Current is the primary's copy of a record, as a Router sees it.
type Current struct {
	Exists  bool   // the primary has seen the record (it may be deleted)
	Deleted bool   // the last change deleted (or merged away) the record
	Version uint64 // the record's place in the primary's order of changes
	Owner   string // the store that owns the record; "" for central data
	Central bool   // central data, read by every site through the central log
	Holders []int  // the sites that hold the record (store data)
	Parent  *Ref   // the record belongs to this one (child rows)
	Held    bool   // the parent is not known yet, so the record is not routed
	Record  Record // the current copy (a delete when Deleted)
}

// Lookup returns the primary's copy of a record, including changes decided
// earlier in the same batch.
type Lookup func(table, id string) Current

// Route is a Router's decision about one change.
type Route struct {
	// Refuse, when not nil, refuses the change; nothing else is used.
	Refuse *Refusal
	// Owner is the store that owns the record after the change ("" central).
	Owner string
	// Central: central data, written to the central log.
	Central bool
	// Holders are the sites that must hold the record after the change,
	// the pushing site included when it must. A delete goes to every site
	// that held the record.
	Holders []int
	// Parent is the record this one belongs to (child rows). While the
	// parent is unknown, Held is set: the record is kept and routed once its
	// parent arrives, with the parent's owner and holders.
	Parent *Ref
	Held   bool
}

// Refusal says why a change was not accepted. Code is a v5 error code.
type Refusal struct {
	Code    string
	Message string
}

// Router decides who owns and who holds each record.
type Router interface {
	// Route decides a change pushed by site origin (0: the primary's own
	// write). cur is the primary's copy before the change.
	Route(origin int, r Record, cur Current, look Lookup) Route
	// Holders says which sites must hold a stored record under the current
	// site rows (used when the rows change).
	Holders(cur Current, look Lookup) []int
}

// centralValue is the value of the primary's rec:<table>:<id> key: the
// record's current copy and everything replication needs to know about it,
// in one key (so it changes atomically).
type RecordState struct {
	Version uint64          `json:"v"`
	Action  Action          `json:"a"`
	Deleted bool            `json:"x,omitempty"`
	Owner   string          `json:"o,omitempty"`
	Central bool            `json:"c,omitempty"`
	Holders []int           `json:"h,omitempty"`
	Parent  *Ref            `json:"p,omitempty"`
	Held    bool            `json:"held,omitempty"`
	From    map[int]string  `json:"f,omitempty"` // per site: its last accepted change, see fromMark
	Data    json.RawMessage `json:"d,omitempty"`
}

func (v RecordState) current(table, id string) Current {
	c := Current{Exists: true, Deleted: v.Deleted, Version: v.Version, Owner: v.Owner, Central: v.Central,
		Holders: slices.Clone(v.Holders), Parent: v.Parent, Held: v.Held}
	c.Record = Record{Table: table, ID: id, Action: v.Action, Data: v.Data}
	if v.Deleted && v.Action != Merge {
		c.Record.Action, c.Record.Data = Delete, nil
	}
	return c
}

func (v RecordState) holds(site int) bool { return slices.Contains(v.Holders, site) }

// sortedSites returns ids without non-positive ids and repeats, ascending.
func sortedSites(ids []int) []int {
	out := make([]int, 0, len(ids))
	for _, d := range ids {
		if d > 0 && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

// minus returns the sites of a that are not in b.
func minus(a, b []int) []int {
	var out []int
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// PrimaryStore is the primary's storage contract: everything agent/primary
// needs of durable state. *Central (one BuntDB file, the embedded default)
// and queue/pg (PostgreSQL, for several stateless primary nodes) implement
// it; queue/storetest is the suite both must pass.
//
// Accept and Write decide changes with Decide under the backend's own
// isolation (the decision and the change are one step in the primary's
// order) and apply the Plan atomically. Queued delivers current copies;
// Ack removes entries by the version that queued them; Fill and Reconcile
// are idempotent and may run in batches.
type PrimaryStore interface {
	Accept(origin int, in []Inbound, router Router) (AcceptResult, error)
	Write(r Record, router Router) (uint64, error)
	// WriteBatch is several of the primary's own writes in one step (the
	// store rows of many sites at once).
	WriteBatch(rs []Record, router Router) error
	Get(table, id string) (Record, bool, error)
	Current(table, id string) (Current, error)
	List(table, after string, limit int) ([]Record, error)
	CentralSince(cursor uint64, limit int) ([]CentralEntry, uint64, error)
	Queued(site int, limit int) ([]QueuedEntry, int, error)
	QueueLen(site int) int
	// QueueLengths is every site's QueueLen that is not 0, in one read.
	QueueLengths() (map[int]int, error)
	Ack(site int, syncOutIDs []string) (int, error)
	Fill(site int) (int, error)
	Filling(site int) bool
	Reconcile(m Membership, router Router) (MembershipResult, error)
	Site(id int) (SiteState, error)
	Pin(id int, hwid string) (SiteState, error)
	ClearPin(id int) error
	Touch(id int, at time.Time) error
	NoteHealth(id int, raw []byte, m Marks, at time.Time) (rewound bool, err error)
	SetVerified(id int, token string) error
	SetInitialisation(id int, status string) error
	Sites() []SiteState
	// The site registry (registry.go): rows, a generation raised by every
	// change, and a bounded log of the changes. ChangeRegistry applies an
	// edit only at generation base (else ErrRegistryChanged), atomically
	// with its log entry.
	Registry() ([]SiteConfig, uint64, error)
	RegistryGeneration() (uint64, error)
	ChangeRegistry(base uint64, e RegistryEdit, note RegistryChange) (uint64, error)
	RegistryLog(limit int) ([]RegistryChange, error)
	// Diagnostics on request (diagnostics.go): a request replaces the one
	// waiting; pieces move the state by NextDiagnostics, atomically.
	RequestDiagnostics(id int, request string, at time.Time) error
	AddDiagnostics(id int, p DiagnosticsPiece, at time.Time) (Diagnostics, error)
	Diagnostics(id int) (Diagnostics, error)
	Close() error
}

var _ PrimaryStore = (*Central)(nil)
