package prefs

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Spellings of testdata/good/satellite.toml and primary.toml that mean the
// same locked settings; LockedDigest must not tell them apart.
func TestLockedDigest_Invariance(t *testing.T) {
	sat := mustParseFile(t, "testdata/good/satellite.toml").LockedDigest()
	pri := mustParseFile(t, "testdata/good/primary.toml").LockedDigest()
	tests := []struct {
		name, want, src string
	}{
		{"satellite: reordered keys and tables, no comments, other whitespace", sat, `
   version   =   1
[[sync_with]]
url="https://central.example.org:2048"
password_sha256='` + sha12 + `'
user   =   "clinic-12"
sync_id=1
[limits]
	outbox_max_records = 500000
[site]
	stores = [ "store-a" , "store-b" , ]
	request_size="auto"
	sync_id=12
	interval_minutes=15
[paths]
control_socket = "/run/syncagent/control.sock"
state_dir = "/var/lib/syncagent"
[unlock]
code = "ABCDE-FGHJK"
`},
		{"satellite: inline tables, dotted keys, defaults left out, stores reordered, other number spellings", sat, `
version = 0x1
site = { sync_id = 0o14, stores = ["store-b", "store-a"], interval_minutes = 15 }
limits.outbox_max_records = 5_00_000
sync_with = [{ sync_id = 1, user = "clinic\u002D12", password_sha256 = "` + sha12 + `", url = """https://central.example.org:2048""" }]
unlock.code = "ABCDE-FGHJK"
`},
		{"satellite: only the interval and the unlock code differ", sat, strings.NewReplacer(
			"interval_minutes = 15", "interval_minutes = 0",
			`code = "ABCDE-FGHJK"`, `code = "ZZZZZ-ZZZZZ"`,
		).Replace(readFixture(t, "testdata/good/satellite.toml"))},
		{"primary: rows and stores reordered, rows inline", pri, `
version = 1
sync_with = [
  { sync_id = 13, user = "clinic-13", password_hash = "` + hash13 + `", stores = ["store-c"], hardware_id = "hw1-5f2c9a" },
  { sync_id = 12, user = "clinic-12", password_hash = "` + hash12 + `", stores = ["store-b", "store-a"] },
]
[site]
sync_id = 1
request_size = 500
stores = ["central"]
[paths]
state_dir = "/srv/syncagent"
vendor_keys = "/etc/syncagent/vendor-keys"
[listen]
tls_key = "/etc/syncagent/tls/key.pem"
tls_cert = "/etc/syncagent/tls/cert.pem"
address = "0.0.0.0:2443"
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustParse(t, tt.src).LockedDigest(); got != tt.want {
				t.Errorf("digest = %s, want %s", got, tt.want)
			}
		})
	}
}

func readFixture(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// Each locked setting changes the digest; the interval and the unlock code do
// not. The walk covers every field of Prefs by reflection, so a setting added
// later is locked unless it is added to unlocked here on purpose, and Changes
// must name it.
func TestLockedDigest_Sensitivity(t *testing.T) {
	unlocked := map[string]bool{"site.interval_minutes": true, "unlock.code": true, "source": true}
	for _, file := range []string{"testdata/good/satellite.toml", "testdata/good/primary.toml"} {
		base := mustParseFile(t, file)
		for _, m := range mutations(base) {
			t.Run(file+"/"+m.key, func(t *testing.T) {
				changed := base.LockedDigest() != m.prefs.LockedDigest()
				if changed == unlocked[m.key] {
					t.Errorf("changing %s: digest changed = %v, want %v", m.key, changed, !unlocked[m.key])
				}
				if got := base.LockedEqual(m.prefs); got == changed {
					t.Errorf("LockedEqual = %v, digest changed = %v", got, changed)
				}
				if m.key == "source" {
					return
				}
				changes := Changes(base, m.prefs)
				want := 1
				if m.key == "sync_with.sync_id" {
					want = 2 // another sync_id is another site: one row added, one removed
				}
				if len(changes) != want {
					t.Fatalf("Changes = %+v, want %d", changes, want)
				}
				for _, c := range changes {
					if c.Key != m.changeKey || c.Locked == unlocked[m.key] {
						t.Errorf("Changes = %+v, want %s locked=%v", changes, m.changeKey, !unlocked[m.key])
					}
				}
			})
		}
	}
}

type mutation struct {
	key       string // the field, as a lowercase dotted name
	changeKey string // the Change key it must produce
	prefs     *Prefs
}

// mutations returns, for every leaf field of p (and of its first row), a deep
// copy of p with only that field changed.
func mutations(p *Prefs) []mutation {
	var out []mutation
	top := reflect.TypeOf(*p)
	for i := 0; i < top.NumField(); i++ {
		f := top.Field(i)
		switch f.Type.Kind() {
		case reflect.Struct:
			for j := 0; j < f.Type.NumField(); j++ {
				sub := f.Type.Field(j)
				key := tomlName(f.Name) + "." + tomlName(sub.Name)
				if f.Name == "Site" && sub.Name == "RequestSize" {
					key = "site.request_size"
				}
				c := clone(p)
				bump(reflect.ValueOf(c).Elem().Field(i).Field(j))
				out = append(out, mutation{key, key, c})
			}
		case reflect.Slice: // SyncWith: change each field of row 0
			row := f.Type.Elem()
			for j := 0; j < row.NumField(); j++ {
				key := "sync_with." + tomlName(row.Field(j).Name)
				c := clone(p)
				bump(reflect.ValueOf(c).Elem().Field(i).Index(0).Field(j))
				changeKey := "sync_with[0]." + tomlName(row.Field(j).Name)
				if row.Field(j).Name == "SyncID" {
					changeKey = "sync_with[0]"
				}
				out = append(out, mutation{key, changeKey, c})
			}
		default:
			c := clone(p)
			bump(reflect.ValueOf(c).Elem().Field(i))
			out = append(out, mutation{tomlName(f.Name), tomlName(f.Name), c})
		}
	}
	return out
}

// bump changes v to another value of its type.
func bump(v reflect.Value) {
	switch v.Kind() {
	case reflect.Int:
		v.SetInt(v.Int() + 1)
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Slice: // []string
		v.Set(reflect.Append(v, reflect.ValueOf("zz-added")))
	case reflect.Struct: // RequestSize
		bump(v.Field(0))
	default:
		panic("bump: unhandled kind " + v.Kind().String())
	}
}

// tomlName turns a Go field name into its TOML key: SyncID → sync_id,
// PasswordSHA256 → password_sha256, TLSCert → tls_cert, URL → url.
func tomlName(s string) string {
	special := map[string]string{"SyncID": "sync_id", "PasswordSHA256": "password_sha256", "TLSCert": "tls_cert",
		"TLSKey": "tls_key", "URL": "url", "HardwareID": "hardware_id", "SyncWith": "sync_with",
		"OmSupplyCentralServerURL": "omsupply_central_server_url"}
	if n, ok := special[s]; ok {
		return n
	}
	var b strings.Builder
	for i, r := range s {
		if 'A' <= r && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func clone(p *Prefs) *Prefs {
	c := *p
	c.Site.Stores = slices.Clone(p.Site.Stores)
	c.SyncWith = slices.Clone(p.SyncWith)
	for i := range c.SyncWith {
		c.SyncWith[i].Stores = slices.Clone(p.SyncWith[i].Stores)
	}
	return &c
}

// The canonical form is pinned byte for byte, so a vendor tool written from
// the LockedDigest comment computes the same digest.
func TestLockedDigest_Golden(t *testing.T) {
	p := mustParse(t, `
version = 1
[site]
sync_id = 12
stores = ["b", "a"]
[[sync_with]]
sync_id = 1
user = "clinic-12"
password_sha256 = "`+sha12+`"
url = "https://c.example"
`)
	want := "syncagent-locked-prefs=1:1\n" +
		"version=1:1\n" +
		"site.sync_id=2:12\n" +
		"site.request_size=4:auto\n" +
		"site.store=1:a\n" +
		"site.store=1:b\n" +
		"paths.state_dir=18:/var/lib/syncagent\n" +
		"paths.control_socket=27:/run/syncagent/control.sock\n" +
		"paths.vendor_keys=0:\n" +
		"listen.address=0:\n" +
		"listen.tls_cert=0:\n" +
		"listen.tls_key=0:\n" +
		"listen.omsupply_central_server_url=0:\n" +
		"limits.outbox_max_records=6:100000\n" +
		"sync_with.sync_id=1:1\n" +
		"sync_with.user=9:clinic-12\n" +
		"sync_with.password_sha256=64:" + sha12 + "\n" +
		"sync_with.password_hash=0:\n" +
		"sync_with.url=17:https://c.example\n" +
		"sync_with.hardware_id=0:\n"
	if got := string(p.canonical()); got != want {
		t.Fatalf("canonical form:\n%s\nwant:\n%s", got, want)
	}
	sum := sha256.Sum256([]byte(want))
	if got := p.LockedDigest(); got != hex.EncodeToString(sum[:]) {
		t.Errorf("LockedDigest = %s, want SHA-256 of the canonical form", got)
	}
}

// A file without [admin] and [metrics] keeps the digest it had before they
// existed (codes issued for it stay good); the loopback default written out
// is the same as left out; any admin or metrics value joins the digest.
func TestLockedDigest_AdminAndMetrics(t *testing.T) {
	base := "version = 1\n[site]\nsync_id = 1\n[[sync_with]]\nsync_id = 12\nuser = \"c\"\npassword_hash = \"" + hash12 + "\"\nstores = [\"a\"]\n"
	p := mustParse(t, base)
	if strings.Contains(string(p.canonical()), "admin.") {
		t.Errorf("a file without [admin] has admin records:\n%s", p.canonical())
	}
	if q := mustParse(t, base+"[admin]\naddress = \"127.0.0.1:2049\"\nuser = \"u\"\npassword_hash = \""+hash12+"\"\n"); !strings.Contains(string(q.canonical()),
		"admin.address=0:\nadmin.user=1:u\nadmin.password_hash=") {
		t.Errorf("canonical form with [admin]:\n%s", q.canonical())
	}
	if q := mustParse(t, base+"[metrics]\ntextfile_dir = \"/t\"\n"); q.LockedDigest() == p.LockedDigest() || !strings.HasSuffix(string(q.canonical()), "metrics.textfile_dir=2:/t\n") {
		t.Errorf("canonical form with [metrics]:\n%s", q.canonical())
	}
}

// Length prefixes keep values from running into each other: moving a
// character from one value to the next changes the digest.
func TestLockedDigest_NoAmbiguity(t *testing.T) {
	a := &Prefs{Paths: Paths{StateDir: "/a\npaths.control_socket=0:", ControlSocket: ""}}
	b := &Prefs{Paths: Paths{StateDir: "/a", ControlSocket: "paths.control_socket=0:"}}
	if a.LockedDigest() == b.LockedDigest() {
		t.Fatal("different settings share a digest")
	}
}

func TestLockedEqual_Nil(t *testing.T) {
	var none *Prefs
	p := &Prefs{}
	for _, tt := range []struct {
		a, b *Prefs
		want bool
	}{{none, none, true}, {none, p, false}, {p, none, false}, {p, &Prefs{}, true}} {
		if got := tt.a.LockedEqual(tt.b); got != tt.want {
			t.Errorf("LockedEqual(%v, %v) = %v", tt.a, tt.b, got)
		}
	}
	if none.LockedDigest() != p.LockedDigest() {
		t.Error("a nil Prefs digests differently from the zero Prefs")
	}
}

// [central] and trusted_proxies join the digest only when set (codes issued
// for a file without them stay good), and the spelling of a proxy (an
// address or its /32) does not change it.
func TestLockedDigest_CentralAndProxies(t *testing.T) {
	base := "version = 1\n[site]\nsync_id = 1\n[[sync_with]]\nsync_id = 12\nuser = \"c\"\npassword_hash = \"" + hash12 + "\"\nstores = [\"a\"]\n"
	p := mustParse(t, base)
	if c := string(p.canonical()); strings.Contains(c, "central.") || strings.Contains(c, "trusted_proxy") {
		t.Errorf("a file without [central] has its records:\n%s", c)
	}
	db := base + "[central]\ndatabase = \"postgres://u@db/x\"\n"
	q := mustParse(t, db)
	if q.LockedDigest() == p.LockedDigest() || !strings.HasSuffix(string(q.canonical()),
		"central.database=17:postgres://u@db/x\ncentral.database_password_file=0:\ncentral.max_connections=1:0\ncentral.auth_key_file=0:\n") {
		t.Errorf("canonical form with [central]:\n%s", q.canonical())
	}
	a := mustParse(t, base+"[listen]\ntrusted_proxies = [\"10.0.0.1\", \"10.9.0.0/16\"]\n")
	b := mustParse(t, base+"[listen]\ntrusted_proxies = [\"10.9.0.0/16\", \"10.0.0.1/32\"]\n")
	if a.LockedDigest() != b.LockedDigest() || a.LockedDigest() == p.LockedDigest() {
		t.Error("trusted_proxies: equivalent spellings digest differently, or the setting is not in the digest")
	}
}
