package prefs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"syncagent/agent/passwd"
)

// sameSettings compares two parses of what should be the same settings:
// the file name and the format version written in the file are not
// settings.
func sameSettings(t *testing.T, what string, a, b *Prefs) {
	t.Helper()
	x, y := *a, *b
	x.Source, y.Source, x.Version, y.Version = "", "", 0, 0
	if !reflect.DeepEqual(x, y) {
		t.Fatalf("%s: settings differ:\n%+v\n%+v", what, x, y)
	}
	if x.LockedDigest() != y.LockedDigest() {
		t.Fatalf("%s: locked digests differ", what)
	}
}

// TestEncode_roundTrip: every good file of testdata, parsed, encoded and
// parsed again, holds the same settings; and a few Prefs built in code (as
// the harnesses build them) encode to files the agent accepts as meant.
func TestEncode_roundTrip(t *testing.T) {
	files, err := filepath.Glob("testdata/good/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no good prefs files in testdata: %v", err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Parse(name, data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out := Encode(p)
		q, err := Parse("encoded.toml", out)
		if err != nil {
			t.Fatalf("%s encoded does not parse: %v\n%s", name, err, out)
		}
		sameSettings(t, name, p, q)
	}

	built := []struct {
		name string
		p    Prefs
		want []string // lines the file must hold
	}{
		{"paused satellite with a fixed size", Prefs{
			Site:     Site{SyncID: 12, IntervalMinutes: 0, RequestSize: RequestSize{Fixed: 250}, Stores: []string{"a"}},
			Paths:    Paths{StateDir: "/var/lib/x", ControlSocket: "/run/x.sock"},
			Limits:   Limits{OutboxMaxRecords: 50},
			SyncWith: []Peer{{SyncID: 1, User: "clinic \"12\"", PasswordSHA256: strings.Repeat("ab", 32), URL: "http://127.0.0.1:9"}},
		}, []string{"interval_minutes = 0", "request_size = 250", `user = "clinic \"12\""`, "outbox_max_records = 50"}},
		{"primary with an admin page and a disabled row", Prefs{
			Site:     Site{SyncID: 1, IntervalMinutes: 10},
			Paths:    Paths{StateDir: "/var/lib/p", ControlSocket: "/run/p.sock"},
			Listen:   Listen{Address: "127.0.0.1:2048"},
			Admin:    Admin{User: "ops", PasswordHash: mustHash(t, "admin")},
			SyncWith: []Peer{{SyncID: 7, User: "u7", PasswordHash: mustHash(t, "pw"), Stores: []string{"s7"}}, {SyncID: 8, User: "u8", PasswordHash: mustHash(t, "pw8"), URL: "http://old.example:2048", Stores: []string{"s8"}}},
		}, []string{"[listen]", `address = "127.0.0.1:2048"`, "[admin]", `user = "ops"`, `url = "http://old.example:2048"`}},
	}
	for _, c := range built {
		out := string(Encode(&c.p))
		for _, w := range c.want {
			if !strings.Contains(out, w+"\n") {
				t.Errorf("%s: no line %q in\n%s", c.name, w, out)
			}
		}
		q, err := Parse("built.toml", []byte(out))
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.name, err, out)
		}
		sameSettings(t, c.name, withDefaults(c.p), q)
	}
}

// withDefaults is p as Parse fills in what a file leaves out.
func withDefaults(p Prefs) *Prefs {
	if p.Limits.OutboxMaxRecords == 0 {
		p.Limits.OutboxMaxRecords = DefaultOutboxMaxRecords
	}
	if p.Site.SyncID == 1 && p.Admin.Address == "" {
		p.Admin.Address = DefaultAdminAddress
	}
	return &p
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain":        `"plain"`,
		`a"b\c`:        `"a\"b\\c"`,
		"tab\tnl\n":    `"tab\tnl\n"`,
		"nul\x00bel\a": `"nul\u0000bel\u0007"`,
		"del\x7f":      `"del\u007F"`,
		"café":         `"café"`,
		"bad\xff":      `"bad` + "\uFFFD" + `"`,
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
	}
}

// FuzzEncode: whatever Parse accepts, Encode writes back as a file that
// parses to the same settings.
func FuzzEncode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.toml")
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("f.toml", data)
		if err != nil {
			return
		}
		out := Encode(p)
		q, err := Parse("encoded.toml", out)
		if err != nil {
			t.Fatalf("encoded file does not parse: %v\n%s", err, out)
		}
		sameSettings(t, "fuzz", p, q)
	})
}

func mustHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := passwd.Hash(passwd.SHA256Hex(pw))
	if err != nil {
		t.Fatal(err)
	}
	return h
}
