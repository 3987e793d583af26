package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"syncagent/agent/prefs"
	"syncagent/queue"
)

// TestMigrateCentral_refusals protects central migrate's refusals: each
// says what to do, and none touches a database or the datafile.
func TestMigrateCentral_refusals(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.MkdirAll(state, 0o700)
	write := func(name string, p *prefs.Prefs) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, prefs.Encode(p), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	paths := prefs.Paths{StateDir: state, ControlSocket: filepath.Join(dir, "ctl.sock")}
	primaryPrefs := write("primary.toml", &prefs.Prefs{Site: prefs.Site{SyncID: 1, IntervalMinutes: 10}, Paths: paths})
	satPrefs := write("sat.toml", &prefs.Prefs{Site: prefs.Site{SyncID: 12, IntervalMinutes: 10, Stores: []string{"a"}}, Paths: paths,
		SyncWith: []prefs.Peer{{SyncID: 1, User: "u", PasswordSHA256: strings.Repeat("ab", 32), URL: "http://127.0.0.1:9"}}})
	const to = "postgres://syncagent@127.0.0.1:9/x"

	cases := []struct {
		name string
		o    MigrateOptions
		want string
	}{
		{"a satellite", MigrateOptions{PrefsPath: satPrefs, To: to}, "is not a primary's prefs"},
		{"nowhere to go", MigrateOptions{PrefsPath: primaryPrefs}, "give --to postgres://"},
		{"a password in the URL", MigrateOptions{PrefsPath: primaryPrefs, To: "postgres://u:secret@db/x"}, "--password-file, PGPASSWORD or ~/.pgpass"},
		{"no datafile", MigrateOptions{PrefsPath: primaryPrefs, To: to}, "give the one to migrate with --from"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := MigrateCentral(context.Background(), c.o); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("MigrateCentral: %v, want %q", err, c.want)
			}
		})
	}

	// The primary still running: its datafile's lock refuses the copy.
	running, err := queue.OpenCentral(filepath.Join(state, "central.db"), queue.CentralOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer running.Close()
	if _, err := MigrateCentral(context.Background(), MigrateOptions{PrefsPath: primaryPrefs, To: to}); err == nil || !strings.Contains(err.Error(), "systemctl stop syncagent") {
		t.Errorf("migrating a running primary: %v", err)
	}
}
