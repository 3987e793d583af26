package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"syncagent/agent/lock"
	"syncagent/agent/unlock"
	"syncagent/ops"
)

// provisioned starts a satellite box, spends one code (so the ledger
// exists), writes a record and stops: a box in service.
func provisionedBox(t *testing.T) (*box, spec) {
	t.Helper()
	b := newBox(t)
	base := satellite12("http://127.0.0.1:9")
	b.write(b.render(base))
	b.start()
	edit := base
	edit.stores = []string{"a", "b"}
	edit.code = b.code(1, b.digest(edit), time.Hour)
	b.write(b.render(edit))
	if r := b.reload(); r.State != "ok" {
		t.Fatalf("code refused: %s", r.State)
	}
	if _, err := b.client.PutRecord(context.Background(), "stock", "s1", []byte(`{"store_ID":"a"}`)); err != nil {
		t.Fatal(err)
	}
	b.stop()
	return b, edit
}

// TestLock_movingFilesDoesNotReprovision protects the lock from being walked
// around: moving the last good prefs and the provisioned marker out of the
// state directory used to let any prefs in, with no code and nothing logged.
// Each attempt is refused with the way out, and logged as an error.
func TestLock_movingFilesDoesNotReprovision(t *testing.T) {
	b, _ := provisionedBox(t)
	aside := t.TempDir()
	attempts := [][]string{
		{lock.LastGoodName, lock.ProvisionedName}, // the ledger stays
		{lock.LedgerName},                         // then the ledger too: the datafile remembers
	}
	evil := satellite12("http://127.0.0.1:9")
	evil.stores = []string{"a", "anything"}
	b.write(b.render(evil))
	for i, move := range attempts {
		for _, name := range move {
			if err := os.Rename(filepath.Join(b.state, name), filepath.Join(aside, name)); err != nil {
				t.Fatal(err)
			}
		}
		before := strings.Count(b.logged(), "refused to provision an already provisioned box again")
		err := b.tryStart()
		var xe *ExitError
		if !errors.As(err, &xe) || xe.Code != ops.ExitConfig || !contains(err.Error(), "it is not provisioned again") {
			b.stop()
			t.Fatalf("attempt %d (moved %v): start = %v; want a refusal (exit %d)", i+1, move, err, ops.ExitConfig)
		}
		if got := strings.Count(b.logged(), "level=ERROR msg=\"refused to provision an already provisioned box again\""); got != before+1 {
			t.Errorf("attempt %d was not logged as an error", i+1)
		}
		if _, err := os.Stat(filepath.Join(b.state, lock.LastGoodName)); err == nil {
			t.Errorf("attempt %d: the refused prefs were kept as last good", i+1)
		}
	}
	// A code from the vendor_keys file the prefs name is not the way out
	// (that file cannot vouch for the prefs naming it; a built-in key's code
	// is, see agent/lock's TestStart_reprovisionRefused).
	evil.code = b.code(7, b.digest(evil), time.Hour)
	b.write(b.render(evil))
	if err := b.tryStart(); err == nil || !contains(err.Error(), "does not know") {
		b.stop()
		t.Errorf("with a vendor_keys code: %v", err)
	}
}

// TestLock_failedStartProvisionsNothing protects a box whose first start
// fails (its socket or port in use): that start used to provision its
// prefs, so the fixed file then needed a vendor code and the box could never
// start.
func TestLock_failedStartProvisionsNothing(t *testing.T) {
	b := newBox(t)
	busy, err := net.Listen("unix", b.socket) // another agent answers there
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := busy.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	first := satellite12("http://127.0.0.1:9")
	b.write(b.render(first))
	if err := b.tryStart(); err == nil || !contains(err.Error(), "already running") {
		b.stop()
		t.Fatalf("start with the socket in use: %v", err)
	}
	busy.Close()
	if _, err := os.Stat(filepath.Join(b.state, lock.ProvisionedName)); err == nil {
		t.Fatal("a start that never served provisioned the box")
	}
	fixed := first
	fixed.stores = []string{"a", "c"}
	b.write(b.render(fixed))
	b.start()
	if st := b.status(); st.Prefs.State != "ok" || st.Prefs.Digest != b.digest(fixed) {
		t.Errorf("the fixed prefs after a failed first start: %+v", st.Prefs)
	}
}

// TestLock_typoAtStartRunsLastGood protects a provisioned box outside
// systemd: a typo in its prefs used to stop it at the next start (the last
// good prefs were looked for in /var/lib/syncagent); it runs them, as under
// systemd, and says why.
func TestLock_typoAtStartRunsLastGood(t *testing.T) {
	b, edit := provisionedBox(t)
	text := strings.Replace(b.render(edit), "sync_id = 12", "sync_id = twelve", 1)
	line := fmt.Sprintf("prefs.toml:%d", strings.Count(text[:strings.Index(text, "twelve")], "\n")+1)
	b.write(text)
	b.start()
	st := b.status()
	if st.SyncID != 12 || st.Prefs.State != "rejected" || !contains(st.Prefs.Error, line) || st.Prefs.Digest != b.digest(edit) {
		t.Errorf("start with a typo: sync_id %d, prefs %+v", st.SyncID, st.Prefs)
	}
	// With no prefs file at all only systemd's StateDirectory says where
	// the last good prefs are.
	b.stop()
	os.Remove(b.prefs)
	t.Setenv("STATE_DIRECTORY", b.state)
	b.start()
	if st := b.status(); st.SyncID != 12 || st.Prefs.State != "rejected" {
		t.Errorf("start without a prefs file: %+v", st.Prefs)
	}
}

// TestLock_lastGoodIsTheVerifiedBytes protects last good from anything but
// the bytes the lock verified.
func TestLock_lastGoodIsTheVerifiedBytes(t *testing.T) {
	b := newBox(t)
	base := satellite12("http://127.0.0.1:9")
	b.write(b.render(base))
	b.start()
	edit := base
	edit.interval = 5
	b.write(b.render(edit))
	if r := b.reload(); r.State != "ok" {
		t.Fatal(r.State)
	}
	if got, _ := os.ReadFile(filepath.Join(b.state, lock.LastGoodName)); string(got) != b.render(edit) {
		t.Errorf("last good:\n%s\nwant the verified file", got)
	}
}

// TestLock_clashingKeyringRefusedWhenNamed protects later changes: a
// vendor_keys file binding a built-in key number to another key used to be
// accepted when named, and then blocked every change.
func TestLock_clashingKeyringRefusedWhenNamed(t *testing.T) {
	b := newBox(t)
	base := satellite12("http://127.0.0.1:9")
	b.write(b.render(base))
	b.start()
	b.openWindow(base)
	clash, _, err := unlock.Keygen(1) // the built-in development keyring's number
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(b.dir, "clash.pub")
	os.WriteFile(path, []byte(clash), 0o644)
	edit := base
	edit.vendorKeys = path
	b.write(b.render(edit))
	if r := b.reload(); !contains(r.State, "rejected") || !contains(r.State, "clashes with the built-in keyring") {
		t.Errorf("naming a clashing keyring: %s", r.State)
	}
	later := base
	later.stores = []string{"a", "z"}
	b.write(b.render(later))
	if r := b.reload(); r.State != "ok" {
		t.Errorf("a later change: %s", r.State)
	}
}

// TestLock_clockAheadWayOut protects a box whose clock once ran ahead: its
// ledger trusts that time and every code was refused as "clock behind",
// with no way out. A code bound to resetting that time is the way out.
func TestLock_clockAheadWayOut(t *testing.T) {
	b, edit := provisionedBox(t)
	ahead := time.Now().Add(400 * 24 * time.Hour).UTC()
	ledger := filepath.Join(b.state, lock.LedgerName)
	var kept map[string]any
	data, _ := os.ReadFile(ledger)
	if err := json.Unmarshal(data, &kept); err != nil {
		t.Fatal(err)
	}
	kept["trusted_time"] = ahead // the clock once read this
	data, _ = json.Marshal(kept)
	if err := os.WriteFile(ledger, data, 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	next := edit
	next.stores = []string{"a", "b", "c"}
	next.code = b.code(2, b.digest(next), time.Hour)
	b.write(b.render(next))
	if r := b.reload(); !contains(r.State, "clock is behind") {
		t.Fatalf("code with the ledger ahead: %s", r.State)
	}
	u, err := b.client.Unlock(context.Background())
	if err != nil || u.TrustedAhead.IsZero() || u.ClockResetDigest == "" || !contains(u.Request, u.ClockResetDigest) {
		t.Fatalf("unlock info: %+v, %v", u, err)
	}
	if _, err := b.client.ResetClock(context.Background(), b.code(3, u.ChangeDigest, time.Hour)); err == nil {
		t.Error("a code for another change reset the clock")
	}
	if _, err := b.client.ResetClock(context.Background(), b.code(4, u.ClockResetDigest, time.Hour)); err != nil {
		t.Fatalf("reset: %v", err)
	}
	next.code = b.code(5, b.digest(next), time.Hour)
	b.write(b.render(next))
	if r := b.reload(); r.State != "ok" {
		t.Errorf("code after the reset: %s", r.State)
	}
}
