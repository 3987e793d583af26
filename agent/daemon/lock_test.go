package daemon

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"syncagent/agent/lock"
)

// TestLock_refusals protects the locked settings: every way a change can be
// refused keeps the running prefs and says why.
func TestLock_refusals(t *testing.T) {
	b := newBox(t)
	b.write(b.satellitePrefs(12, 60, `"a"`, ""))
	b.start()
	if _, err := os.Stat(filepath.Join(b.state, lock.ProvisionedName)); err != nil {
		t.Fatalf("first prefs with sync_id > 0 did not provision the box: %v", err)
	}
	edited := b.satellitePrefs(12, 60, `"a", "b"`, "")
	cases := []struct {
		name string
		text string
		want string
	}{
		{"no code", edited, "an unlock code is needed"},
		{"mistyped", edited + unlockSection("AAAAA-BBBBB"), "mistyped"},
		{"other change", edited + unlockSection(b.code(1, "00"+b.status().Prefs.Digest[2:], time.Hour)), "another change"},
		{"expired", edited + unlockSection(b.code(1, digestOf(t, edited), -time.Minute)), "expired"},
		{"malformed file", "version = 1\n[site]\nsync_id = \"twelve\"\n", "prefs.toml:3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b.write(c.text)
			r := b.reload()
			if !contains(r.State, "rejected") || !contains(r.State, c.want) {
				t.Errorf("reload state = %q, want rejected with %q", r.State, c.want)
			}
			st := b.status()
			if len(st.Prefs.Error) == 0 || st.Prefs.State != "rejected" {
				t.Errorf("status prefs = %+v, want rejected with a reason", st.Prefs)
			}
		})
	}
}

// TestLock_changeCodeAppliesExactlyThatChange protects change-bound codes:
// valid for the digest they were issued for, and only once.
func TestLock_changeCodeAppliesExactlyThatChange(t *testing.T) {
	b := newBox(t)
	b.write(b.satellitePrefs(12, 60, `"a"`, ""))
	b.start()
	edited := b.satellitePrefs(12, 60, `"a", "b"`, "")
	b.write(edited)
	u, err := b.client.Unlock(context.Background())
	if err != nil || !u.Pending || u.HardwareID != testHWID {
		t.Fatalf("unlock info = %+v, %v", u, err)
	}
	code := b.code(1, u.ChangeDigest, time.Hour)
	b.write(edited + unlockSection(code))
	if r := b.reload(); r.State != "ok" {
		t.Fatalf("valid change code refused: %s", r.State)
	}
	st := b.status()
	if st.Prefs.UnlockedBy != "key 3 seq 1" || st.Prefs.Digest != u.ChangeDigest {
		t.Errorf("status prefs = %+v", st.Prefs)
	}
	// The same code cannot carry another change, even though the file keeps it.
	other := b.satellitePrefs(12, 60, `"a", "b", "c"`, "")
	b.write(other + unlockSection(code))
	if r := b.reload(); !contains(r.State, "another change") {
		t.Errorf("code reused for another change: %s", r.State)
	}
}

// TestLock_replayRefusedAfterRestart protects the ledger: a spent sequence
// stays spent across a restart.
func TestLock_replayRefusedAfterRestart(t *testing.T) {
	b := newBox(t)
	original := b.satellitePrefs(12, 60, `"a"`, "")
	b.write(original)
	b.start()
	edited := b.satellitePrefs(12, 60, `"a", "b"`, "")
	b.write(edited + unlockSection(b.code(5, digestOf(t, edited), time.Hour)))
	if r := b.reload(); r.State != "ok" {
		t.Fatalf("first use refused: %s", r.State)
	}
	b.stop()
	// Back to the original with a code whose sequence is not above 5.
	b.write(original + unlockSection(b.code(5, digestOf(t, original), time.Hour)))
	b.start()
	st := b.status()
	if st.Prefs.State != "rejected" || !contains(st.Prefs.Error, "already been used") {
		t.Errorf("replay after restart: prefs = %+v", st.Prefs)
	}
	if st.Prefs.Digest != digestOf(t, edited) {
		t.Error("the last good prefs are not the ones running after a refused start")
	}
}

// TestLock_windowCode protects maintenance windows: any locked change until
// expiry, without further codes.
func TestLock_windowCode(t *testing.T) {
	b := newBox(t)
	b.write(b.satellitePrefs(12, 60, `"a"`, ""))
	b.start()
	one := b.satellitePrefs(12, 60, `"a", "b"`, "")
	b.write(one + unlockSection(b.code(1, "", time.Hour)))
	if r := b.reload(); r.State != "ok" {
		t.Fatalf("window code refused: %s", r.State)
	}
	st := b.status()
	if st.Prefs.WindowUntil.IsZero() || !contains(st.Prefs.UnlockedBy, "window") {
		t.Fatalf("window not shown: %+v", st.Prefs)
	}
	b.write(b.satellitePrefs(12, 60, `"c"`, "")) // no code at all
	if r := b.reload(); r.State != "ok" {
		t.Errorf("change inside an open window refused: %s", r.State)
	}
}

// TestLock_interval protects the one setting editable without a code, and
// only while sync_id > 0.
func TestLock_interval(t *testing.T) {
	b := newBox(t)
	b.write(b.satellitePrefs(12, 60, `"a"`, ""))
	b.start()
	b.write(b.satellitePrefs(12, 5, `"a"`, ""))
	if r := b.reload(); r.State != "ok" || b.status().Interval != "5m0s" {
		t.Fatalf("interval edit with sync on: %s, interval %s", r.State, b.status().Interval)
	}
	b.stop()

	// A provisioned box whose sync_id was set to 0.
	off := newBox(t)
	text := off.satellitePrefs(0, 60, `"a"`, "")
	off.write(text)
	os.MkdirAll(off.state, 0o700)
	os.WriteFile(filepath.Join(off.state, lock.LastGoodName), []byte(text), 0o600)
	os.WriteFile(filepath.Join(off.state, lock.ProvisionedName), []byte("test\n"), 0o600)
	off.start()
	off.write(off.satellitePrefs(0, 5, `"a"`, ""))
	if r := off.reload(); !contains(r.State, "only while sync_id > 0") {
		t.Errorf("interval edit with sync_id 0: %s", r.State)
	}
}

// TestLock_unprovisionedBoxIsOpen protects first setup: a box shipped with
// sync_id = 0 is not locked until it is first given sync_id > 0.
func TestLock_unprovisionedBoxIsOpen(t *testing.T) {
	b := newBox(t)
	b.write(b.satellitePrefs(0, 60, `"a"`, ""))
	b.start()
	b.write(b.satellitePrefs(0, 60, `"a", "b"`, ""))
	if r := b.reload(); r.State != "ok" {
		t.Fatalf("unprovisioned box refused an edit: %s", r.State)
	}
	if _, err := os.Stat(filepath.Join(b.state, lock.ProvisionedName)); err == nil {
		t.Error("sync_id 0 prefs marked the box provisioned")
	}
	b.write(b.satellitePrefs(12, 60, `"a", "b"`, ""))
	if r := b.reload(); !contains(r.State, "restart needed") {
		t.Errorf("role change while running: %s", r.State)
	}
}
