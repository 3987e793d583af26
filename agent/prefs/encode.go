package prefs

import (
	"fmt"
	"strconv"
	"strings"
)

// Encode writes p as a prefs file in the current format, the way a person
// would: a table only when it holds a setting, keys in the order of the
// README's table, defaults left out where leaving them out means the same.
// Parse(Encode(p)) gives back p for any p that Parse produced
// (TestEncode_roundTrip, FuzzEncode), so whatever makes prefs files (the
// demo's loopback layout, every test harness) writes them through the same
// definitions the agent reads, not through a template of its own.
func Encode(p *Prefs) []byte {
	var e encoder
	e.line("version = %d", CurrentVersion)

	e.table("site")
	e.key("sync_id", strconv.Itoa(p.Site.SyncID))
	e.key("interval_minutes", strconv.Itoa(p.Site.IntervalMinutes))
	if p.Site.RequestSize.Fixed > 0 {
		e.key("request_size", strconv.Itoa(p.Site.RequestSize.Fixed))
	}
	if p.Site.Stores != nil {
		e.key("stores", list(p.Site.Stores))
	}

	e.table("paths")
	e.key("state_dir", quote(p.Paths.StateDir))
	e.key("control_socket", quote(p.Paths.ControlSocket))
	e.opt("vendor_keys", p.Paths.VendorKeys)

	l := p.Listen
	if l.Address != "" || l.TLSCert != "" || l.TLSKey != "" || l.OmSupplyCentralServerURL != "" || l.TrustedProxies != nil {
		e.table("listen")
		e.opt("address", l.Address)
		e.opt("tls_cert", l.TLSCert)
		e.opt("tls_key", l.TLSKey)
		e.opt("omsupply_central_server_url", l.OmSupplyCentralServerURL)
		if l.TrustedProxies != nil {
			e.key("trusted_proxies", list(l.TrustedProxies))
		}
	}

	if c := p.Central; c != (Central{}) {
		e.table("central")
		e.opt("database", c.Database)
		e.opt("database_password_file", c.DatabasePasswordFile)
		if c.MaxConnections != 0 {
			e.key("max_connections", strconv.Itoa(c.MaxConnections))
		}
		e.opt("auth_key_file", c.AuthKeyFile)
	}

	// A primary's Admin.Address is the default when [admin] is left out;
	// the table alone (without user and hash) would be refused.
	a := p.Admin
	if a.User != "" || a.PasswordHash != "" || a.TLSCert != "" || a.TLSKey != "" || a.Address != "" && a.Address != DefaultAdminAddress {
		e.table("admin")
		e.opt("address", a.Address)
		e.opt("user", a.User)
		e.opt("password_hash", a.PasswordHash)
		e.opt("tls_cert", a.TLSCert)
		e.opt("tls_key", a.TLSKey)
	}

	if p.Metrics.TextfileDir != "" {
		e.table("metrics")
		e.key("textfile_dir", quote(p.Metrics.TextfileDir))
	}

	if n := p.Limits.OutboxMaxRecords; n != 0 && n != DefaultOutboxMaxRecords {
		e.table("limits")
		e.key("outbox_max_records", strconv.Itoa(n))
	}

	for _, r := range p.SyncWith {
		e.b.WriteString("\n[[sync_with]]\n")
		e.key("sync_id", strconv.Itoa(r.SyncID))
		e.opt("user", r.User)
		e.opt("password_sha256", r.PasswordSHA256)
		e.opt("password_hash", r.PasswordHash)
		e.opt("url", r.URL)
		if r.Stores != nil {
			e.key("stores", list(r.Stores))
		}
		e.opt("hardware_id", r.HardwareID)
	}

	if p.Unlock.Code != "" {
		e.table("unlock")
		e.key("code", quote(p.Unlock.Code))
	}
	return []byte(e.b.String())
}

type encoder struct{ b strings.Builder }

func (e *encoder) line(format string, args ...any) {
	fmt.Fprintf(&e.b, format, args...)
	e.b.WriteByte('\n')
}

func (e *encoder) table(name string)      { e.line("\n[%s]", name) }
func (e *encoder) key(name, value string) { e.line("%s = %s", name, value) }

// opt writes a string key that is set; empty means left out.
func (e *encoder) opt(name, value string) {
	if value != "" {
		e.key(name, quote(value))
	}
}

func list(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = quote(x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// quote writes s as a TOML basic string. Go's %q is not TOML: it writes
// \x00 and \a, which TOML has no escape for.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s { // bytes that are not UTF-8 come out as U+FFFD
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
