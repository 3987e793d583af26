package unlock

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLedger_Observe: observed clock readings advance the trusted time, are
// written at most hourly, survive a restart, and a clock set back is caught.
func TestLedger_Observe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.json")
	l := mustOpenLedger(t, path)
	if err := l.Observe(t0); err != nil {
		t.Fatal(err)
	}
	if got := mustOpenLedger(t, path).Status().Trusted; !got.Equal(t0) {
		t.Fatalf("first observation not written: trusted %v after reopen", got)
	}
	// Ten minutes later: in memory, not yet on disk (flash wear).
	if err := l.Observe(t0.Add(10 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := l.Status().Trusted; !got.Equal(t0.Add(10 * time.Minute)) {
		t.Errorf("in memory trusted %v", got)
	}
	if got := mustOpenLedger(t, path).Status().Trusted; !got.Equal(t0) {
		t.Errorf("on disk trusted %v, want %v", got, t0)
	}
	// An hour past the last write: written.
	if err := l.Observe(t0.Add(61 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := mustOpenLedger(t, path).Status().Trusted; !got.Equal(t0.Add(61 * time.Minute)) {
		t.Errorf("on disk trusted %v, want t0+61m", got)
	}
	// A small step back is tolerated and changes nothing.
	if err := l.Observe(t0.Add(30 * time.Minute)); err != nil {
		t.Errorf("step back within tolerance: %v", err)
	}
	// A clock reset to the factory date is reported.
	err := l.Observe(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	if !errors.Is(err, ErrClockBehind) || !strings.Contains(err.Error(), "set the clock") {
		t.Errorf("clock reset: %v, want ErrClockBehind", err)
	}
	if got := l.Status().Trusted; !got.Equal(t0.Add(61 * time.Minute)) {
		t.Errorf("trusted %v moved back", got)
	}
}

// TestLedger_Status: the daemon shows the last key and sequence used.
func TestLedger_Status(t *testing.T) {
	f := newFixture(t)
	if s := f.ledger.Status(); s.Last != nil || !s.Trusted.IsZero() {
		t.Fatalf("fresh ledger status %+v", s)
	}
	if _, err := f.verifier.Redeem(mustIssue(t, f.priv, claims(seq(9))), digestA); err != nil {
		t.Fatal(err)
	}
	s := mustOpenLedger(t, f.path).Status()
	if s.Last == nil || s.Last.KeyNumber != 1 || s.Last.Seq != 9 || s.Last.Scope != ScopeChange || !s.LastUsedAt.Equal(t0) {
		t.Errorf("status after restart %+v (last %+v)", s, s.Last)
	}
}

// TestLedger_WindowSurvivesRestart: an open window stays open after a
// restart, and only until it expires or the clock turns out to be behind.
func TestLedger_WindowSurvivesRestart(t *testing.T) {
	f := newFixture(t)
	win := mustIssue(t, f.priv, claims(window, func(c *Claims) { c.Expiry = t0.Add(4 * time.Hour) }))
	if _, err := f.verifier.Redeem(win, ""); err != nil {
		t.Fatal(err)
	}
	// A later change code does not close the window.
	f.now = t0.Add(time.Hour)
	if _, err := f.verifier.Redeem(mustIssue(t, f.priv, claims(seq(6))), digestA); err != nil {
		t.Fatal(err)
	}
	l := mustOpenLedger(t, f.path)
	if g, ok := l.Window(t0.Add(2 * time.Hour)); !ok || g.Seq != 5 || g.Scope != ScopeWindow {
		t.Errorf("Window after restart = %+v, %v; want the seq 5 window", g, ok)
	}
	if _, ok := l.Window(t0.Add(4 * time.Hour)); ok {
		t.Error("window open at its expiry")
	}
	if _, ok := l.Window(t0.Add(-3 * time.Hour)); ok {
		t.Error("window open with the clock set back")
	}
	if _, ok := mustOpenLedger(t, filepath.Join(t.TempDir(), "none.json")).Window(t0); ok {
		t.Error("fresh ledger has a window")
	}
}

// TestOpenLedger_Damaged: a damaged ledger is an error, never a fresh start
// (which would let used codes be replayed).
func TestOpenLedger_Damaged(t *testing.T) {
	for _, tc := range []struct{ name, data, want string }{
		{"empty", "", "EOF"},
		{"garbage", "\x00\x01not json", "invalid character"},
		{"unknown field", `{"format":1,"extra":true}`, "unknown field"},
		{"trailing data", `{"format":1} {}`, "trailing data"},
		{"other format", `{"format":2}`, "format 2"},
		{"key out of range", `{"format":1,"keys":{"16":{"last_seq":1,"used_at":"2026-01-01T00:00:00Z"}}}`, "key number 16"},
		{"bad scope", `{"format":1,"last":{"key":1,"seq":1,"scope":"forever","issued":"2026-01-01T00:00:00Z","expiry":"2026-01-01T00:00:00Z","used_at":"2026-01-01T00:00:00Z"}}`, `unknown scope "forever"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.json")
			if err := os.WriteFile(path, []byte(tc.data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := OpenLedger(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("err = %v, want %q and the path", err, tc.want)
			}
		})
	}
}

// TestLedger_AtomicWrite: a write leaves exactly the ledger file, private,
// and no temporary files behind.
func TestLedger_AtomicWrite(t *testing.T) {
	f := newFixture(t)
	for i := range uint32(3) {
		if _, err := f.verifier.Redeem(mustIssue(t, f.priv, claims(seq(10+i))), digestA); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(filepath.Dir(f.path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != filepath.Base(f.path) {
		t.Errorf("state dir holds %v, want only the ledger", entries)
	}
	if fi, err := os.Stat(f.path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ledger mode %v, %v; want 0600", fi.Mode(), err)
	}
	if got := mustOpenLedger(t, f.path).LastSeq(1); got != 12 {
		t.Errorf("LastSeq = %d, want 12", got)
	}
}

// TestLedger_SpendRechecks: a grant checked before another redemption of the
// same sequence was recorded is still refused when it is spent.
func TestLedger_SpendRechecks(t *testing.T) {
	f := newFixture(t)
	g, err := f.verifier.Check(mustIssue(t, f.priv, claims()), digestA)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ledger.spend(g, t0); err != nil {
		t.Fatal(err)
	}
	if err := f.ledger.spend(g, t0); !errors.Is(err, ErrUsed) {
		t.Errorf("second spend: %v, want ErrUsed", err)
	}
}

// TestVerifier_RedeemClockReset protects the way out of a ledger whose
// trusted time ran ahead of the clock: ordinary codes stay refused as "clock
// behind", a reset code bound to the reset's digest brings the trusted time
// back once, and ordinary codes work again.
func TestVerifier_RedeemClockReset(t *testing.T) {
	f := newFixture(t)
	ahead := t0.Add(365 * 24 * time.Hour)
	if err := f.ledger.Observe(ahead); err != nil {
		t.Fatal(err)
	}
	const resetDigest = "5d41402abc4b2a76b9719d911017c592b5d41402abc4b2a76b9719d911017c59"
	if _, err := f.verifier.Redeem(mustIssue(t, f.priv, claims(seq(1))), digestA); !errors.Is(err, ErrClockBehind) {
		t.Fatalf("ordinary code with the ledger ahead: %v, want ErrClockBehind", err)
	}
	if _, err := f.verifier.RedeemClockReset(mustIssue(t, f.priv, claims(seq(2), window)), resetDigest); !errors.Is(err, ErrOtherChange) {
		t.Errorf("window code as a reset: %v, want ErrOtherChange", err)
	}
	if _, err := f.verifier.RedeemClockReset(mustIssue(t, f.priv, claims(seq(3))), resetDigest); !errors.Is(err, ErrOtherChange) {
		t.Errorf("code for another change as a reset: %v, want ErrOtherChange", err)
	}
	reset := mustIssue(t, f.priv, claims(seq(4), func(c *Claims) { c.ChangeDigest = resetDigest }))
	if _, err := f.verifier.RedeemClockReset(reset, resetDigest); err != nil {
		t.Fatalf("reset code: %v", err)
	}
	if got := mustOpenLedger(t, f.path).Status().Trusted; !got.Equal(t0) {
		t.Errorf("trusted time after the reset %v, want the clock's %v (on disk)", got, t0)
	}
	if _, err := f.verifier.RedeemClockReset(reset, resetDigest); !errors.Is(err, ErrUsed) {
		t.Errorf("reset code replayed: %v, want ErrUsed", err)
	}
	if _, err := f.verifier.Redeem(mustIssue(t, f.priv, claims(seq(5))), digestA); err != nil {
		t.Errorf("ordinary code after the reset: %v", err)
	}
}
