package prefs

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// FuzzParse protects the prefs decoder, which reads a file a technician
// edits by hand: it never panics; it is deterministic (same errors, same
// digest); every error points inside the file; and a file that parses,
// written back out as plain TOML and parsed again, gives the same Prefs and
// the same LockedDigest.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.toml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("version = 1\nsite = { sync_id = 0 }\n"))
	f.Add([]byte("version = 1\n[site]\nsync_id = 1\n[[sync_with]]\n[[sync_with]]\nsync_id = 3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		locate(string(data)) // on any input, not only valid TOML
		p, err := Parse("f.toml", data)
		p2, err2 := Parse("f.toml", data)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("Parse is not deterministic:\n%v\n---\n%v", err, err2)
		}
		if err != nil {
			lines := bytes.Count(data, []byte("\n")) + 1
			errs := Errors(err)
			if len(errs) == 0 {
				t.Fatalf("error without *Error: %v", err)
			}
			for _, e := range errs {
				if e.File != "f.toml" || e.Line < 0 || e.Line > lines {
					t.Fatalf("error outside the file (%d lines): %v", lines, e)
				}
			}
			return
		}
		if p.LockedDigest() != p2.LockedDigest() {
			t.Fatal("LockedDigest is not deterministic")
		}
		out := encodeTOML(t, p)
		q, err := Parse("f.toml", out)
		if err != nil {
			t.Fatalf("re-encoded prefs do not parse: %v\n%s", err, out)
		}
		if q.LockedDigest() != p.LockedDigest() {
			t.Fatalf("re-encoded prefs digest differently\n%s", out)
		}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("re-encoded prefs differ:\n%+v\n%+v\n%s", p, q, out)
		}
	})
}

// encodeTOML writes p as a plain TOML file, leaving out empty values, so that
// FuzzParse can check that a parsed file survives being written another way.
func encodeTOML(t *testing.T, p *Prefs) []byte {
	t.Helper()
	put := func(m map[string]any, k string, v any) {
		switch v := v.(type) {
		case string:
			if v == "" {
				return
			}
		case []string:
			if len(v) == 0 {
				return
			}
		case map[string]any:
			if len(v) == 0 {
				return
			}
		}
		m[k] = v
	}
	site := map[string]any{"sync_id": p.Site.SyncID, "interval_minutes": p.Site.IntervalMinutes}
	if p.Site.RequestSize.IsAuto() {
		site["request_size"] = "auto"
	} else {
		site["request_size"] = p.Site.RequestSize.Fixed
	}
	put(site, "stores", p.Site.Stores)
	paths := map[string]any{}
	put(paths, "state_dir", p.Paths.StateDir)
	put(paths, "control_socket", p.Paths.ControlSocket)
	put(paths, "vendor_keys", p.Paths.VendorKeys)
	listen := map[string]any{}
	put(listen, "address", p.Listen.Address)
	put(listen, "tls_cert", p.Listen.TLSCert)
	put(listen, "tls_key", p.Listen.TLSKey)
	put(listen, "omsupply_central_server_url", p.Listen.OmSupplyCentralServerURL)
	put(listen, "trusted_proxies", p.Listen.TrustedProxies)
	central := map[string]any{}
	put(central, "database", p.Central.Database)
	put(central, "database_password_file", p.Central.DatabasePasswordFile)
	if p.Central.MaxConnections != 0 {
		central["max_connections"] = p.Central.MaxConnections
	}
	put(central, "auth_key_file", p.Central.AuthKeyFile)
	unlock := map[string]any{}
	put(unlock, "code", p.Unlock.Code)
	top := map[string]any{
		"version": p.Version,
		"site":    site,
		"limits":  map[string]any{"outbox_max_records": p.Limits.OutboxMaxRecords},
	}
	put(top, "paths", paths)
	put(top, "listen", listen)
	put(top, "unlock", unlock)
	put(top, "central", central)
	admin := map[string]any{}
	if p.Admin.Address != DefaultAdminAddress {
		put(admin, "address", p.Admin.Address)
	}
	put(admin, "user", p.Admin.User)
	put(admin, "password_hash", p.Admin.PasswordHash)
	put(admin, "tls_cert", p.Admin.TLSCert)
	put(admin, "tls_key", p.Admin.TLSKey)
	put(top, "admin", admin)
	metrics := map[string]any{}
	put(metrics, "textfile_dir", p.Metrics.TextfileDir)
	put(top, "metrics", metrics)
	var rows []map[string]any
	for _, r := range p.SyncWith {
		row := map[string]any{"sync_id": r.SyncID}
		put(row, "user", r.User)
		put(row, "password_sha256", r.PasswordSHA256)
		put(row, "password_hash", r.PasswordHash)
		put(row, "url", r.URL)
		put(row, "stores", r.Stores)
		put(row, "hardware_id", r.HardwareID)
		rows = append(rows, row)
	}
	if rows != nil {
		top["sync_with"] = rows
	}
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(top); err != nil {
		t.Fatalf("encode: %v", err)
	}
	return []byte(b.String())
}
