package prefs

import (
	"strings"

	"syncagent/agent/passwd"
)

// adminFormats checks the [admin] and [metrics] values that are present,
// whatever the role.
func (c *checker) adminFormats() {
	pr := c.prefs
	if c.has("admin.address") {
		c.address("admin.address", pr.Admin.Address)
	}
	if c.has("admin.user") {
		switch u := pr.Admin.User; {
		case u == "":
			c.p.at("admin.user", "cannot be empty: give the admin's user name")
		case strings.Contains(u, ":"):
			c.p.at("admin.user", "a user name cannot contain ':' (Basic auth separates user and password with it)")
		case strings.TrimSpace(u) != u:
			c.p.at("admin.user", "%s has leading or trailing spaces; remove them", quoteShort(u))
		}
	}
	if c.has("admin.password_hash") {
		if passwd.IsSHA256Hex(pr.Admin.PasswordHash) {
			c.p.at("admin.password_hash", "password_hash must be made by `syncagent passwd`, not a plain SHA-256")
		} else if err := passwd.Check(pr.Admin.PasswordHash); err != nil {
			c.p.at("admin.password_hash", "expected a hash made by `syncagent passwd`: %v", err)
		}
	}
	c.absPath("admin.tls_cert", pr.Admin.TLSCert, true)
	c.absPath("admin.tls_key", pr.Admin.TLSKey, true)
	switch {
	case pr.Admin.TLSCert != "" && pr.Admin.TLSKey == "":
		c.p.at("admin.tls_cert", "tls_cert is set but tls_key is not: set both to serve HTTPS, or neither for HTTP")
	case pr.Admin.TLSKey != "" && pr.Admin.TLSCert == "":
		c.p.at("admin.tls_key", "tls_key is set but tls_cert is not: set both to serve HTTPS, or neither for HTTP")
	}
	c.absPath("metrics.textfile_dir", pr.Metrics.TextfileDir, false)
}

// admin checks [admin] on the primary: a table that is there needs both
// credentials (the listener serves nothing without them), and its address
// cannot be the sync listener's.
func (c *checker) admin() {
	pr := c.prefs
	if !c.has("admin") {
		return
	}
	if !c.has("admin.user") {
		c.p.missing("admin.user", "the admin listener needs user and password_hash (print the hash with `syncagent passwd`); or remove [admin]")
	}
	if !c.has("admin.password_hash") {
		c.p.missing("admin.password_hash", "the admin listener needs user and password_hash (print the hash with `syncagent passwd`); or remove [admin]")
	}
	if pr.Admin.Address != "" && pr.Admin.Address == pr.Listen.Address {
		c.p.at("admin.address", "is the sync listener's address too (listen.address): give the admin listener a port of its own")
	}
}
