package lock

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"syncagent/agent/prefs"
	"syncagent/agent/unlock"
)

const hwid = "lock-test-box"

// box is a lock directory with a vendor key the lock trusts as built in,
// and a log that tests read.
type box struct {
	t     *testing.T
	dir   string
	pub   string
	priv  []byte
	now   time.Time
	logMu sync.Mutex
	log   bytes.Buffer
}

func newBox(t *testing.T) *box {
	t.Helper()
	pub, priv, err := unlock.Keygen(2)
	if err != nil {
		t.Fatal(err)
	}
	return &box{t: t, dir: t.TempDir(), pub: pub, priv: priv, now: time.Now()}
}

func (b *box) Write(p []byte) (int, error) {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	return b.log.Write(p)
}

func (b *box) logged() string {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	return b.log.String()
}

// lock is a fresh Lock on the box's directory, as a new process opens it.
func (b *box) lock() *Lock {
	return New(Options{Dir: b.dir, HardwareID: hwid, Keyring: []byte(b.pub), Now: func() time.Time { return b.now },
		Log: slog.New(slog.NewTextHandler(b, nil))})
}

// prefsText is a satellite's prefs (a box with sync disabled for sync_id
// 0), with an extra vendor keyring when vendorKeys is set.
func (b *box) prefsText(syncID int, vendorKeys string, stores ...string) string {
	p := prefs.Prefs{
		Site:  prefs.Site{SyncID: syncID, IntervalMinutes: 10, Stores: stores},
		Paths: prefs.Paths{StateDir: b.dir, ControlSocket: prefs.DefaultControlSocket, VendorKeys: vendorKeys},
	}
	if syncID > 1 {
		p.SyncWith = []prefs.Peer{{SyncID: 1, User: "u", PasswordSHA256: strings.Repeat("ab", 32), URL: "http://primary"}}
	}
	return string(prefs.Encode(&p))
}

func (b *box) code(seq uint32, digest string) string {
	b.t.Helper()
	c := unlock.Claims{KeyNumber: 2, HardwareID: hwid, Expiry: b.now.Add(time.Hour), Seq: seq, Scope: unlock.ScopeWindow}
	if digest != "" {
		c.Scope, c.ChangeDigest = unlock.ScopeChange, digest
	}
	code, err := unlock.Issue(b.priv, c)
	if err != nil {
		b.t.Fatal(err)
	}
	return code
}

func parse(t *testing.T, text string) *prefs.Prefs {
	t.Helper()
	p, err := prefs.Parse("prefs.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// provision starts a fresh box with text and commits, as a start that serves.
func (b *box) provision(text string) {
	b.t.Helper()
	s, err := b.lock().Start("prefs.toml", []byte(text), nil)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		b.t.Fatal(err)
	}
}

func (b *box) lastGood() string {
	data, err := os.ReadFile(filepath.Join(b.dir, LastGoodName))
	if err != nil {
		b.t.Fatal(err)
	}
	return string(data)
}

func unlockSection(code string) string { return "[unlock]\ncode = \"" + code + "\"\n" }

// TestStart_provisionsOnlyOnCommit protects a first start that fails (a port
// in use, another agent on the socket): it must provision nothing, or the
// fixed file would need a vendor code and the box could never start.
func TestStart_provisionsOnlyOnCommit(t *testing.T) {
	b := newBox(t)
	text := b.prefsText(12, "", "a")
	l := b.lock()
	s, err := l.Start("prefs.toml", []byte(text), nil)
	if err != nil || s.State != "ok" || !s.Fresh() {
		t.Fatalf("fresh start: %+v, %v", s, err)
	}
	if l.Provisioned() {
		t.Fatal("a start that has not served provisioned the box")
	}
	if entries, _ := os.ReadDir(b.dir); len(entries) != 0 {
		t.Fatalf("the lock directory holds %d files before the start served", len(entries))
	}
	// The failed start is fixed: another file starts, unlocked.
	fixed := b.prefsText(12, "", "a", "b")
	b.provision(fixed)
	if got := b.lastGood(); got != fixed {
		t.Errorf("last good %q, want the fixed file", got)
	}
	if !b.lock().Provisioned() {
		t.Error("a start that served with sync_id > 0 did not provision the box")
	}
}

// TestStart_rejectedFileRunsLastGood protects a provisioned box from a typo,
// under systemd or not: the last good prefs run, found in the state_dir the
// broken file still names, and the reason is kept and logged.
func TestStart_rejectedFileRunsLastGood(t *testing.T) {
	b := newBox(t)
	good := b.prefsText(12, "", "a")
	b.provision(good)
	broken := strings.Replace(good, "sync_id = 12", "sync_id = twelve", 1)
	line := "prefs.toml:" + strconv.Itoa(strings.Count(broken[:strings.Index(broken, "twelve")], "\n")+1)
	if got := StateDirOf(nil, []byte(broken)); got != b.dir {
		t.Fatalf("StateDirOf(broken file) = %q, want %q", got, b.dir)
	}
	s, err := b.lock().Start("prefs.toml", []byte(broken), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.State != "rejected" || s.Prefs.Site.SyncID != 12 || !strings.Contains(s.Error, line) {
		t.Errorf("start with a broken file: state %q, sync_id %d, error %q", s.State, s.Prefs.Site.SyncID, s.Error)
	}
	if !strings.Contains(b.logged(), "level=ERROR") {
		t.Errorf("rejection not logged as an error:\n%s", b.logged())
	}
}

// TestLock_lastGoodIsTheVerifiedBytes protects against the bypass where a
// locked edit written between the read that was verified and the save of
// last good was saved as good, and ran after a restart.
func TestLock_lastGoodIsTheVerifiedBytes(t *testing.T) {
	b := newBox(t)
	b.provision(b.prefsText(12, "", "a"))
	l := b.lock()
	running, _, _ := l.LastGood()
	verified := strings.Replace(b.prefsText(12, "", "a"), "interval_minutes = 10", "interval_minutes = 5", 1)
	c, err := l.Authorise(running, []byte(verified), parse(t, verified))
	if err != nil {
		t.Fatal(err)
	}
	// A locked edit lands on disk now; it must not become last good.
	os.WriteFile(filepath.Join(b.dir, "prefs.toml"), []byte(b.prefsText(12, "", "a", "evil")), 0o644)
	if _, err := l.Commit(c); err != nil {
		t.Fatal(err)
	}
	if got := b.lastGood(); got != verified {
		t.Errorf("last good is not the verified bytes:\n%s", got)
	}
}

// TestStart_reprovisionRefused protects the lock from being walked around
// by moving files: a box whose ledger, marker or datafile shows it was
// provisioned is not provisioned again from whatever file is there; every
// attempt is refused with the way out and logged as an error, and only a
// code for exactly that file lets it through.
func TestStart_reprovisionRefused(t *testing.T) {
	other := func(b *box) string { return b.prefsText(12, "", "a", "anything") }
	cases := []struct {
		name     string
		move     []string // files moved out of the lock directory
		datafile string   // what the datafile shows
	}{
		{"last good and marker moved, ledger stays", []string{LastGoodName, ProvisionedName}, ""},
		{"last good moved, marker stays", []string{LastGoodName}, ""},
		{"lock directory emptied, datafile stays", []string{LastGoodName, ProvisionedName, LedgerName}, "the datafile says so"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBox(t)
			b.provision(b.prefsText(12, "", "a"))
			// A code once used leaves the ledger.
			edit := b.prefsText(12, "", "a", "b")
			l := b.lock()
			running, _, _ := l.LastGood()
			ch, err := l.Authorise(running, []byte(edit+unlockSection(b.code(1, parse(t, edit).LockedDigest()))), parse(t, edit+unlockSection(b.code(1, parse(t, edit).LockedDigest()))))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := l.Commit(ch); err != nil {
				t.Fatal(err)
			}
			aside := t.TempDir()
			for _, name := range c.move {
				if err := os.Rename(filepath.Join(b.dir, name), filepath.Join(aside, name)); err != nil {
					t.Fatal(err)
				}
			}
			s, err := b.lock().Start("prefs.toml", []byte(other(b)), nil)
			if err == nil {
				err = s.Confirm(c.datafile)
			}
			if err == nil || !strings.Contains(err.Error(), "it is not provisioned again") || !strings.Contains(err.Error(), parse(t, other(b)).LockedDigest()) {
				t.Fatalf("start after moving %v: %v; want a refusal with the way out", c.move, err)
			}
			if !strings.Contains(b.logged(), "level=ERROR msg=\"refused to provision an already provisioned box again\"") {
				t.Errorf("the refusal was not logged as an error:\n%s", b.logged())
			}
			// The way out: a code for exactly this file.
			withCode := other(b) + unlockSection(b.code(2, parse(t, other(b)).LockedDigest()))
			s, err = b.lock().Start("prefs.toml", []byte(withCode), nil)
			if err == nil {
				err = s.Confirm(c.datafile)
			}
			if err == nil {
				err = s.Commit()
			}
			if err != nil {
				t.Fatalf("re-provisioning with a code for the file: %v", err)
			}
		})
	}
}

// TestLock_clashingKeyringRefusedWhenNamed protects later changes: a
// vendor_keys file that binds a built-in key number to another key used to
// be accepted when named and then block every code.
func TestLock_clashingKeyringRefusedWhenNamed(t *testing.T) {
	b := newBox(t)
	clash, _, err := unlock.Keygen(2) // number 2 is the built-in key's
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(t.TempDir(), "vendor.pub")
	os.WriteFile(keys, []byte(clash), 0o644)
	named := keys

	// Named on a fresh box: nothing starts.
	if _, err := b.lock().Start("prefs.toml", []byte(b.prefsText(12, named, "a")), nil); err == nil || !strings.Contains(err.Error(), "clashes with the built-in keyring") {
		t.Errorf("fresh start naming a clashing keyring: %v", err)
	}
	// Named by an edit, with a window open: refused all the same.
	b.provision(b.prefsText(12, "", "a"))
	l := b.lock()
	running, _, _ := l.LastGood()
	open := b.prefsText(12, "", "a") + unlockSection(b.code(1, ""))
	ch, err := l.Authorise(running, []byte(open), parse(t, open))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Commit(ch); err != nil {
		t.Fatal(err)
	}
	edit := b.prefsText(12, named, "a")
	if _, err := l.Authorise(running, []byte(edit), parse(t, edit)); err == nil || !strings.Contains(err.Error(), "clashes") {
		t.Errorf("edit naming a clashing keyring: %v", err)
	}
	// A keyring that merges is taken, and its keys unlock from then on.
	pub9, _, _ := unlock.Keygen(9)
	os.WriteFile(keys, []byte(pub9), 0o644)
	if _, err := l.Authorise(running, []byte(edit), parse(t, edit)); err != nil {
		t.Errorf("edit naming a good keyring: %v", err)
	}
}

// TestLock_clockReset protects a box whose clock once ran ahead: its ledger
// trusts that time, every code is refused as "clock behind", and the
// documented way out is a code bound to resetting exactly that time.
func TestLock_clockReset(t *testing.T) {
	b := newBox(t)
	b.provision(b.prefsText(12, "", "a"))
	b.now = time.Now().Add(400 * 24 * time.Hour) // the clock ran ahead once
	l := b.lock()
	running, _, _ := l.LastGood()
	edit := b.prefsText(12, "", "a", "b")
	if _, err := l.Authorise(running, []byte(edit), parse(t, edit)); err == nil {
		t.Fatal("a locked edit without a code was allowed")
	}
	b.now = time.Now() // set right again
	l = b.lock()
	withCode := edit + unlockSection(b.code(1, parse(t, edit).LockedDigest()))
	if _, err := l.Authorise(running, []byte(withCode), parse(t, withCode)); err == nil || !strings.Contains(err.Error(), "clock is behind") {
		t.Fatalf("code with the ledger ahead: %v, want clock behind", err)
	}
	in := l.Info(running, parse(t, edit))
	if in.TrustedAhead.IsZero() || !strings.Contains(in.Request, in.ClockResetDigest) {
		t.Fatalf("unlock info does not offer the reset: %+v", in)
	}
	if _, err := l.ResetClock(running, b.code(2, OperationDigest("clear-hwid 3"))); err == nil {
		t.Error("a code for another operation reset the clock")
	}
	if _, err := l.ResetClock(running, b.code(3, in.ClockResetDigest)); err != nil {
		t.Fatalf("reset: %v", err)
	}
	withCode = edit + unlockSection(b.code(4, parse(t, edit).LockedDigest()))
	if _, err := l.Authorise(running, []byte(withCode), parse(t, withCode)); err != nil {
		t.Errorf("code after the reset: %v", err)
	}
}

// TestLock_preview protects the prefs file from codes that would be refused:
// the CLI previews before it writes one there.
func TestLock_preview(t *testing.T) {
	b := newBox(t)
	b.provision(b.prefsText(12, "", "a"))
	l := b.lock()
	running, _, _ := l.LastGood()
	edit := parse(t, b.prefsText(12, "", "a", "b"))
	if err := l.Preview(running, edit, b.code(1, running.LockedDigest())); err == nil || !strings.Contains(err.Error(), "another change") {
		t.Errorf("preview of a code for another change: %v", err)
	}
	if err := l.Preview(running, edit, b.code(1, edit.LockedDigest())); err != nil {
		t.Errorf("preview of the right code: %v", err)
	}
	// Not spent: it still works.
	if err := l.Preview(running, edit, b.code(1, edit.LockedDigest())); err != nil {
		t.Errorf("second preview: %v", err)
	}
}

// TestLock_intervalRule protects the one setting editable without a code,
// and only while sync_id > 0.
func TestLock_intervalRule(t *testing.T) {
	b := newBox(t)
	b.provision(b.prefsText(12, "", "a"))
	l := b.lock()
	running, _, _ := l.LastGood()
	edit := strings.Replace(b.prefsText(12, "", "a"), "interval_minutes = 10", "interval_minutes = 3", 1)
	if _, err := l.Authorise(running, []byte(edit), parse(t, edit)); err != nil {
		t.Errorf("interval edit with sync on: %v", err)
	}
	off := parse(t, b.prefsText(0, "", "a"))
	offEdit := strings.Replace(b.prefsText(0, "", "a"), "interval_minutes = 10", "interval_minutes = 3", 1)
	if _, err := l.Authorise(off, []byte(offEdit), parse(t, offEdit)); err == nil || !strings.Contains(err.Error(), "only while sync_id > 0") {
		t.Errorf("interval edit with sync_id 0 on a provisioned box: %v", err)
	}
}
