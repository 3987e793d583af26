// Package control is the agent's local API: JSON over the unix control
// socket. The daemon serves it; the CLI and apps on the box call it, and never
// open the datafile themselves. docs/local-api.md documents it for app
// developers. Who may call what is decided per request from the caller's
// peer credentials (Permit).
package control

import (
	"encoding/json"
	"fmt"
	"time"
)

// Status is `syncagent status`.
type Status struct {
	// Running is true in every answer of a running agent; the CLI prints
	// {"running": false, …} when none answers.
	Running bool `json:"running"`
	// Opening, while the agent starts, says what it is opening (its
	// datafile, for how long); only the lines above it are filled in then.
	Opening        string    `json:"opening,omitempty"`
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
	// LastFailure is the last cycle that failed (kept across restarts, as
	// LastSuccess is), and FailingSince when the failures in a row up to
	// now began (zero while the last cycle succeeded).
	LastFailure  *Cycle    `json:"last_failure,omitempty"`
	FailingSince time.Time `json:"failing_since,omitzero"`
	// LastContact is the last time the primary answered this satellite,
	// refusals included.
	LastContact time.Time `json:"last_contact,omitzero"`
	// PrimaryURL and PrimaryUser are what the satellite's client uses now.
	PrimaryURL   string `json:"primary_url,omitempty"`
	PrimaryUser  string `json:"primary_user,omitempty"`
	OutboxLength int    `json:"outbox_length"`
	SetAside     int    `json:"set_aside"`
	RequestSize  string `json:"request_size"`
	PushSizer    string `json:"push_sizer,omitempty"`
	PullSizer    string `json:"pull_sizer,omitempty"`
	Queues       []Site `json:"queues,omitempty"` // primary: per site (above 1,000 sites, the 100 longest queues)
	// Storage is where the primary keeps its state: its datafile's path, or
	// the PostgreSQL URL of [central] database (no password in it).
	Storage string `json:"storage,omitempty"`
	// The primary's totals over every site.
	SitesTotal        int       `json:"sites_total,omitempty"`
	QueuedTotal       int       `json:"queued_total,omitempty"`
	LatestSiteContact time.Time `json:"latest_site_contact,omitzero"`
	Prefs             Prefs     `json:"prefs"`
	Records           int       `json:"records"`
	// Initialisation is the satellite datafile's state: "completed (sync_id
	// N)", "never", or the step of a (re-)initialisation in progress.
	Initialisation string `json:"initialisation,omitempty"`
	// CentralReread and Rewound are when (since start) the primary's
	// central data was seen to go back, and when the primary said this
	// box's outbox numbering went back.
	CentralReread time.Time `json:"central_reread,omitzero"`
	Rewound       time.Time `json:"rewound,omitzero"`
	// FirstSync is the progress of an initialisation's pull (a new or
	// replaced box's first sync), while it runs.
	FirstSync *Progress `json:"first_sync,omitempty"`
}

// Progress is how far a first sync has got, counted since the agent
// started (after a restart or a cut link the pull resumes where it
// stopped, and the count starts again from there).
type Progress struct {
	Started time.Time `json:"started"`
	Done    int       `json:"records_done"`
	Total   int       `json:"records_total,omitempty"` // 0: not known yet
	Bytes   int64     `json:"bytes"`                   // record data pulled
	Rate    float64   `json:"records_per_s,omitempty"` // while pulling (waits between cycles left out)
	LeftS   int64     `json:"left_s,omitempty"`        // estimated seconds left (0: not known yet)
}

// Line is the progress in a few words: "42% (4,200 of 10,000 records,
// 3.1 MB, 120/s, 48s left)".
func (p Progress) Line() string {
	s := fmt.Sprintf("(%d records", p.Done)
	if p.Total > 0 {
		s = fmt.Sprintf("%d%% (%d of %d records", min(100, p.Done*100/p.Total), p.Done, p.Total)
	}
	s += fmt.Sprintf(", %.1f MB", float64(p.Bytes)/1e6)
	if p.Rate > 0 {
		s += fmt.Sprintf(", %.0f/s", p.Rate)
	}
	if p.LeftS > 0 {
		s += ", " + (time.Duration(p.LeftS) * time.Second).String() + " left"
	}
	return s + ")"
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
	// Pending says the applied prefs take effect only once something ends
	// ("applies when the sync cycle in progress ends").
	Pending string `json:"pending,omitempty"`
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
	// Refused: the primary answered and refused (credentials, hardware
	// ID, stores, API version, busy): not a link failure.
	Refused bool `json:"refused,omitempty"`
	// Truncated: the cycle was cut by its round cap; the next one starts
	// at once.
	Truncated bool `json:"truncated,omitempty"`
	// Busy: the primary said it was busy (sync_is_running) for longer than
	// the cycle waits; the next cycle comes soon.
	Busy bool `json:"busy,omitempty"`
	// Removed: records a completed re-initialisation removed (not delivered
	// again, no change waiting).
	Removed int `json:"removed,omitempty"`
	// Initialisation: what the cycle did about initialising the site:
	// "requested", "waited", "completed" or "".
	Initialisation string `json:"initialisation,omitempty"`
	// CentralReread: the primary's central data went back (a restored
	// primary), so it was read again from the start.
	CentralReread bool `json:"central_reread,omitempty"`
	// Rewound: the primary saw this box's outbox numbering go back (this
	// datafile restored from a copy) and took the changes.
	Rewound bool `json:"rewound,omitempty"`
	// Notes are warnings, one line each.
	Notes []string `json:"notes,omitempty"`
}

// The results of a check step.
const (
	StepOK       = "ok"
	StepFailed   = "failed"
	StepNotTried = "not tried" // an earlier step failed, so this one was never reached
	StepNotUsed  = "not used"  // does not apply (TLS on an http URL)
)

// Check is `syncagent check`.
type Check struct {
	URL  string `json:"url"`
	User string `json:"user"`
	// Steps are reachable, tls, authenticated, hardware_id, stores, in
	// that order, each ok, failed, not tried or not used.
	Steps            []CheckStep `json:"steps"`
	Reachable        bool        `json:"reachable"`
	TLS              string      `json:"tls"`
	Authenticated    bool        `json:"authenticated"`
	HardwareAccepted bool        `json:"hardware_id_accepted"`
	// RoundTripMS is measured only when the primary answered.
	RoundTripMS *int64 `json:"round_trip_ms,omitempty"`
	SiteID      int    `json:"site_id,omitempty"`
	Error       string `json:"error,omitempty"`
	Advice      string `json:"advice,omitempty"`
	// Refused: the primary answered and refused.
	Refused bool `json:"refused,omitempty"`
}

// CheckStep is one step of a connection check.
type CheckStep struct {
	Name   string `json:"name"`
	Result string `json:"result"`
	Detail string `json:"detail,omitempty"`
}

// Site is one line of `syncagent sites`.
type Site struct {
	SyncID         int       `json:"sync_id"`
	User           string    `json:"user"`
	URL            string    `json:"url,omitempty"`
	Stores         []string  `json:"stores,omitempty"`
	Registry       bool      `json:"registry,omitempty"` // the primary's: the row is the registry's, not the prefs'
	HardwareID     string    `json:"hardware_id,omitempty"`
	LastContact    time.Time `json:"last_contact,omitzero"`
	Initialisation string    `json:"initialisation,omitempty"`
	QueueLength    int       `json:"queue_length"`
	// The fleet view (the primary's): its verdict ("ok", "late",
	// "failing", "never connected") and what the site's last health block
	// said (fleet.go).
	Verdict     string    `json:"verdict,omitempty"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Version     string    `json:"version,omitempty"`
	Outbox      *int      `json:"outbox,omitempty"`       // nil: the site sent no health block
	OutboxAge   int64     `json:"outbox_age_s,omitempty"` // seconds the oldest waiting change has waited
	ClockSkew   *int64    `json:"clock_skew_s,omitempty"` // the site's clock minus the primary's, seconds
}

// Record is a row as apps see it.
type Record struct {
	Table  string          `json:"table"`
	ID     string          `json:"id"`
	Action string          `json:"action,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// appendJSON appends r as encoding/json's Encoder writes it (newline
// included), with Data, which must be valid JSON, as it stands.
func (r Record) appendJSON(b []byte) []byte {
	b = append(b, `{"table":`...)
	b = appendString(b, r.Table)
	b = append(b, `,"id":`...)
	b = appendString(b, r.ID)
	if r.Action != "" {
		b = append(b, `,"action":`...)
		b = appendString(b, r.Action)
	}
	if len(r.Data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, r.Data...)
	}
	return append(b, "}\n"...)
}

// appendString appends s as a JSON string: as it is when it is printable
// ASCII that encoding/json would not escape, through encoding/json if not.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
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
	Provisioned  bool   `json:"provisioned"`
	// TrustedAhead is set when the unlock ledger trusts a time ahead of the
	// clock (every code is refused as "clock behind"); a code bound to
	// ClockResetDigest resets it (`syncagent unlock --reset-clock`).
	TrustedAhead     time.Time `json:"trusted_ahead,omitzero"`
	ClockResetDigest string    `json:"clock_reset_digest,omitempty"`
	Request          string    `json:"request"`
}

// CodeRequest carries an unlock code to check or to redeem.
type CodeRequest struct {
	Code string `json:"code"`
}

// Unlocked answers a redeemed code.
type Unlocked struct {
	UnlockedBy string `json:"unlocked_by"`
}

// ErrorBody is the body of every failed local API call.
type ErrorBody struct {
	Error string `json:"error"`
	// Line is the line of a batch (POST /v1/records) the error is about.
	Line int `json:"line,omitempty"`
}
