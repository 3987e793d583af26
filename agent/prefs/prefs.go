// Package prefs reads syncagent's preferences file (/etc/syncagent/prefs.toml)
// strictly: unknown keys, wrong types, trailing data and rule violations are
// refused with file:line, what was expected and what to do. It also says which
// settings are locked (LockedDigest, LockedEqual) and what changed between
// two files (Changes). Whether a change applies without a restart is for the
// components that apply it to say (agent/daemon), not for this package.
//
// The meaning of every setting follows the synchronisation preferences of the
// seed documents: sync ID (0 disables sync, 1 is reserved for the primary),
// sync interval (0 pauses), request size, the sites to sync with (user name,
// password, URL, hardware ID), and the authorisation code that locks all of
// them except the interval.
//
// Prefs values are immutable snapshots once parsed: share them, do not modify
// them. Package prefs depends only on the TOML library, agent/passwd and ops
// (for bounded reads of the file); any agent package may import it.
package prefs

import (
	"errors"
	"fmt"
	"time"

	"github.com/BurntSushi/toml"

	"syncagent/ops"
)

// Defaults and bounds.
const (
	CurrentVersion = 1 // the prefs format this syncagent writes and reads natively

	DefaultPath             = "/etc/syncagent/prefs.toml"
	DefaultIntervalMinutes  = 10
	DefaultStateDir         = "/var/lib/syncagent"
	DefaultControlSocket    = "/run/syncagent/control.sock"
	DefaultListenAddress    = "0.0.0.0:2048"   // on the primary only
	DefaultAdminAddress     = "127.0.0.1:2049" // on the primary only: loopback unless the file says otherwise
	DefaultOutboxMaxRecords = 100_000

	MaxIntervalMinutes  = 7 * 24 * 60 // a week
	MaxRequestSize      = 5000
	MaxSyncID           = 1<<31 - 1 // fits int on 32-bit ARM
	MaxOutboxMaxRecords = 1_000_000_000
	MaxFileSize         = 4 << 20 // bytes; a primary with thousands of rows fits easily
	MaxDBConnections    = 1000    // central.max_connections: per node; the server's max_connections bounds the sum
)

// Prefs is one parsed and validated preferences file with defaults applied.
type Prefs struct {
	Version  int     // the format version written in the file
	Site     Site    // [site]: this box
	Paths    Paths   // [paths]
	Listen   Listen  // [listen]: primary only
	Limits   Limits  // [limits]
	SyncWith []Peer  // [[sync_with]]: satellite: its primary; primary: one row per satellite
	Admin    Admin   // [admin]: primary only: the site list as a web page, its JSON and /metrics
	Metrics  Metrics // [metrics]
	Central  Central // [central]: primary only: where its state lives, and what its nodes share
	Unlock   Unlock  // [unlock]: the authorisation code that allows a locked change
	Source   string  // the file name it came from (not a setting)
}

// Site is the [site] table: this box's own settings.
type Site struct {
	SyncID          int         // sync_id: 0 disables sync, 1 is the primary, >1 a satellite
	IntervalMinutes int         // interval_minutes: between sync cycles; 0 pauses sync; the one unlocked setting
	RequestSize     RequestSize // request_size: "auto" or 1..5000 records per request
	Stores          []string    // stores: active on this site, in file order
}

// RequestSize is the number of records per sync request: Fixed, or adapted to
// the link when Fixed is 0 ("auto").
type RequestSize struct {
	Fixed int // 0 means "auto"
}

// IsAuto reports whether the request size adapts itself to the link.
func (r RequestSize) IsAuto() bool { return r.Fixed == 0 }

// String returns "auto" or the fixed size, as written in the file.
func (r RequestSize) String() string {
	if r.IsAuto() {
		return "auto"
	}
	return fmt.Sprint(r.Fixed)
}

// Paths is the [paths] table.
type Paths struct {
	StateDir      string // state_dir
	ControlSocket string // control_socket
	VendorKeys    string // vendor_keys: optional extra vendor keyring file; "" for none
}

// Listen is the [listen] table: where the primary serves the sync API.
type Listen struct {
	Address string // address: host:port
	TLSCert string // tls_cert: serve HTTPS when set (with TLSKey)
	TLSKey  string // tls_key
	// OmSupplyCentralServerURL (omsupply_central_server_url) is what GET
	// site answers as omSupplyCentralServerUrl: an open-mSupply remote
	// needs the URL of an open-mSupply central server to sync at all.
	OmSupplyCentralServerURL string
	// TrustedProxies (trusted_proxies) are the load balancers in front of
	// the primary, as CIDR prefixes ("10.0.0.0/8"; an address alone is its
	// /32 or /128), in file order: from them a request's source address is
	// taken from X-Forwarded-For, for the per-address login lockout.
	TrustedProxies []string
}

// Central is the [central] table: where the primary keeps its state, and
// what several primary nodes serving one database must share.
type Central struct {
	// Database (database) is a postgres:// URL: the primary keeps its
	// state in that PostgreSQL database instead of state_dir/central.db.
	// It never carries the password.
	Database string
	// DatabasePasswordFile (database_password_file) holds the database
	// password; without it libpq's PGPASSWORD, PGPASSFILE or ~/.pgpass.
	DatabasePasswordFile string
	// MaxConnections (max_connections) bounds this node's connections to
	// the database; 0 means the default (8).
	MaxConnections int
	// AuthKeyFile (auth_key_file) is the key that signs the tokens of
	// verified passwords; every node serving one database needs the same
	// one. "" means state_dir/auth.key, made on first use.
	AuthKeyFile string
}

// Admin is the [admin] table: the primary's admin listener (the site list
// as a web page, its JSON and the Prometheus metrics), behind credentials of
// its own. It runs when User and PasswordHash are set.
type Admin struct {
	Address      string // address: host:port; DefaultAdminAddress (loopback) when left out
	User         string // user: the admin's Basic-auth user name
	PasswordHash string // password_hash: made by passwd.Hash (`syncagent passwd`)
	TLSCert      string // tls_cert: serve HTTPS when set (with TLSKey)
	TLSKey       string // tls_key
}

// Enabled reports whether the admin listener runs (credentials are set).
func (a Admin) Enabled() bool { return a.User != "" && a.PasswordHash != "" }

// Metrics is the [metrics] table.
type Metrics struct {
	// TextfileDir: when set, the agent writes its metrics to
	// TextfileDir/syncagent.prom (atomically) for node_exporter's textfile
	// collector.
	TextfileDir string // textfile_dir
}

// Limits is the [limits] table.
type Limits struct {
	OutboxMaxRecords int // outbox_max_records: local writes are refused once the outbox holds this many
}

// Peer is one [[sync_with]] row: on a satellite the primary, on the primary a
// satellite.
type Peer struct {
	SyncID         int      // sync_id
	User           string   // user: the Basic-auth user name
	PasswordSHA256 string   // password_sha256: satellite only; lowercase hex SHA-256 of the password
	PasswordHash   string   // password_hash: primary only; made by passwd.Hash (`syncagent passwd`)
	URL            string   // url: satellite: the primary's URL; on the primary any row with a URL disables sync
	Stores         []string // stores: primary only; stores active on that site
	HardwareID     string   // hardware_id: primary only, optional; pre-pins the site's hardware ID
}

// Unlock is the [unlock] table.
type Unlock struct {
	Code string // code: an authorisation code from the vendor (verified elsewhere)
}

// Role is what this box is, by its sync ID.
type Role int

const (
	RoleDisabled  Role = iota // sync_id = 0
	RolePrimary               // sync_id = 1
	RoleSatellite             // sync_id > 1
)

func (r Role) String() string {
	switch r {
	case RoleDisabled:
		return "disabled"
	case RolePrimary:
		return "primary"
	case RoleSatellite:
		return "satellite"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// Role returns the box's role: sync_id 0 → disabled, 1 → primary, >1 →
// satellite.
func (p *Prefs) Role() Role {
	switch {
	case p == nil || p.Site.SyncID <= 0:
		return RoleDisabled
	case p.Site.SyncID == 1:
		return RolePrimary
	}
	return RoleSatellite
}

// Interval returns the time between sync cycles; 0 means paused.
func (p *Prefs) Interval() time.Duration {
	return time.Duration(p.Site.IntervalMinutes) * time.Minute
}

// Primary returns, on a satellite, a copy of its one [[sync_with]] row (the
// primary); nil otherwise.
func (p *Prefs) Primary() *Peer {
	if p.Role() != RoleSatellite || len(p.SyncWith) != 1 {
		return nil
	}
	row := p.SyncWith[0]
	row.Stores = append([]string(nil), row.Stores...)
	return &row
}

// SyncDisabledReason returns "" when these prefs let the box sync, else why
// not, in words for `syncagent status`.
func (p *Prefs) SyncDisabledReason() string {
	switch {
	case p == nil:
		return "no prefs loaded"
	case p.Site.SyncID == 0:
		return "sync_id is 0"
	case p.Site.SyncID < 0:
		return fmt.Sprintf("sync_id %d is negative", p.Site.SyncID)
	case p.Site.IntervalMinutes == 0:
		return "interval_minutes is 0 (paused)"
	}
	switch p.Role() {
	case RoleSatellite:
		if len(p.SyncWith) != 1 {
			return fmt.Sprintf("a satellite needs exactly one [[sync_with]] row (the primary), found %d", len(p.SyncWith))
		}
	case RolePrimary:
		first, n := -1, 0
		for i, row := range p.SyncWith {
			if row.URL != "" {
				if first < 0 {
					first = i
				}
				n++
			}
		}
		if first >= 0 {
			who := fmt.Sprintf("the row for site %d (sync_with[%d]) has", p.SyncWith[first].SyncID, first)
			if n > 1 {
				who = fmt.Sprintf("the rows for site %d (sync_with[%d]) and %d more sites have", p.SyncWith[first].SyncID, first, n-1)
			}
			return who + " a url: on the primary any site row with a URL disables sync; remove the url"
		}
	}
	return ""
}

// Load reads and parses the prefs file at path. A missing file gives an error
// that satisfies errors.Is(err, fs.ErrNotExist); an invalid one gives the
// *Error list of Parse.
func Load(path string) (*Prefs, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// ReadFile reads the bytes of a prefs file: a regular file (a FIFO or a
// device at the path is refused, never waited on or read without end) of at
// most MaxFileSize bytes. Parse those exact bytes: what was verified is what
// is kept as the last good prefs.
func ReadFile(path string) ([]byte, error) {
	data, _, err := ops.ReadRegular(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("cannot read prefs: %w", err)
	}
	return data, nil
}

// Parse decodes and validates a prefs file; name is used in errors and kept as
// Source. On failure it returns nil and every problem found, as errors.Join of
// *Error ordered by line (see Errors).
func Parse(name string, data []byte) (*Prefs, error) {
	p := &problems{file: name}
	if len(data) > MaxFileSize {
		p.list = append(p.list, &Error{File: name, Msg: fmt.Sprintf("file is larger than %d bytes; is it the right file?", MaxFileSize)})
		return nil, p.err()
	}
	src := string(data)
	var raw map[string]any
	if _, err := toml.Decode(src, &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			p.list = append(p.list, &Error{File: name, Line: pe.Position.Line, Msg: fmt.Sprintf("invalid TOML at column %d: %s", pe.Position.Col, pe.Message)})
		} else {
			p.list = append(p.list, &Error{File: name, Msg: "invalid TOML: " + err.Error()})
		}
		return nil, p.err()
	}
	p.lines = locate(src)
	version, ok := readVersion(p, raw)
	if !ok {
		return nil, p.err()
	}
	if err := migrate(raw, version); err != nil {
		p.list = append(p.list, &Error{File: name, Key: "version", Line: p.lines.find("version"), Msg: err.Error()})
		return nil, p.err()
	}
	prefs := decodeFile(p, raw)
	if err := p.err(); err != nil {
		return nil, err
	}
	prefs.Version = version
	prefs.Source = name
	return prefs, nil
}
