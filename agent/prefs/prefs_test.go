package prefs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func parseFile(t *testing.T, path string) (*Prefs, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return Parse(filepath.Base(path), data)
}

func mustParseFile(t *testing.T, path string) *Prefs {
	t.Helper()
	p, err := parseFile(t, path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return p
}

func mustParse(t *testing.T, src string) *Prefs {
	t.Helper()
	p, err := Parse("prefs.toml", []byte(src))
	if err != nil {
		t.Fatalf("Parse:\n%s\n---\n%v", src, err)
	}
	return p
}

const (
	sha12  = "e455e65db3c1452cc57af85c982d3c3f10ff06b5a8c4c1fe51e65416ea8b518a"
	hash12 = "pbkdf2-sha256$1000$VPBC6N2ft70S82Jdhoi8Ag$xlgtFb1t9sowoQr2f1B7V3jRkPTGW/F+SZixoi5cgIs"
	hash13 = "pbkdf2-sha256$1000$su3R0S7ic9MvdpgeKjcoug$eNPsClmnhk5mmAZ/dm3DGFgtWIeh+uLblRHVYSwRYDA"
)

var goodFixtures = []struct {
	file   string
	role   Role
	reason string
	check  func(t *testing.T, p *Prefs)
}{
	{"satellite.toml", RoleSatellite, "", func(t *testing.T, p *Prefs) {
		want := &Prefs{
			Version: 1,
			Site:    Site{SyncID: 12, IntervalMinutes: 15, Stores: []string{"store-a", "store-b"}},
			Paths:   Paths{StateDir: "/var/lib/syncagent", ControlSocket: "/run/syncagent/control.sock"},
			Limits:  Limits{OutboxMaxRecords: 500_000},
			SyncWith: []Peer{{SyncID: 1, User: "clinic-12", PasswordSHA256: sha12,
				URL: "https://central.example.org:2048"}},
			Unlock: Unlock{Code: "ABCDE-FGHJK"},
			Source: "satellite.toml",
		}
		if !reflect.DeepEqual(p, want) {
			t.Errorf("got  %+v\nwant %+v", p, want)
		}
		if got, want := p.Primary().URL, "https://central.example.org:2048"; got != want {
			t.Errorf("Primary().URL = %q, want %q", got, want)
		}
	}},
	// Every default applies when left out.
	{"satellite-minimal.toml", RoleSatellite, "", func(t *testing.T, p *Prefs) {
		if p.Site.IntervalMinutes != 10 || !p.Site.RequestSize.IsAuto() ||
			p.Paths != (Paths{StateDir: "/var/lib/syncagent", ControlSocket: "/run/syncagent/control.sock"}) ||
			p.Limits.OutboxMaxRecords != DefaultOutboxMaxRecords || !reflect.DeepEqual(p.Listen, Listen{}) {
			t.Errorf("defaults not applied: %+v", p)
		}
	}},
	{"primary.toml", RolePrimary, "", func(t *testing.T, p *Prefs) {
		if got, want := p.Site.RequestSize, (RequestSize{Fixed: 500}); got != want {
			t.Errorf("RequestSize = %v, want %v", got, want)
		}
		if got, want := p.Listen, (Listen{Address: "0.0.0.0:2443", TLSCert: "/etc/syncagent/tls/cert.pem", TLSKey: "/etc/syncagent/tls/key.pem"}); !reflect.DeepEqual(got, want) {
			t.Errorf("Listen = %+v, want %+v", got, want)
		}
		if len(p.SyncWith) != 2 || p.SyncWith[1].HardwareID != "hw1-5f2c9a" || p.SyncWith[0].PasswordHash != hash12 {
			t.Errorf("SyncWith = %+v", p.SyncWith)
		}
		if p.Primary() != nil {
			t.Errorf("Primary() on the primary = %+v, want nil", p.Primary())
		}
		if got, want := p.Admin, (Admin{Address: DefaultAdminAddress}); got != want || p.Admin.Enabled() {
			t.Errorf("Admin = %+v, want the loopback default and no listener", got)
		}
	}},
	{"primary-admin.toml", RolePrimary, "", func(t *testing.T, p *Prefs) {
		want := Admin{Address: "0.0.0.0:8443", User: "central-team", PasswordHash: hash12, TLSCert: "/etc/syncagent/tls/cert.pem", TLSKey: "/etc/syncagent/tls/key.pem"}
		if p.Admin != want || !p.Admin.Enabled() {
			t.Errorf("Admin = %+v, want %+v", p.Admin, want)
		}
		if p.Metrics.TextfileDir != "/var/lib/node_exporter/textfile" {
			t.Errorf("Metrics = %+v", p.Metrics)
		}
	}},
	// A node of several on one PostgreSQL database, behind a load balancer.
	{"primary-postgres.toml", RolePrimary, "", func(t *testing.T, p *Prefs) {
		want := Central{Database: "postgres://syncagent@db.example.org:5432/syncagent?sslmode=verify-full",
			DatabasePasswordFile: "/etc/syncagent/db-password", MaxConnections: 16, AuthKeyFile: "/etc/syncagent/auth.key"}
		if p.Central != want {
			t.Errorf("Central = %+v, want %+v", p.Central, want)
		}
		if got, want := p.Listen.TrustedProxies, []string{"10.0.0.0/8", "192.168.1.7/32"}; !reflect.DeepEqual(got, want) {
			t.Errorf("TrustedProxies = %q, want %q", got, want)
		}
	}},
	// A url in a site row on the primary is accepted but disables sync, saying which row.
	{"primary-url-row.toml", RolePrimary, "the row for site 14 (sync_with[1]) has a url: on the primary any site row with a URL disables sync; remove the url", func(t *testing.T, p *Prefs) {
		if got, want := p.Listen.Address, "0.0.0.0:2048"; got != want {
			t.Errorf("Listen.Address = %q, want the primary's default %q", got, want)
		}
	}},
	{"disabled.toml", RoleDisabled, "sync_id is 0", func(t *testing.T, p *Prefs) {
		if p.Listen.Address != "" {
			t.Errorf("Listen.Address = %q on a disabled box, want none", p.Listen.Address)
		}
		if p.Primary() != nil {
			t.Errorf("Primary() = %+v, want nil", p.Primary())
		}
	}},
}

func TestParse_Good(t *testing.T) {
	for _, tt := range goodFixtures {
		t.Run(tt.file, func(t *testing.T) {
			p := mustParseFile(t, filepath.Join("testdata/good", tt.file))
			if got := p.Role(); got != tt.role {
				t.Errorf("Role() = %v, want %v", got, tt.role)
			}
			if got := p.SyncDisabledReason(); got != tt.reason {
				t.Errorf("SyncDisabledReason() = %q, want %q", got, tt.reason)
			}
			tt.check(t, p)
		})
	}
}

// Every fixture under testdata/good is in TestParse_Good and every one under
// testdata/bad in TestParse_Bad, so a new fixture cannot go untested.
func TestFixtures_AllListed(t *testing.T) {
	listed := map[string]bool{}
	for _, f := range goodFixtures {
		listed["good/"+f.file] = true
	}
	for _, f := range badFixtures {
		listed["bad/"+f.file] = true
	}
	files, _ := filepath.Glob("testdata/*/*.toml")
	for _, f := range files {
		f, _ = filepath.Rel("testdata", f)
		if !listed[filepath.ToSlash(f)] {
			t.Errorf("testdata/%s has no test case", f)
		}
	}
}

type wantErr struct {
	line int
	key  string
	msg  string // a substring of Msg
}

var badFixtures = []struct {
	file string
	want []wantErr
}{
	{"syntax-trailing-garbage.toml", []wantErr{{3, "", "invalid TOML at column 13"}}},
	{"syntax-duplicate-key.toml", []wantErr{{4, "", "already been defined"}}},
	{"missing-version.toml", []wantErr{{0, "version", "missing: add `version = 1`"}}},
	{"version-newer.toml", []wantErr{{1, "version", "version 2 is newer than this syncagent understands"}}},
	{"version-zero.toml", []wantErr{{1, "version", "expected the format version 1, got the integer 0"}}},
	{"missing-site.toml", []wantErr{{0, "site", "missing: add a [site] table"}}},
	{"missing-sync-id.toml", []wantErr{{2, "site.sync_id", "missing: add sync_id to [site]"}}},
	{"unknown-key-near-miss.toml", []wantErr{{5, "site.intervall_minutes", `unknown key in [site]; did you mean "interval_minutes"? (valid keys there: sync_id, interval_minutes, request_size, stores)`}}},
	{"unknown-table.toml", []wantErr{{10, "sites", `unknown table at the top level; did you mean "site"?`}}},
	{"misplaced-key.toml", []wantErr{{10, "site.state_dir", "state_dir belongs in [paths]"}}},
	{"misplaced-top-level.toml", []wantErr{
		{0, "version", "missing"},
		{4, "site.version", "version belongs at the top level: move it above the first [table] line"},
	}},
	{"unknown-key-password.toml", []wantErr{{8, "sync_with[0].password", "did you mean password_sha256 (on a satellite) or password_hash (on the primary)"}}},
	{"sync-id-string.toml", []wantErr{{3, "site.sync_id", `got the string "12"`}}},
	{"sync-id-negative.toml", []wantErr{{3, "site.sync_id", "expected a whole number from 0 to 2147483647"}}},
	{"sync-id-float.toml", []wantErr{{3, "site.sync_id", "got the decimal 12.0 (write whole numbers without a decimal point)"}}},
	{"request-size-too-big.toml", []wantErr{{5, "site.request_size", `expected "auto" or a whole number from 1 to 5000, got 9000`}}},
	{"request-size-word.toml", []wantErr{{5, "site.request_size", `got the string "big"`}}},
	{"interval-too-long.toml", []wantErr{{5, "site.interval_minutes", "expected a whole number from 0 to 10080"}}},
	{"stores-duplicate.toml", []wantErr{{6, "site.stores[1]", `"store-a" is listed twice`}}},
	{"stores-empty-name.toml", []wantErr{{4, "site.stores[1]", "a name cannot be empty"}}},
	{"stores-not-list.toml", []wantErr{{4, "site.stores", "expected a list of names"}}},
	{"satellite-no-stores.toml", []wantErr{{4, "site.stores", "a satellite needs at least one store"}}},
	{"satellite-missing-stores.toml", []wantErr{{2, "site.stores", "missing: a satellite needs the stores active on it"}}},
	{"satellite-no-row.toml", []wantErr{{0, "sync_with", "missing: a satellite needs one [[sync_with]] row for the primary"}}},
	{"satellite-two-rows.toml", []wantErr{{10, "sync_with[1]", "keep exactly one [[sync_with]] row, found 2"}}},
	{"satellite-row-not-primary.toml", []wantErr{{6, "sync_with[0].sync_id", "whose sync_id is 1; got 5"}}},
	{"satellite-password-hash.toml", []wantErr{{10, "sync_with[0].password_hash", "a satellite's row carries password_sha256 instead"}}},
	{"satellite-row-extras.toml", []wantErr{
		{10, "sync_with[0].stores", "only used on the primary"},
		{11, "sync_with[0].hardware_id", "only used in the primary's site rows"},
	}},
	{"satellite-sha256-plain.toml", []wantErr{{8, "sync_with[0].password_sha256", "expected the 64 lowercase hex characters of the password's SHA-256 (print it with `syncagent passwd`), got 7 characters"}}},
	{"satellite-sha256-uppercase.toml", []wantErr{{8, "sync_with[0].password_sha256", "lowercase"}}},
	{"satellite-url-ftp.toml", []wantErr{{9, "sync_with[0].url", "expected an http:// or https:// URL"}}},
	{"satellite-url-no-host.toml", []wantErr{{9, "sync_with[0].url", "expected an http:// or https:// URL with a host"}}},
	{"satellite-url-userinfo.toml", []wantErr{{9, "sync_with[0].url", "cannot carry a user or password"}}},
	{"satellite-missing-url-user.toml", []wantErr{
		{5, "sync_with[0].user", "missing: add the user name"},
		{5, "sync_with[0].url", "missing: add the primary's URL"},
	}},
	{"satellite-user-colon.toml", []wantErr{{7, "sync_with[0].user", "cannot contain ':'"}}},
	{"satellite-listen.toml", []wantErr{{10, "listen", "[listen] is only used on the primary"}}},
	{"satellite-admin.toml", []wantErr{{10, "admin", "[admin] is only used on the primary"}}},
	{"satellite-central.toml", []wantErr{{10, "central", "[central] is only used on the primary"}}},
	{"primary-central.toml", []wantErr{
		{5, "listen.trusted_proxies[0]", "has bits set past its /8; write 10.0.0.0/8"},
		{5, "listen.trusted_proxies[1]", `expected an address or a CIDR prefix`},
		{7, "central.database", "the URL carries a password: remove it, and put it in database_password_file"},
		{8, "central.max_connections", "expected a whole number from 1 to 1000"},
		{9, "central.auth_key_file", "expected an absolute path"},
	}},
	{"primary-central-no-database.toml", []wantErr{
		{5, "central.database_password_file", "is only used with a database"},
		{6, "central.max_connections", "is only used with a database"},
	}},
	{"primary-central-not-postgres.toml", []wantErr{{5, "central.database", "expected a postgres:// URL"}}},
	{"primary-admin-half.toml", []wantErr{
		{6, "admin.password_hash", "missing: the admin listener needs user and password_hash"},
		{7, "admin.address", "is the sync listener's address too"},
		{9, "admin.tls_key", "tls_key is set but tls_cert is not"},
		{11, "metrics.textfile_dir", "expected an absolute path"},
	}},
	{"primary-plain-sha256-hash.toml", []wantErr{{7, "sync_with[0].password_hash", "password_hash must be made by `syncagent passwd`, not a plain SHA-256"}}},
	{"primary-password-sha256.toml", []wantErr{{7, "sync_with[0].password_sha256", "on the primary a site row keeps password_hash"}}},
	{"primary-bad-hash.toml", []wantErr{{7, "sync_with[0].password_hash", "expected a hash made by `syncagent passwd`: malformed password hash: salt is 4 bytes"}}},
	{"primary-duplicate-sync-id.toml", []wantErr{{10, "sync_with[1].sync_id", "sync_id 12 is already used by sync_with[0] (line 4)"}}},
	{"primary-duplicate-user.toml", []wantErr{{11, "sync_with[1].user", `user "clinic-12" is already used by sync_with[0] (line 4)`}}},
	{"primary-row-sync-id-1.toml", []wantErr{{5, "sync_with[0].sync_id", "sync_id 1 is the primary itself"}}},
	{"primary-row-no-stores.toml", []wantErr{{8, "sync_with[0].stores", "site 12 needs at least one store"}}},
	{"primary-row-missing-hash.toml", []wantErr{{4, "sync_with[0].password_hash", "missing: add the site's password_hash"}}},
	{"primary-tls-half.toml", []wantErr{{11, "listen.tls_cert", "tls_cert is set but tls_key is not: set both"}}},
	{"primary-listen-bad-address.toml", []wantErr{{5, "listen.address", `expected host:port such as "0.0.0.0:2048"`}}},
	{"paths-relative.toml", []wantErr{{11, "paths.state_dir", "expected an absolute path"}}},
	{"paths-socket-too-long.toml", []wantErr{{11, "paths.control_socket", "a unix socket path can be at most 107 bytes"}}},
	{"sync-with-as-table.toml", []wantErr{{5, "sync_with", "expected [[sync_with]] rows"}}},
	{"limits-zero.toml", []wantErr{{11, "limits.outbox_max_records", "expected a whole number from 1 to 1000000000"}}},
	// All problems come back at once, in line order.
	{"many-problems.toml", []wantErr{
		{4, "site.request_size", `got 0`},
		{5, "site.stores[1]", `"a" is listed twice`},
		{9, "sync_with[0].password_sha256", "got 4 characters"},
		{11, "sync_with[0].colour", "unknown key in [[sync_with]] rows"},
	}},
}

func TestParse_Bad(t *testing.T) {
	for _, tt := range badFixtures {
		t.Run(tt.file, func(t *testing.T) {
			p, err := parseFile(t, filepath.Join("testdata/bad", tt.file))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", p)
			}
			if p != nil {
				t.Errorf("Parse returned prefs with an error")
			}
			got := Errors(err)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(got), len(tt.want), err)
			}
			for i, w := range tt.want {
				g := got[i]
				if g.File != tt.file || g.Line != w.line || g.Key != w.key || !strings.Contains(g.Msg, w.msg) {
					t.Errorf("error %d = %q\nwant %s:%d: %s: …%s…", i, g.Error(), tt.file, w.line, w.key, w.msg)
				}
			}
		})
	}
}

// The message format `prefs check` and the journal show, exactly.
func TestError_Error(t *testing.T) {
	_, err := parseFile(t, "testdata/bad/request-size-too-big.toml")
	want := `request-size-too-big.toml:5: site.request_size: expected "auto" or a whole number from 1 to 5000, got 9000`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "p.toml", Line: 3, Key: "site", Msg: "m"}, "p.toml:3: site: m"},
		{Error{File: "p.toml", Msg: "m"}, "p.toml: m"},
		{Error{Key: "version", Msg: "m"}, "prefs: version: m"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// "No such file" and "invalid file" are different errors (tailscale's rule).
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(filepath.Join(dir, "missing.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
	if Errors(err) != nil {
		t.Errorf("Load(missing) returned *Error values: %v", err)
	}

	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("version = 1\n[site]\nsync_id = -1\n"), 0o600)
	_, err = Load(bad)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(bad) = %v, want a parse error", err)
	}
	if errs := Errors(err); len(errs) != 1 || errs[0].File != bad || errs[0].Line != 3 {
		t.Errorf("Load(bad) errors = %v, want one at %s:3", errs, bad)
	}

	good := filepath.Join(dir, "good.toml")
	data, _ := os.ReadFile("testdata/good/satellite.toml")
	os.WriteFile(good, data, 0o600)
	p, err := Load(good)
	if err != nil || p.Source != good {
		t.Errorf("Load(good) = %+v, %v", p, err)
	}
}

// A huge file is refused before it is decoded (bounded memory).
func TestParse_TooLarge(t *testing.T) {
	data := []byte("version = 1\n" + strings.Repeat("# padding\n", MaxFileSize/10+1))
	if _, err := Parse("big.toml", data); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v, want a size error", err)
	}
}

func TestParse_Equivalents(t *testing.T) {
	// Inline tables, dotted keys and arrays of inline tables read the same as
	// [tables] and [[arrays of tables]].
	src := `version = 1
site = { sync_id = 12, stores = ['store-a'] }
paths.state_dir = "/var/lib/syncagent"
sync_with = [
  { sync_id = 1, user = "clinic-12", password_sha256 = "` + sha12 + `",
    url = "http://10.0.0.1:2048" },
]
`
	want := mustParseFile(t, "testdata/good/satellite-minimal.toml")
	got := mustParse(t, src)
	got.Source, want.Source = "", ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// Problems inside an array of inline tables still get their own line.
func TestParse_InlineRowLines(t *testing.T) {
	src := `version = 1
site.sync_id = 1
sync_with = [
  { sync_id = 12, user = "a", password_hash = "` + hash12 + `", stores = ["s"] },
  { sync_id = 13, user = "a", password_hash = "` + hash13 + `", stores = ["s"] },
]
`
	_, err := Parse("p.toml", []byte(src))
	errs := Errors(err)
	if len(errs) != 1 || errs[0].Line != 5 || errs[0].Key != "sync_with[1].user" {
		t.Fatalf("err = %v, want p.toml:5: sync_with[1].user: …", err)
	}
}

func TestRole_String(t *testing.T) {
	for r, want := range map[Role]string{RoleDisabled: "disabled", RolePrimary: "primary", RoleSatellite: "satellite", Role(7): "Role(7)"} {
		if got := r.String(); got != want {
			t.Errorf("Role(%d).String() = %q, want %q", int(r), got, want)
		}
	}
}

func TestPrefs_SyncDisabledReason(t *testing.T) {
	sat := mustParseFile(t, "testdata/good/satellite.toml")
	paused := *sat
	paused.Site.IntervalMinutes = 0
	if got, want := paused.SyncDisabledReason(), "interval_minutes is 0 (paused)"; got != want {
		t.Errorf("paused: %q, want %q", got, want)
	}
	if got := paused.Interval(); got != 0 {
		t.Errorf("paused Interval() = %v", got)
	}
	if got := sat.Interval().Minutes(); got != 15 {
		t.Errorf("Interval() = %v minutes, want 15", got)
	}
	pri := mustParseFile(t, "testdata/good/primary.toml")
	two := *pri
	two.SyncWith = []Peer{{SyncID: 12, URL: "https://a"}, {SyncID: 13}, {SyncID: 14, URL: "https://b"}}
	if got := two.SyncDisabledReason(); !strings.HasPrefix(got, "the rows for site 12 (sync_with[0]) and 1 more sites have a url") {
		t.Errorf("two url rows: %q", got)
	}
	var none *Prefs
	if none.SyncDisabledReason() == "" || none.Role() != RoleDisabled {
		t.Errorf("nil prefs: reason %q role %v", none.SyncDisabledReason(), none.Role())
	}
}

// Primary returns a copy: changing it does not change the shared snapshot.
func TestPrefs_Primary(t *testing.T) {
	p := mustParseFile(t, "testdata/good/satellite.toml")
	row := p.Primary()
	row.URL = "changed"
	if p.SyncWith[0].URL == "changed" {
		t.Fatal("Primary() aliases the prefs")
	}
}

func TestMigrations(t *testing.T) {
	// Every version below the current one has a converter, and none above.
	for v := 1; v < CurrentVersion; v++ {
		if migrations[v] == nil {
			t.Errorf("no converter from version %d", v)
		}
		// Each converter comes with an old file that must still parse.
		if _, err := parseFile(t, filepath.Join("testdata/migrate", fmt.Sprintf("v%d.toml", v))); err != nil {
			t.Errorf("v%d file: %v", v, err)
		}
	}
	for v := range migrations {
		if v < 1 || v >= CurrentVersion {
			t.Errorf("converter from version %d is outside 1..%d", v, CurrentVersion-1)
		}
	}
}

// Files saved by Windows editors (CRLF line ends, a UTF-8 byte order mark)
// read the same and report the same lines.
func TestParse_CRLFAndBOM(t *testing.T) {
	for _, name := range []string{"good/satellite.toml", "bad/many-problems.toml"} {
		data := readFixture(t, filepath.Join("testdata", name))
		want, wantErr := Parse("p.toml", []byte(data))
		got, gotErr := Parse("p.toml", []byte("\ufeff"+strings.ReplaceAll(data, "\n", "\r\n")))
		if !reflect.DeepEqual(got, want) || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Errorf("%s with CRLF and BOM:\n%+v\n%v\nwant\n%+v\n%v", name, got, gotErr, want, wantErr)
		}
	}
}
