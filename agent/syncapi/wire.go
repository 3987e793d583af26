// Package syncapi is the sync API v5 wire protocol: the JSON shapes, headers,
// error bodies and status codes that real peers speak (see PROTOCOL.md), a
// client for satellites, and the decoding helpers the primary's handlers use.
// Field names and casing here are facts of the protocol; do not "tidy" them.
//
// Imported by agent/primary, agent/satellite and the wiring in agent/daemon.
package syncapi

import (
	"encoding/json"
	"fmt"

	"syncagent/queue"
)

// PathPrefix is where every endpoint lives under the server URL.
const PathPrefix = "/sync/v5/"

// Endpoint names, relative to PathPrefix.
const (
	EndpointSite         = "site"
	EndpointSiteStatus   = "site_status"
	EndpointInitialise   = "initialise"
	EndpointCentral      = "central_records"
	EndpointQueued       = "queued_records"
	EndpointAcknowledged = "acknowledged_records"
)

// Headers every request carries.
const (
	HeaderSiteUUID   = "msupply-site-uuid"
	HeaderAppName    = "app-name"
	HeaderAppVersion = "app-version"
	HeaderVersion    = "version"
)

// The sync API versions ("version" header) this implementation speaks. The
// reference client sends 14; older remote servers send lower numbers.
const (
	MinAPIVersion = 1
	MaxAPIVersion = 14
	APIVersion    = 14
)

// AppName is sent in the app-name header.
const AppName = "syncagent"

// SiteInfo is the body of GET site.
type SiteInfo struct {
	ID                       string `json:"id"`
	SiteID                   int    `json:"siteId"`
	InitialisationStatus     string `json:"initialisationStatus"`
	IsOmSupplyCentralServer  bool   `json:"isOmSupplyCentralServer"`
	OmSupplyCentralServerURL string `json:"omSupplyCentralServerUrl"`
	MSupplyCentralSiteID     int    `json:"mSupplyCentralSiteId"`
	Code                     string `json:"code,omitempty"`
	Name                     string `json:"name,omitempty"`
}

// Initialisation states of a site, as GET site reports them.
const (
	InitNew       = "new"
	InitStarted   = "started"
	InitCompleted = "completed"
	InitError     = "error"
)

// SiteStatus is the body of GET site_status.
type SiteStatus struct {
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// Site status codes.
const (
	StatusIdle                     = "idle"
	StatusSyncIsRunning            = "sync_is_running"
	StatusIntegrationInProgress    = "integration_in_progress"
	StatusInitialisationInProgress = "initialisation_in_progress"
)

// InitialiseResponse is the body of POST initialise.
type InitialiseResponse struct {
	QueueLength int `json:"queueLength"`
}

// CentralRecord is one entry of GET central_records; ID is its cursor.
type CentralRecord struct {
	ID         uint64          `json:"ID"`
	TableName  string          `json:"tableName"`
	RecordID   string          `json:"recordId"`
	Action     string          `json:"action"`
	RecordData json.RawMessage `json:"recordData,omitempty"`
}

// CentralRecords is the body of GET central_records.
type CentralRecords struct {
	MaxCursor uint64          `json:"maxCursor"`
	Data      []CentralRecord `json:"data"`
}

// QueuedRecord is one entry of GET queued_records and of a push.
type QueuedRecord struct {
	SyncOutID  string          `json:"syncOutId"`
	TableName  string          `json:"tableName"`
	RecordID   string          `json:"recordId"`
	Action     string          `json:"action"`
	RecordData json.RawMessage `json:"recordData,omitempty"`
}

// QueuedRecords is the body of GET queued_records.
type QueuedRecords struct {
	QueueLength int            `json:"queueLength"`
	Data        []QueuedRecord `json:"data"`
}

// Acknowledge is the body of POST acknowledged_records.
type Acknowledge struct {
	SyncIDs []string `json:"syncIDs"`
}

// Push is the body of POST queued_records. QueueLength is the number of
// records still to push after this batch; the last batch carries 0.
type Push struct {
	QueueLength int            `json:"queueLength"`
	Data        []QueuedRecord `json:"data"`
}

// PushResponse is the body answering a push. Refused is syncagent's addition
// (peers that don't know it ignore it): the records of the batch that were not
// accepted, each with its reason; the rest of the batch was applied.
//
// Rewound is an optional extension: the primary saw this site's outbox
// numbering go backwards (a datafile restored from a backup, a reinstall)
// and took the new changes anyway; the site should warn about it.
type PushResponse struct {
	IntegrationStarted bool      `json:"integrationStarted"`
	Refused            []Refusal `json:"refused,omitempty"`
	Rewound            bool      `json:"rewound,omitempty"`
}

// Refusal says why one pushed record was not accepted.
type Refusal struct {
	SyncOutID string    `json:"syncOutId"`
	Error     ErrorInfo `json:"error"`
}

// Record converts a wire record into the domain record, validating it.
func (q QueuedRecord) Record() (queue.Record, error) {
	return toRecord(q.TableName, q.RecordID, q.Action, q.RecordData)
}

// Record converts a central wire record into the domain record.
func (c CentralRecord) Record() (queue.Record, error) {
	return toRecord(c.TableName, c.RecordID, c.Action, c.RecordData)
}

func toRecord(table, id, action string, data json.RawMessage) (queue.Record, error) {
	a, err := queue.ParseAction(action)
	if err != nil {
		return queue.Record{}, fmt.Errorf("record %s/%s: %w", table, id, err)
	}
	if string(data) == "null" {
		data = nil
	}
	r := queue.Record{Table: table, ID: id, Action: a, Data: data}
	return r, r.Validate()
}

// FromRecord converts a domain record into a queued wire record.
func FromRecord(syncOutID string, r queue.Record) QueuedRecord {
	return QueuedRecord{SyncOutID: syncOutID, TableName: r.Table, RecordID: r.ID, Action: string(r.Action), RecordData: wireData(r)}
}

// FromCentral converts a domain record into a central wire record.
func FromCentral(cursor uint64, r queue.Record) CentralRecord {
	return CentralRecord{ID: cursor, TableName: r.Table, RecordID: r.ID, Action: string(r.Action), RecordData: wireData(r)}
}

// wireData leaves recordData out on delete, as the reference server does.
func wireData(r queue.Record) json.RawMessage {
	if r.Action == queue.Delete || len(r.Data) == 0 {
		return nil
	}
	return r.Data
}
