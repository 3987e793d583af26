// Package control is the agent's local API: JSON over the unix control
// socket. The daemon serves it; the CLI and apps on the box call it, and never
// open the datafile themselves.
//
// Imported by agent/daemon (server side) and agent/cli (client side).
package control

import (
	"encoding/json"
	"time"
)

// Status is `syncagent status`.
type Status struct {
	Role           string    `json:"role"`
	SyncID         int       `json:"sync_id"`
	HardwareID     string    `json:"hardware_id"`
	Version        string    `json:"version"`
	StartedAt      time.Time `json:"started_at"`
	SyncEnabled    bool      `json:"sync_enabled"`
	DisabledReason string    `json:"disabled_reason,omitempty"`
	Interval       string    `json:"interval"`
	NextSync       time.Time `json:"next_sync,omitzero"`
	LastSync       *Cycle    `json:"last_sync,omitempty"`
	LastSuccess    time.Time `json:"last_success,omitzero"`
	OutboxLength   int       `json:"outbox_length"`
	SetAside       int       `json:"set_aside"`
	RequestSize    string    `json:"request_size"`
	PushSizer      string    `json:"push_sizer,omitempty"`
	PullSizer      string    `json:"pull_sizer,omitempty"`
	Queues         []Site    `json:"queues,omitempty"` // primary: per site
	Prefs          Prefs     `json:"prefs"`
	Records        int       `json:"records"`
}

// Prefs is the state of the preferences.
type Prefs struct {
	File        string    `json:"file"`
	State       string    `json:"state"` // "ok", "rejected: …", "restart needed: …"
	LoadedAt    time.Time `json:"loaded_at"`
	Digest      string    `json:"locked_digest"`
	UnlockedBy  string    `json:"unlocked_by,omitempty"` // "key 1 seq 7"
	WindowUntil time.Time `json:"window_until,omitzero"` // a maintenance window is open until then
	Error       string    `json:"error,omitempty"`
}

// Cycle is the result of one sync cycle.
type Cycle struct {
	Kind      string    `json:"kind"` // "sync" or "retrieve"
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
	Pushed    int       `json:"pushed"`
	SetAside  int       `json:"set_aside"`
	Pulled    int       `json:"pulled"`
	Applied   int       `json:"applied"`
	LocalWins int       `json:"local_wins"`
	Invalid   int       `json:"invalid"`
	Error     string    `json:"error,omitempty"`
	Advice    string    `json:"advice,omitempty"`
}

// Check is `syncagent check`.
type Check struct {
	URL              string `json:"url"`
	Reachable        bool   `json:"reachable"`
	TLS              string `json:"tls"`
	Authenticated    bool   `json:"authenticated"`
	HardwareAccepted bool   `json:"hardware_id_accepted"`
	RoundTripMS      int64  `json:"round_trip_ms"`
	SiteID           int    `json:"site_id,omitempty"`
	Error            string `json:"error,omitempty"`
	Advice           string `json:"advice,omitempty"`
}

// Site is one line of `syncagent sites`.
type Site struct {
	SyncID         int       `json:"sync_id"`
	User           string    `json:"user"`
	URL            string    `json:"url,omitempty"`
	Stores         []string  `json:"stores,omitempty"`
	HardwareID     string    `json:"hardware_id,omitempty"`
	LastContact    time.Time `json:"last_contact,omitzero"`
	Initialisation string    `json:"initialisation,omitempty"`
	QueueLength    int       `json:"queue_length"`
}

// Record is a row as apps see it.
type Record struct {
	Table  string          `json:"table"`
	ID     string          `json:"id"`
	Action string          `json:"action,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// Aside is a record the agent stopped pushing, and why.
type Aside struct {
	Table  string    `json:"table"`
	ID     string    `json:"id"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Generated answers `syncagent generate`.
type Generated struct {
	Queued int `json:"queued"`
}

// Reload answers `syncagent prefs reload`.
type Reload struct {
	State string `json:"state"`
}

// Unlock is `syncagent unlock`: what the technician sends the vendor.
type Unlock struct {
	HardwareID   string `json:"hardware_id"`
	ChangeDigest string `json:"change_digest"`
	Pending      bool   `json:"pending"` // the file on disk differs from the running prefs in locked settings
	Request      string `json:"request"`
}

// ErrorBody is the body of every failed local API call.
type ErrorBody struct {
	Error string `json:"error"`
}
