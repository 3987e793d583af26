package prefs

import (
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"

	"syncagent/agent/passwd"
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path is
// 108 bytes including the terminating NUL).
const maxSocketPath = 107

// decodeFile reads the migrated, decoded file into Prefs, applies defaults and
// checks every rule, recording problems in p.
func decodeFile(p *problems, raw map[string]any) *Prefs {
	present, lens := map[string]bool{}, map[string]int{}
	top := &table{p: p, where: "at the top level", m: raw, present: present, lens: lens}
	top.get("version") // read by readVersion

	out := &Prefs{
		Site:   Site{IntervalMinutes: DefaultIntervalMinutes},
		Paths:  Paths{StateDir: DefaultStateDir, ControlSocket: DefaultControlSocket},
		Limits: Limits{OutboxMaxRecords: DefaultOutboxMaxRecords},
	}
	if t := top.sub("site", "[site]"); t != nil {
		t.int("sync_id", &out.Site.SyncID, 0, MaxSyncID, " (0 disables sync, 1 makes this box the primary, more makes it a satellite)")
		t.int("interval_minutes", &out.Site.IntervalMinutes, 0, MaxIntervalMinutes, " (minutes between sync cycles; 0 pauses sync)")
		readRequestSize(t, &out.Site.RequestSize)
		t.names("stores", &out.Site.Stores)
		t.unknown()
	}
	if t := top.sub("paths", "[paths]"); t != nil {
		t.string("state_dir", &out.Paths.StateDir)
		t.string("control_socket", &out.Paths.ControlSocket)
		t.string("vendor_keys", &out.Paths.VendorKeys)
		t.unknown()
	}
	if t := top.sub("listen", "[listen]"); t != nil {
		t.string("address", &out.Listen.Address)
		t.string("tls_cert", &out.Listen.TLSCert)
		t.string("tls_key", &out.Listen.TLSKey)
		t.string("omsupply_central_server_url", &out.Listen.OmSupplyCentralServerURL)
		readProxies(t, &out.Listen.TrustedProxies)
		t.unknown()
	}
	if t := top.sub("central", "[central]"); t != nil {
		t.string("database", &out.Central.Database)
		t.string("database_password_file", &out.Central.DatabasePasswordFile)
		t.int("max_connections", &out.Central.MaxConnections, 1, MaxDBConnections, " (connections this node opens to the database)")
		t.string("auth_key_file", &out.Central.AuthKeyFile)
		t.unknown()
	}
	if t := top.sub("admin", "[admin]"); t != nil {
		t.string("address", &out.Admin.Address)
		t.string("user", &out.Admin.User)
		t.string("password_hash", &out.Admin.PasswordHash)
		t.string("tls_cert", &out.Admin.TLSCert)
		t.string("tls_key", &out.Admin.TLSKey)
		t.unknown()
	}
	if t := top.sub("metrics", "[metrics]"); t != nil {
		t.string("textfile_dir", &out.Metrics.TextfileDir)
		t.unknown()
	}
	if t := top.sub("limits", "[limits]"); t != nil {
		t.int("outbox_max_records", &out.Limits.OutboxMaxRecords, 1, MaxOutboxMaxRecords, " (local writes are refused once the outbox holds this many)")
		t.unknown()
	}
	rows := top.rows("sync_with")
	out.SyncWith = make([]Peer, len(rows))
	for i, t := range rows {
		row := &out.SyncWith[i]
		t.int("sync_id", &row.SyncID, 0, MaxSyncID, "")
		t.string("user", &row.User)
		t.string("password_sha256", &row.PasswordSHA256)
		t.string("password_hash", &row.PasswordHash)
		t.string("url", &row.URL)
		t.names("stores", &row.Stores)
		t.string("hardware_id", &row.HardwareID)
		t.unknown()
	}
	if len(out.SyncWith) == 0 {
		out.SyncWith = nil
	}
	if t := top.sub("unlock", "[unlock]"); t != nil {
		t.string("code", &out.Unlock.Code)
		t.unknown()
	}
	top.unknown()

	c := checker{p: p, present: present, lens: lens, prefs: out}
	c.formats()
	switch {
	case !present["site"]:
		p.missing("site", "add a [site] table with sync_id (0 disables sync, 1 makes this box the primary, more makes it a satellite)")
	case !present["site.sync_id"]:
		p.missing("site.sync_id", "add sync_id to [site] (0 disables sync, 1 makes this box the primary, more makes it a satellite)")
	case out.Site.SyncID == 1:
		c.primary()
		if !present["listen.address"] {
			out.Listen.Address = DefaultListenAddress
		}
		if !present["admin.address"] {
			out.Admin.Address = DefaultAdminAddress
		}
		c.admin()
	case out.Site.SyncID > 1:
		c.satellite()
	}
	return out
}

// readRequestSize reads request_size: "auto" or a whole number 1..5000.
func readRequestSize(t *table, dst *RequestSize) {
	v, ok := t.get("request_size")
	if !ok {
		return
	}
	switch v := v.(type) {
	case string:
		if v == "auto" {
			*dst = RequestSize{}
			return
		}
	case int64:
		if v >= 1 && v <= MaxRequestSize {
			*dst = RequestSize{Fixed: int(v)}
			return
		}
		t.p.at(t.key("request_size"), `expected "auto" or a whole number from 1 to %d, got %d`, MaxRequestSize, v)
		return
	}
	t.p.at(t.key("request_size"), `expected "auto" or a whole number from 1 to %d, got %s`, MaxRequestSize, describe(v))
}

// readProxies reads trusted_proxies: CIDR prefixes or single addresses,
// each kept as its prefix ("10.1.2.3" → "10.1.2.3/32").
func readProxies(t *table, dst *[]string) {
	var list []string
	t.names("trusted_proxies", &list)
	key := t.key("trusted_proxies")
	for i, s := range list {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				t.p.at(indexPath(key, i), "expected an address or a CIDR prefix such as \"10.0.0.0/8\" (the load balancer's), got %s", quoteShort(s))
				continue
			}
			pfx = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if pfx.Masked() != pfx {
			t.p.at(indexPath(key, i), "%s has bits set past its /%d; write %s", quoteShort(s), pfx.Bits(), pfx.Masked())
			continue
		}
		*dst = append(*dst, pfx.String())
	}
}

// checker applies the rules that involve more than one value's type.
type checker struct {
	p       *problems
	present map[string]bool
	lens    map[string]int
	prefs   *Prefs
}

func (c *checker) has(key string) bool { return c.present[key] }

func rowKey(i int, key string) string { return keyPath(indexPath("sync_with", i), key) }

// formats checks every value that is present, whatever the role: a file with
// sync_id = 0 is still checked this far.
func (c *checker) formats() {
	pr := c.prefs
	c.absPath("paths.state_dir", pr.Paths.StateDir, false)
	c.absPath("paths.control_socket", pr.Paths.ControlSocket, false)
	if c.has("paths.control_socket") && len(pr.Paths.ControlSocket) > maxSocketPath {
		c.p.at("paths.control_socket", "is %d bytes long; a unix socket path can be at most %d bytes: choose a shorter path", len(pr.Paths.ControlSocket), maxSocketPath)
	}
	c.absPath("paths.vendor_keys", pr.Paths.VendorKeys, true)
	if c.has("listen.address") {
		c.address("listen.address", pr.Listen.Address)
	}
	c.adminFormats()
	c.absPath("listen.tls_cert", pr.Listen.TLSCert, true)
	c.absPath("listen.tls_key", pr.Listen.TLSKey, true)
	if c.has("listen.omsupply_central_server_url") && pr.Listen.OmSupplyCentralServerURL != "" {
		c.url("listen.omsupply_central_server_url", pr.Listen.OmSupplyCentralServerURL)
	}
	c.central()
	switch {
	case pr.Listen.TLSCert != "" && pr.Listen.TLSKey == "":
		c.p.at("listen.tls_cert", "tls_cert is set but tls_key is not: set both to serve HTTPS, or neither for HTTP")
	case pr.Listen.TLSKey != "" && pr.Listen.TLSCert == "":
		c.p.at("listen.tls_key", "tls_key is set but tls_cert is not: set both to serve HTTPS, or neither for HTTP")
	}
	for i, row := range pr.SyncWith {
		if k := rowKey(i, "user"); c.has(k) && row.User != "" {
			switch {
			case strings.Contains(row.User, ":"):
				c.p.at(k, "a user name cannot contain ':' (Basic auth separates user and password with it)")
			case strings.TrimSpace(row.User) != row.User:
				c.p.at(k, "%s has leading or trailing spaces; remove them", quoteShort(row.User))
			}
		}
		if k := rowKey(i, "password_sha256"); c.has(k) && !passwd.IsSHA256Hex(row.PasswordSHA256) {
			if passwd.IsSHA256Hex(strings.ToLower(row.PasswordSHA256)) {
				c.p.at(k, "write the hex in lowercase")
			} else {
				c.p.at(k, "expected the 64 lowercase hex characters of the password's SHA-256 (print it with `syncagent passwd`), got %d characters", len(row.PasswordSHA256))
			}
		}
		if k := rowKey(i, "password_hash"); c.has(k) {
			if passwd.IsSHA256Hex(row.PasswordHash) {
				c.p.at(k, "password_hash must be made by `syncagent passwd`, not a plain SHA-256")
			} else if err := passwd.Check(row.PasswordHash); err != nil {
				c.p.at(k, "expected a hash made by `syncagent passwd`: %v", err)
			}
		}
		if k := rowKey(i, "url"); c.has(k) && row.URL != "" {
			c.url(k, row.URL)
		}
		if k := rowKey(i, "hardware_id"); c.has(k) && (row.HardwareID == "" || strings.ContainsAny(row.HardwareID, " \t")) {
			c.p.at(k, "expected a hardware ID as printed by `syncagent hwid` (no spaces), or remove the key to pin on first contact")
		}
	}
}

// central checks [central]: a database URL that names PostgreSQL and
// carries no password, and the settings that only mean something with it.
func (c *checker) central() {
	ce := c.prefs.Central
	c.absPath("central.database_password_file", ce.DatabasePasswordFile, true)
	c.absPath("central.auth_key_file", ce.AuthKeyFile, true)
	if c.has("central.database") && ce.Database != "" {
		c.databaseURL("central.database", ce.Database)
	}
	if ce.Database == "" {
		for _, k := range []string{"central.database_password_file", "central.max_connections"} {
			if c.has(k) {
				c.p.at(k, "is only used with a database: set [central] database = \"postgres://…\", or remove it")
			}
		}
	}
}

// databaseURL checks a PostgreSQL connection URL. The password stays out of
// the prefs file (every technician who can read it would know it).
func (c *checker) databaseURL(key, raw string) {
	u, err := url.Parse(raw)
	const example = `"postgres://syncagent@db.example.org:5432/syncagent?sslmode=verify-full"`
	switch {
	case err != nil || u.Opaque != "":
		c.p.at(key, "expected a PostgreSQL URL such as %s, got %s", example, quoteShort(raw))
	case u.Scheme != "postgres" && u.Scheme != "postgresql":
		c.p.at(key, "expected a postgres:// URL such as %s, got %s", example, quoteShort(raw))
	case hasPassword(u):
		c.p.at(key, "the URL carries a password: remove it, and put it in database_password_file (or PGPASSWORD or ~/.pgpass of the service's user)")
	case u.Host == "" && u.Query().Get("host") == "":
		c.p.at(key, "the URL has no host; expected e.g. %s", example)
	case strings.Trim(u.Path, "/") == "":
		c.p.at(key, "the URL names no database; expected e.g. %s", example)
	}
}

func hasPassword(u *url.URL) bool {
	_, set := u.User.Password()
	return set || u.Query().Has("password")
}

// absPath checks a path setting that is in the file; "" means "none" for an
// optional one.
func (c *checker) absPath(key, path string, optional bool) {
	if !c.has(key) || optional && path == "" {
		return
	}
	if !filepath.IsAbs(path) {
		c.p.at(key, "expected an absolute path (starting with /), got %s", quoteShort(path))
	}
}

func (c *checker) address(key, addr string) {
	host, port, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n < 0 || n > 65535 || strings.ContainsAny(host, " /") {
		c.p.at(key, "expected host:port such as \"0.0.0.0:2048\" or \"[::]:2048\", got %s", quoteShort(addr))
	}
}

func (c *checker) url(key, raw string) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		c.p.at(key, "expected an http or https URL such as \"https://central.example.org:2048\", got %s", quoteShort(raw))
	case u.Scheme != "http" && u.Scheme != "https":
		c.p.at(key, "expected an http:// or https:// URL with a host, such as \"https://central.example.org:2048\", got %s", quoteShort(raw))
	case u.Host == "" || u.Hostname() == "":
		c.p.at(key, "the URL has no host; expected e.g. \"https://central.example.org:2048\"")
	case u.User != nil:
		c.p.at(key, "the URL cannot carry a user or password; use the user and password keys of the row")
	case u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		c.p.at(key, "the URL cannot have a query or fragment; give the server's base URL")
	}
}

// satellite checks sync_id > 1: at least one store, no [listen], exactly one
// row, for the primary (sync_id 1, user, password_sha256, url).
func (c *checker) satellite() {
	pr := c.prefs
	if !c.has("site.stores") {
		c.p.missing("site.stores", `a satellite needs the stores active on it, e.g. stores = ["store-a"]`)
	} else if n, isList := c.lens["site.stores"]; isList && n == 0 {
		c.p.at("site.stores", `a satellite needs at least one store: list the stores active on this site, e.g. stores = ["store-a"]`)
	}
	if c.has("listen") {
		c.p.at("listen", "[listen] is only used on the primary (sync_id = 1); remove it")
	}
	if c.has("admin") {
		c.p.at("admin", "[admin] is only used on the primary (sync_id = 1); a satellite's figures are `syncagent metrics` and [metrics] textfile_dir; remove it")
	}
	if c.has("central") {
		c.p.at("central", "[central] is only used on the primary (sync_id = 1); remove it")
	}
	switch len(pr.SyncWith) {
	case 0:
		const want = "a satellite needs one [[sync_with]] row for the primary, with sync_id = 1, user, password_sha256 and url"
		if !c.has("sync_with") {
			c.p.missing("sync_with", want)
		} else if _, isList := c.lens["sync_with"]; isList {
			c.p.at("sync_with", want)
		}
		return
	case 1:
	default:
		c.p.at(indexPath("sync_with", 1), "a satellite syncs with the primary only: keep exactly one [[sync_with]] row, found %d", len(pr.SyncWith))
	}
	row := pr.SyncWith[0]
	k := func(key string) string { return rowKey(0, key) }
	switch {
	case !c.has(k("sync_id")):
		c.p.missing(k("sync_id"), "a satellite's row is the primary's: add sync_id = 1")
	case row.SyncID != 1:
		c.p.at(k("sync_id"), "a satellite's row is the primary's, whose sync_id is 1; got %d", row.SyncID)
	}
	c.required(k("user"), row.User, "the user name this site logs in to the primary with")
	c.required(k("password_sha256"), row.PasswordSHA256, "the lowercase hex SHA-256 of this site's password (print it with `syncagent passwd`)")
	c.required(k("url"), row.URL, `the primary's URL, e.g. url = "https://central.example.org:2048"`)
	if c.has(k("password_hash")) {
		c.p.at(k("password_hash"), "password_hash belongs in the primary's site rows; a satellite's row carries password_sha256 instead")
	}
	if c.has(k("stores")) {
		c.p.at(k("stores"), "stores in a [[sync_with]] row are only used on the primary; list this site's stores in [site] stores")
	}
	if c.has(k("hardware_id")) {
		c.p.at(k("hardware_id"), "hardware_id is only used in the primary's site rows; remove it")
	}
}

// primary checks sync_id = 1: one row per satellite, each with a unique
// sync_id above 1, a unique user, a password_hash and stores. A row with a url
// is allowed: it disables sync (see SyncDisabledReason).
func (c *checker) primary() {
	ids := map[int]int{}      // sync_id -> row
	users := map[string]int{} // user -> row
	line := func(i int) int { return c.p.lines.find(indexPath("sync_with", i)) }
	for i, row := range c.prefs.SyncWith {
		k := func(key string) string { return rowKey(i, key) }
		switch {
		case !c.has(k("sync_id")):
			c.p.missing(k("sync_id"), "each site row needs its own sync_id above 1")
		case row.SyncID == 1:
			c.p.at(k("sync_id"), "sync_id 1 is the primary itself; give each site row its own sync_id above 1")
		case row.SyncID < 1:
			c.p.at(k("sync_id"), "expected a sync_id above 1 (each site row is a satellite), got %d", row.SyncID)
		default:
			if j, dup := ids[row.SyncID]; dup {
				c.p.at(k("sync_id"), "sync_id %d is already used by sync_with[%d] (line %d); sync IDs must be unique", row.SyncID, j, line(j))
			} else {
				ids[row.SyncID] = i
			}
		}
		if c.required(k("user"), row.User, "the user name this site logs in with") {
			if j, dup := users[row.User]; dup {
				c.p.at(k("user"), "user %s is already used by sync_with[%d] (line %d); user names must be unique", quoteShort(row.User), j, line(j))
			} else {
				users[row.User] = i
			}
		}
		switch {
		case c.has(k("password_sha256")) && !c.has(k("password_hash")):
			c.p.at(k("password_sha256"), "on the primary a site row keeps password_hash, made by `syncagent passwd`, not password_sha256: replace it")
		case c.has(k("password_sha256")):
			c.p.at(k("password_sha256"), "not used on the primary (it keeps only password_hash); remove it")
		default:
			c.required(k("password_hash"), row.PasswordHash, "the site's password_hash, made by `syncagent passwd`")
		}
		if !c.has(k("stores")) {
			c.p.missing(k("stores"), `the stores active on site %d, e.g. stores = ["store-a"]`, row.SyncID)
		} else if n, isList := c.lens[k("stores")]; isList && n == 0 {
			c.p.at(k("stores"), `site %d needs at least one store: list the stores active on that site`, row.SyncID)
		}
	}
}

// required reports a missing or empty string value; it returns true when the
// value is there.
func (c *checker) required(key, value, what string) bool {
	switch {
	case !c.has(key):
		c.p.missing(key, "add %s", what)
		return false
	case value == "":
		c.p.at(key, "cannot be empty: give %s", what)
		return false
	}
	return true
}
