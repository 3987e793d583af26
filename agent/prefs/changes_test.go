package prefs

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Changes between edits of the fixtures: which keys, locked or not, live or
// needing a restart.
func TestChanges(t *testing.T) {
	sat := readFixture(t, "testdata/good/satellite.toml")
	pri := readFixture(t, "testdata/good/primary.toml")
	row14 := "\n[[sync_with]]\nsync_id = 14\nuser = \"clinic-14\"\npassword_hash = \"" + hash12 + "\"\nstores = [\"store-d\"]\n"
	tests := []struct {
		name     string
		old, new string
		want     []Change
	}{
		{"nothing", sat, sat, nil},
		{"comments only", sat, "# edited\n" + strings.ReplaceAll(sat, "# the primary", ""), nil},
		{"interval: unlocked, live", sat, strings.Replace(sat, "interval_minutes = 15", "interval_minutes = 30", 1),
			[]Change{{Key: "site.interval_minutes", Locked: false}}},
		{"request size: locked, live", sat, strings.Replace(sat, `request_size = "auto"`, `request_size = 200`, 1),
			[]Change{{Key: "site.request_size", Locked: true}}},
		{"stores reordered: no change", sat, strings.Replace(sat, `["store-a", "store-b"]`, `["store-b", "store-a"]`, 1), nil},
		{"store added: locked, live", sat, strings.Replace(sat, `["store-a", "store-b"]`, `["store-a", "store-b", "store-c"]`, 1),
			[]Change{{Key: "site.stores", Locked: true}}},
		{"sync_id within the role: locked, restart", sat, strings.Replace(sat, "sync_id = 12", "sync_id = 13", 1),
			[]Change{{Key: "site.sync_id", Locked: true}}},
		{"sync disabled: locked, restart", sat, strings.Replace(sat, "sync_id = 12", "sync_id = 0", 1),
			[]Change{{Key: "site.sync_id", Locked: true}}},
		{"paths: locked, restart", sat, strings.Replace(sat, `state_dir = "/var/lib/syncagent"`, `state_dir = "/srv/sa"`, 1),
			[]Change{{Key: "paths.state_dir", Locked: true}}},
		{"limits: locked, live", sat, strings.Replace(sat, "500_000", "600_000", 1),
			[]Change{{Key: "limits.outbox_max_records", Locked: true}}},
		{"primary's url: locked, live", sat, strings.Replace(sat, "central.example.org", "central2.example.org", 1),
			[]Change{{Key: "sync_with[0].url", Locked: true}}},
		{"unlock code: unlocked", sat, strings.Replace(sat, "ABCDE-FGHJK", "ABCDE-FGHJX", 1),
			[]Change{{Key: "unlock.code", Locked: false}}},
		{"listen: locked, restart", pri, strings.Replace(pri, "0.0.0.0:2443", "0.0.0.0:2444", 1),
			[]Change{{Key: "listen.address", Locked: true}}},
		{"site row added", pri, pri + row14,
			[]Change{{Key: "sync_with[2]", Note: "added site 14", Locked: true}}},
		{"site row removed", pri + row14, pri,
			[]Change{{Key: "sync_with[2]", Note: "removed site 14", Locked: true}}},
		{"site row moved: no change", pri + row14, strings.Replace(pri, "[[sync_with]]", row14+"[[sync_with]]", 1), nil},
		// Rows are matched by sync_id: after a row is inserted first, a field
		// of the next row is named by its new index.
		{"row inserted and another edited", pri, strings.Replace(strings.Replace(pri, "[[sync_with]]", row14+"[[sync_with]]", 1), `["store-c"]`, `["store-c", "store-e"]`, 1),
			[]Change{
				{Key: "sync_with[0]", Note: "added site 14", Locked: true},
				{Key: "sync_with[2].stores", Locked: true},
			}},
		{"pin cleared", pri, strings.Replace(pri, `hardware_id = "hw1-5f2c9a"`, "", 1),
			[]Change{{Key: "sync_with[1].hardware_id", Locked: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, new := mustParse(t, tt.old), mustParse(t, tt.new)
			got := Changes(old, new)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Changes =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// LockedEqual and Changes agree: two prefs are locked-equal exactly when no
// change between them is locked. Checked on every pair of good fixtures and
// on every single-field mutation of them.
func TestChanges_AgreesWithLockedEqual(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.toml")
	var all []*Prefs
	for _, f := range files {
		p := mustParseFile(t, f)
		all = append(all, p)
		for _, m := range mutations(p) {
			all = append(all, m.prefs)
		}
	}
	all = append(all, nil)
	for i, a := range all {
		for j, b := range all {
			anyLocked := false
			for _, c := range Changes(a, b) {
				anyLocked = anyLocked || c.Locked
			}
			eq := orZero(a).LockedEqual(orZero(b)) // Changes treats nil as the zero Prefs
			if eq == anyLocked {
				t.Fatalf("pair %d,%d: LockedEqual = %v but Changes = %+v", i, j, eq, Changes(a, b))
			}
		}
	}
}

func orZero(p *Prefs) *Prefs {
	if p == nil {
		return &Prefs{}
	}
	return p
}

// Duplicate sync_ids (possible while sync_id = 0 only checks syntax) still
// pair up: swapping two such rows is no change, as for the digest.
func TestChanges_DuplicateSyncIDs(t *testing.T) {
	a := &Prefs{SyncWith: []Peer{{SyncID: 5, User: "x"}, {SyncID: 5, User: "y"}}}
	b := &Prefs{SyncWith: []Peer{{SyncID: 5, User: "y"}, {SyncID: 5, User: "x"}}}
	if got := Changes(a, b); got != nil || !a.LockedEqual(b) {
		t.Errorf("Changes = %+v, LockedEqual = %v", got, a.LockedEqual(b))
	}
	c := &Prefs{SyncWith: []Peer{{SyncID: 5, User: "y"}, {SyncID: 5, User: "z"}}}
	if got := Changes(a, c); len(got) != 1 || got[0].Key != "sync_with[1].user" {
		t.Errorf("Changes = %+v, want sync_with[1].user", got)
	}
}

// The interval is the one setting editable without a code, and only while
// sync is enabled (DESIGN.md invariant 7).
func TestNeedsCode(t *testing.T) {
	sat := readFixture(t, "testdata/good/satellite.toml")
	off := strings.Replace(sat, "sync_id = 12", "sync_id = 0", 1)
	longer := func(s string) string { return strings.Replace(s, "interval_minutes = 15", "interval_minutes = 60", 1) }
	tests := []struct {
		name, running, edited string
		want                  bool
	}{
		{"nothing", sat, sat, false},
		{"interval, sync on", sat, longer(sat), false},
		{"interval, sync_id 0", off, longer(off), true},
		{"unlock code only", sat, strings.Replace(sat, "ABCDE-FGHJK", "X", 1), false},
		{"a locked setting", sat, strings.Replace(sat, `"auto"`, "100", 1), true},
		{"enabling sync", off, sat, true},
	}
	for _, tt := range tests {
		if got := NeedsCode(mustParse(t, tt.running), mustParse(t, tt.edited)); got != tt.want {
			t.Errorf("%s: NeedsCode = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestChange_Setting protects the names components claim settings by: the
// same for every row, with or without a field.
func TestChange_Setting(t *testing.T) {
	for key, want := range map[string]string{
		"site.interval_minutes": "site.interval_minutes",
		"sync_with[12].url":     "sync_with.url",
		"sync_with[2]":          "sync_with",
	} {
		if got := (Change{Key: key}).Setting(); got != want {
			t.Errorf("Setting of %q = %q, want %q", key, got, want)
		}
	}
}

// TestSettings_coverChanges protects the daemon's prefs-key table: every
// setting Changes can report is in Settings.
func TestSettings_coverChanges(t *testing.T) {
	known := map[string]bool{}
	for _, s := range Settings {
		known[s] = true
	}
	a := &Prefs{Version: 1, Site: Site{SyncID: 1, IntervalMinutes: 1, RequestSize: RequestSize{Fixed: 1}, Stores: []string{"a"}},
		Paths: Paths{StateDir: "/a", ControlSocket: "/a", VendorKeys: "/a"}, Listen: Listen{Address: "a", TLSCert: "a", TLSKey: "a", OmSupplyCentralServerURL: "a", TrustedProxies: []string{"a"}},
		Central: Central{Database: "a", DatabasePasswordFile: "a", MaxConnections: 1, AuthKeyFile: "a"},
		Limits:  Limits{OutboxMaxRecords: 1}, Unlock: Unlock{Code: "a"},
		Admin: Admin{Address: "a", User: "a", PasswordHash: "a", TLSCert: "a", TLSKey: "a"}, Metrics: Metrics{TextfileDir: "a"},
		SyncWith: []Peer{{SyncID: 2, User: "a", PasswordSHA256: "a", PasswordHash: "a", URL: "a", Stores: []string{"a"}, HardwareID: "a"}, {SyncID: 3}}}
	b := &Prefs{SyncWith: []Peer{{SyncID: 2}, {SyncID: 4}}}
	seen := map[string]bool{}
	for _, c := range Changes(a, b) {
		seen[c.Setting()] = true
		if !known[c.Setting()] {
			t.Errorf("Changes reports %q, which Settings lacks", c.Setting())
		}
	}
	for _, s := range Settings {
		if !seen[s] {
			t.Errorf("Settings lists %q, which this test's change does not reach", s)
		}
	}
}
