package prefs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sort"
	"strconv"
)

// LockedDigest returns the lowercase hex SHA-256 of the canonical form of the
// locked settings: every setting except site.interval_minutes and
// unlock.code (and Source, which is not a setting). A change-bound unlock code
// signs this digest. Comments, whitespace, key order, the order of stores and
// of [[sync_with]] rows, and equivalent TOML spellings ('x' and "x", 1_000 and
// 1000, [site] and site.x dotted keys and inline tables, a default written out
// or left out) do not change it; any change of a locked value does.
//
// # Canonical form (version 1)
//
// A sequence of records, each
//
//	<name> "=" <length> ":" <value> "\n"
//
// where <length> is the decimal byte length of <value>, and <value> is the
// setting's UTF-8 text after TOML escapes are resolved (no Unicode
// normalisation). Numbers are plain decimal ASCII (no '+', leading zeros or
// underscores; valid settings are never negative). A setting left out of the file has its default value; an
// optional string left out is the empty value. The records come in exactly
// this order:
//
//	syncagent-locked-prefs      "1" (this form's version)
//	version                     the file's format version
//	site.sync_id
//	site.request_size           "auto" or the number
//	site.store                  one record per store, sorted by bytes; none if no stores
//	paths.state_dir             default "/var/lib/syncagent"
//	paths.control_socket        default "/run/syncagent/control.sock"
//	paths.vendor_keys           default ""
//	listen.address              default "0.0.0.0:2048" when sync_id = 1, else ""
//	listen.tls_cert
//	listen.tls_key
//	listen.omsupply_central_server_url
//	limits.outbox_max_records   default "100000"
//
// then, for each [[sync_with]] row, ordered by sync_id (numerically) and rows
// with equal sync_id by the bytes of their records:
//
//	sync_with.sync_id
//	sync_with.user
//	sync_with.password_sha256
//	sync_with.password_hash
//	sync_with.url
//	sync_with.store             one record per store, sorted by bytes
//	sync_with.hardware_id
//
// then, only when one of them differs from its default (so a file without
// [admin] or [metrics] keeps the digest it had before they existed):
//
//	admin.address               "" for the default "127.0.0.1:2049" on the primary
//	admin.user
//	admin.password_hash
//	admin.tls_cert
//	admin.tls_key
//	metrics.textfile_dir
//
// then, only when one of them is set (so a file without them keeps its
// digest):
//
//	listen.trusted_proxy        one record per prefix, as kept ("10.0.0.0/8"), sorted by bytes
//	central.database
//	central.database_password_file
//	central.max_connections     "0" when left out
//	central.auth_key_file
//
// For example a file with only version = 1 and [site] sync_id = 0 begins
//
//	syncagent-locked-prefs=1:1\nversion=1:1\nsite.sync_id=1:0\nsite.request_size=4:auto\n
//	paths.state_dir=18:/var/lib/syncagent\n...
func (p *Prefs) LockedDigest() string {
	sum := sha256.Sum256(p.canonical())
	return hex.EncodeToString(sum[:])
}

// LockedEqual reports whether p and q agree on every locked setting.
func (p *Prefs) LockedEqual(q *Prefs) bool {
	if p == nil || q == nil {
		return p == q
	}
	return bytes.Equal(p.canonical(), q.canonical())
}

// canonical returns the canonical form of the locked settings documented on
// LockedDigest. A nil *Prefs encodes as the zero Prefs.
func (p *Prefs) canonical() []byte {
	if p == nil {
		p = &Prefs{}
	}
	var b []byte
	b = record(b, "syncagent-locked-prefs", "1")
	b = record(b, "version", strconv.Itoa(p.Version))
	b = record(b, "site.sync_id", strconv.Itoa(p.Site.SyncID))
	b = record(b, "site.request_size", p.Site.RequestSize.String())
	b = storeRecords(b, "site.store", p.Site.Stores)
	b = record(b, "paths.state_dir", p.Paths.StateDir)
	b = record(b, "paths.control_socket", p.Paths.ControlSocket)
	b = record(b, "paths.vendor_keys", p.Paths.VendorKeys)
	b = record(b, "listen.address", p.Listen.Address)
	b = record(b, "listen.tls_cert", p.Listen.TLSCert)
	b = record(b, "listen.tls_key", p.Listen.TLSKey)
	b = record(b, "listen.omsupply_central_server_url", p.Listen.OmSupplyCentralServerURL)
	b = record(b, "limits.outbox_max_records", strconv.Itoa(p.Limits.OutboxMaxRecords))
	for _, r := range sortedRows(p.SyncWith) {
		b = append(b, r.enc...)
	}
	admin := p.Admin
	if admin.Address == DefaultAdminAddress {
		admin.Address = "" // written out or left out: the same
	}
	if admin != (Admin{}) || p.Metrics != (Metrics{}) {
		b = record(b, "admin.address", admin.Address)
		b = record(b, "admin.user", admin.User)
		b = record(b, "admin.password_hash", admin.PasswordHash)
		b = record(b, "admin.tls_cert", admin.TLSCert)
		b = record(b, "admin.tls_key", admin.TLSKey)
		b = record(b, "metrics.textfile_dir", p.Metrics.TextfileDir)
	}
	if len(p.Listen.TrustedProxies) > 0 || p.Central != (Central{}) {
		b = storeRecords(b, "listen.trusted_proxy", p.Listen.TrustedProxies)
		b = record(b, "central.database", p.Central.Database)
		b = record(b, "central.database_password_file", p.Central.DatabasePasswordFile)
		b = record(b, "central.max_connections", strconv.Itoa(p.Central.MaxConnections))
		b = record(b, "central.auth_key_file", p.Central.AuthKeyFile)
	}
	return b
}

func record(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, '=')
	b = strconv.AppendInt(b, int64(len(value)), 10)
	b = append(b, ':')
	b = append(b, value...)
	return append(b, '\n')
}

func storeRecords(b []byte, name string, stores []string) []byte {
	for _, s := range sortedCopy(stores) {
		b = record(b, name, s)
	}
	return b
}

func sortedCopy(list []string) []string {
	out := slices.Clone(list)
	sort.Strings(out)
	return out
}

// encodedRow is one [[sync_with]] row with its canonical records.
type encodedRow struct {
	index int // in file order
	id    int
	enc   []byte
}

func encodeRow(i int, r Peer) encodedRow {
	var b []byte
	b = record(b, "sync_with.sync_id", strconv.Itoa(r.SyncID))
	b = record(b, "sync_with.user", r.User)
	b = record(b, "sync_with.password_sha256", r.PasswordSHA256)
	b = record(b, "sync_with.password_hash", r.PasswordHash)
	b = record(b, "sync_with.url", r.URL)
	b = storeRecords(b, "sync_with.store", r.Stores)
	b = record(b, "sync_with.hardware_id", r.HardwareID)
	return encodedRow{index: i, id: r.SyncID, enc: b}
}

// sortedRows encodes rows and orders them by sync_id, then by encoding.
func sortedRows(rows []Peer) []encodedRow {
	out := make([]encodedRow, len(rows))
	for i, r := range rows {
		out[i] = encodeRow(i, r)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].id != out[j].id {
			return out[i].id < out[j].id
		}
		return bytes.Compare(out[i].enc, out[j].enc) < 0
	})
	return out
}
