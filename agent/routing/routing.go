// Package routing holds the legacy mSupply data model as data: for each
// table, how the store that owns a record is found and which other sites
// receive it (PROTOCOL.md, "Who owns a record, and who receives it";
// docs/routing.md). The primary routes pushes by it and the satellite's
// local API refuses, by the same rules, what the primary would refuse.
//
// The package knows tables and fields only; which site a store is active on
// is the caller's (the primary's site table).
package routing

import (
	"encoding/json"
	"slices"

	"syncagent/jsonscan"
)

// Rule says, for one table, who owns its records and who else receives them.
type Rule struct {
	Table string
	// StoreField names the field of the record that holds its owning store.
	StoreField string
	// ParentTable and ParentField: the record belongs to the store of its
	// parent, the ParentTable record whose ID is in ParentField (child rows
	// such as trans_line carry no store of their own).
	ParentTable, ParentField string
	// TransferField names a field holding a *name* ID: when it is the name
	// of a store, the sites where that store is active receive the record
	// too (and the record's children with it), once TransferStatuses allows.
	TransferField string
	// TransferStatuses, when not empty, restricts transfers to records whose
	// "status" is one of these (a draft shipment stays with its sender).
	TransferStatuses []string
	// Central marks central data: written on the primary only and read by
	// every site through central_records.
	Central bool
}

// Field names of the legacy data model used by the rules.
const (
	FieldStore  = "store_ID"
	FieldName   = "name_ID"
	FieldStatus = "status"
	// FieldRemoteSite is the field of a central store row naming the site
	// where the store is active.
	FieldRemoteSite = "sync_id_remote_site"
)

// TableStore is the central table of stores; the primary publishes one row
// per store of its site rows.
const TableStore = "store"

// sent are the legacy statuses of a shipment or an internal order that has
// left its sender: "cn" (confirmed: picked / sent) and "fn" (finalised:
// shipped). open-mSupply maps its Picked and Shipped invoices and its Sent
// requisitions to these (server/service/src/sync/translations/invoice.rs,
// requisition.rs); drafts ("nw", "sg") stay with the sender.
var sent = []string{"cn", "fn"}

// Rules is the routing table. Tables not listed follow Default.
var Rules = []Rule{
	// Store data: owned through store_ID.
	{Table: "transact", StoreField: FieldStore, TransferField: FieldName, TransferStatuses: sent},
	{Table: "requisition", StoreField: FieldStore, TransferField: FieldName, TransferStatuses: sent},
	{Table: "Stock_take", StoreField: FieldStore},
	{Table: "item_line", StoreField: FieldStore},
	{Table: "name_store_join", StoreField: FieldStore},
	{Table: "item_store_join", StoreField: FieldStore},
	{Table: "location", StoreField: FieldStore},
	{Table: "barcode", StoreField: FieldStore},
	// Child rows: owned through their parent.
	{Table: "trans_line", ParentTable: "transact", ParentField: "transaction_ID"},
	{Table: "requisition_line", ParentTable: "requisition", ParentField: "requisition_ID"},
	{Table: "Stock_take_lines", ParentTable: "Stock_take", ParentField: "stock_take_ID"},
	// Central data.
	{Table: TableStore, Central: true},
	{Table: "item", Central: true},
	{Table: "name", Central: true},
	{Table: "unit", Central: true},
	{Table: "list_master", Central: true},
	{Table: "list_master_line", Central: true},
	{Table: "list_master_name_join", Central: true},
	{Table: "currency", Central: true},
	{Table: "abbreviation", Central: true},
	{Table: "options", Central: true},
	{Table: "period", Central: true},
	{Table: "period_schedule", Central: true},
}

// Default is the rule of a table not listed: a record that names its
// store in store_ID belongs to that store (PROTOCOL.md: "a record that
// belongs to a store carries store_ID inside recordData"); one that does not
// is central data. Ownership is still decided by the primary's current
// copy, so a site cannot turn central data into its own by adding store_ID.
var Default = Rule{StoreField: FieldStore}

var byTable = func() map[string]Rule {
	m := make(map[string]Rule, len(Rules))
	for _, r := range Rules {
		if _, dup := m[r.Table]; dup {
			panic("routing: table " + r.Table + " listed twice")
		}
		m[r.Table] = r
	}
	return m
}()

// For returns the rule of table.
func For(table string) Rule {
	if r, ok := byTable[table]; ok {
		return r
	}
	r := Default
	r.Table = table
	return r
}

// Listed reports whether table has a rule of its own.
func Listed(table string) bool { _, ok := byTable[table]; return ok }

// Fields is a record's data decoded one level deep.
type Fields map[string]json.RawMessage

// Decode reads data (a JSON object, or empty) into Fields.
func Decode(data json.RawMessage) Fields {
	if len(data) == 0 {
		return nil
	}
	var f Fields
	if json.Unmarshal(data, &f) != nil {
		return nil
	}
	return f
}

// String returns a string field, or "" when it is missing or not a string.
func (f Fields) String(name string) string {
	raw, ok := f[name]
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// Claim is what a record's own data says about where it belongs.
type Claim struct {
	// Central: the table is central data.
	Central bool
	// Store is the store the data names (StoreField), or "".
	Store string
	// ParentTable and ParentID name the parent the record belongs to.
	ParentTable, ParentID string
	// TransferName is the name ID a transfer goes to, when the rule's
	// conditions hold ("" otherwise).
	TransferName string
}

// routed holds every field a rule reads (a struct, not a map: a claim is
// read for every record of every push). A field of another type reads as
// empty, as Fields.String does.
type routed struct {
	Store         lenient `json:"store_ID"`
	Name          lenient `json:"name_ID"`
	Status        lenient `json:"status"`
	TransactionID lenient `json:"transaction_ID"`
	RequisitionID lenient `json:"requisition_ID"`
	StockTakeID   lenient `json:"stock_take_ID"`
}

// lenient is a string field that reads as "" when it is not a string.
type lenient string

func (l *lenient) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*l = lenient(s)
	}
	return nil
}

// routedFields are routed's members as the data names them.
var routedFields = []string{FieldStore, FieldName, FieldStatus, "transaction_ID", "requisition_ID", "stock_take_ID"}

// scan fills f the way json.Unmarshal would, without reflection, when its
// routing fields are plain strings; false: ask encoding/json
// (TestClaim_scanMatchesUnmarshal). data is a validated record's (every
// caller routes records that queue.Record.Validate accepted, and its data
// has been checked several times by then); on data that is not JSON the
// claim is unspecified, but scan never panics.
func (f *routed) scan(data []byte) bool {
	var out [6]string
	if !jsonscan.Object(data, routedFields, out[:]) {
		return false
	}
	*f = routed{lenient(out[0]), lenient(out[1]), lenient(out[2]), lenient(out[3]), lenient(out[4]), lenient(out[5])}
	return true
}

func (f routed) field(name string) string {
	switch name {
	case FieldStore:
		return string(f.Store)
	case FieldName:
		return string(f.Name)
	case FieldStatus:
		return string(f.Status)
	case "transaction_ID":
		return string(f.TransactionID)
	case "requisition_ID":
		return string(f.RequisitionID)
	case "stock_take_ID":
		return string(f.StockTakeID)
	}
	panic("routing: a rule reads field " + name + ", which routed does not hold")
}

// Claim reads what data (a validated record's) says under this rule.
func (r Rule) Claim(data json.RawMessage) Claim {
	var f routed
	if len(data) > 0 && !f.scan(data) && json.Unmarshal(data, &f) != nil {
		f = routed{}
	}
	c := Claim{Central: r.Central}
	if r.StoreField != "" {
		c.Store = f.field(r.StoreField)
	}
	if r.ParentField != "" {
		c.ParentTable, c.ParentID = r.ParentTable, f.field(r.ParentField)
	}
	if r.TransferField != "" && (len(r.TransferStatuses) == 0 || slices.Contains(r.TransferStatuses, f.field(FieldStatus))) {
		c.TransferName = f.field(r.TransferField)
	}
	// Default rule: no store named means central data.
	if !r.Central && r.StoreField != "" && c.Store == "" && r.ParentField == "" && !Listed(r.Table) {
		c.Central = true
	}
	return c
}

// Child reports whether the rule owns records through a parent.
func (r Rule) Child() bool { return r.ParentField != "" }
