package unlock

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

var refusals = []error{ErrMistyped, ErrUnknownKey, ErrOtherBox, ErrOtherChange, ErrBadSignature, ErrExpired, ErrClockBehind, ErrUsed}

// TestVerifier_Refusals: every refusal is its own sentinel, and its message
// tells the technician what to do.
func TestVerifier_Refusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		// code builds the code; setup (optional) prepares the box first.
		code   func(t *testing.T, f *fixture) string
		setup  func(t *testing.T, f *fixture)
		digest string
		want   error
		msg    []string
	}{
		{
			name: "mistyped check symbol",
			code: func(t *testing.T, f *fixture) string {
				c := mustIssue(t, f.priv, claims())
				return c[:20] + flip(c[20]) + c[21:]
			},
			want: ErrMistyped,
			msg:  []string{"unlock code is mistyped: the check symbol does not match; re-type it"},
		},
		{
			name: "mistyped length",
			code: func(t *testing.T, f *fixture) string { return mustIssue(t, f.priv, claims())[6:] },
			want: ErrMistyped,
			msg:  []string{"it has 124 symbols, a code has 129", "re-type it"},
		},
		{
			name: "mistyped character",
			code: func(t *testing.T, f *fixture) string { return "?" + mustIssue(t, f.priv, claims())[1:] },
			want: ErrMistyped,
			msg:  []string{`'?' (symbol 1 of group 1) is not a code character`, "re-type it"},
		},
		{
			name: "unknown key",
			code: func(t *testing.T, f *fixture) string {
				_, priv, _ := Keygen(2)
				return mustIssue(t, priv, claims(func(c *Claims) { c.KeyNumber = 2 }))
			},
			want: ErrUnknownKey,
			msg:  []string{"vendor key 2, which this box does not know", "add its public key to the vendor_keys keyring"},
		},
		{
			name: "revoked key",
			code: func(t *testing.T, f *fixture) string { return mustIssue(t, f.priv, claims()) },
			setup: func(t *testing.T, f *fixture) {
				revoked, err := ParseKeyring([]byte(strings.TrimSpace(f.pub) + " revoked\n"))
				if err != nil {
					t.Fatal(err)
				}
				if err := f.keys.Merge(revoked); err != nil {
					t.Fatal(err)
				}
			},
			want: ErrUnknownKey,
			msg:  []string{"vendor key 1, which has been revoked", "ask the vendor for a new code"},
		},
		{
			name: "other box",
			code: func(t *testing.T, f *fixture) string {
				return mustIssue(t, f.priv, claims(func(c *Claims) { c.HardwareID = "HW1-0000-1111-2222" }))
			},
			want: ErrOtherBox,
			msg:  []string{"issued for another box", "ask the vendor for a code for hardware ID " + boxID},
		},
		{
			name:   "other change",
			code:   func(t *testing.T, f *fixture) string { return mustIssue(t, f.priv, claims()) },
			digest: digestB,
			want:   ErrOtherChange,
			msg:    []string{"issued for another change: this change needs a code for digest " + digestB},
		},
		{
			name:   "change code with no pending change",
			code:   func(t *testing.T, f *fixture) string { return mustIssue(t, f.priv, claims()) },
			digest: "-",
			want:   ErrOtherChange,
			msg:    []string{"this box has no pending locked change"},
		},
		{
			name: "bad signature: altered",
			code: func(t *testing.T, f *fixture) string {
				return reencode(t, mustIssue(t, f.priv, claims()), func(raw *[codeLen]byte) { raw[8+3] ^= 0x40 }) // seq 5 -> 69
			},
			want: ErrBadSignature,
			msg:  []string{"altered or not issued by the vendor", "ask the vendor for a new code"},
		},
		{
			name: "bad signature: someone else's key 1",
			code: func(t *testing.T, f *fixture) string {
				_, forger, _ := Keygen(1)
				return mustIssue(t, forger, claims())
			},
			want: ErrBadSignature,
			msg:  []string{"unlock code signature is not valid"},
		},
		{
			name: "expired",
			code: func(t *testing.T, f *fixture) string {
				return mustIssue(t, f.priv, claims(func(c *Claims) { c.Issued, c.Expiry = t0.Add(-2*time.Hour), t0.Add(-time.Hour) }))
			},
			want: ErrExpired,
			msg:  []string{"it expired at 2026-03-01 11:00 UTC and this box's clock reads 2026-03-01 12:00 UTC", "ask the vendor for a new code"},
		},
		{
			name: "clock behind the ledger",
			code: func(t *testing.T, f *fixture) string { return mustIssue(t, f.priv, claims()) },
			setup: func(t *testing.T, f *fixture) {
				if err := f.ledger.Observe(t0.Add(72 * time.Hour)); err != nil {
					t.Fatal(err)
				}
			},
			want: ErrClockBehind,
			msg:  []string{"it reads 2026-03-01 12:00 UTC, but it has already been 2026-03-04 12:00 UTC", "set the clock"},
		},
		{
			name: "clock behind the code's issue time",
			code: func(t *testing.T, f *fixture) string {
				return mustIssue(t, f.priv, claims(func(c *Claims) { c.Issued, c.Expiry = t0.AddDate(0, 2, 0), t0.AddDate(0, 2, 1) }))
			},
			want: ErrClockBehind,
			msg:  []string{"but it has already been 2026-05-01 12:00 UTC", "set the clock"},
		},
		{
			name: "already used",
			code: func(t *testing.T, f *fixture) string { return mustIssue(t, f.priv, claims(seq(4))) },
			setup: func(t *testing.T, f *fixture) {
				if _, err := f.verifier.Redeem(mustIssue(t, f.priv, claims(seq(5))), digestA); err != nil {
					t.Fatal(err)
				}
			},
			want: ErrUsed,
			msg:  []string{"sequence number 4 for vendor key 1 is not above 5", "ask the vendor for a code with sequence 6 or higher"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.setup != nil {
				tc.setup(t, f)
			}
			digest := tc.digest
			switch digest {
			case "":
				digest = digestA
			case "-":
				digest = ""
			}
			code := tc.code(t, f)
			before := f.ledger.Status()
			for i, op := range []func(string, string) (Grant, error){f.verifier.Check, f.verifier.Redeem} {
				_, err := op(code, digest)
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				if i == 0 {
					t.Log(err) // the message, for review with -v
				}
				for _, other := range refusals {
					if other != tc.want && errors.Is(err, other) {
						t.Errorf("err %v is also %v", err, other)
					}
				}
				for _, m := range tc.msg {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("message %q\n  does not contain %q", err, m)
					}
				}
			}
			// A refused code changes nothing.
			if after := f.ledger.Status(); !sameStatus(before, after) {
				t.Errorf("ledger changed by a refused code: %+v -> %+v", before, after)
			}
		})
	}
}

func sameStatus(a, b LedgerStatus) bool {
	if (a.Last == nil) != (b.Last == nil) || (a.Last != nil && *a.Last != *b.Last) {
		return false
	}
	return a.Trusted.Equal(b.Trusted) && a.LastUsedAt.Equal(b.LastUsedAt)
}

// flip returns a different valid symbol for s.
func flip(s byte) string {
	if s == '7' {
		return "8"
	}
	return "7"
}

// TestVerifier_ChangeCodeAppliesOnlyItsDigest: a change-bound code unlocks
// exactly the change it was issued for.
func TestVerifier_ChangeCodeAppliesOnlyItsDigest(t *testing.T) {
	f := newFixture(t)
	code := mustIssue(t, f.priv, claims())
	// Same first two bytes (the tag), different digest: caught by the signature.
	sameTag := digestA[:4] + strings.Repeat("0", 60)
	for _, tc := range []struct {
		digest string
		want   error
	}{
		{digestB, ErrOtherChange},
		{digestOf("locked settings A "), ErrOtherChange},
		{sameTag, ErrBadSignature},
	} {
		if _, err := f.verifier.Check(code, tc.digest); !errors.Is(err, tc.want) {
			t.Errorf("digest %s: err = %v, want %v", tc.digest, err, tc.want)
		}
	}
	g, err := f.verifier.Redeem(code, strings.ToUpper(digestA)) // hex case does not matter
	if err != nil {
		t.Fatal(err)
	}
	want := Grant{KeyNumber: 1, Seq: 5, Scope: ScopeChange, Expiry: t0.Add(24 * time.Hour), Issued: t0.Add(-5 * time.Minute)}
	if g != want {
		t.Errorf("grant = %+v, want %+v", g, want)
	}
	if g.Covers(t0) {
		t.Error("a change grant covers no time")
	}
}

// TestVerifier_WindowCode: a window code allows any change, once redeemed,
// until its expiry.
func TestVerifier_WindowCode(t *testing.T) {
	f := newFixture(t)
	code := mustIssue(t, f.priv, claims(window, func(c *Claims) { c.Expiry = t0.Add(4 * time.Hour) }))
	for _, d := range []string{digestA, digestB, ""} {
		if _, err := f.verifier.Check(code, d); err != nil {
			t.Errorf("Check with digest %q: %v", d, err)
		}
	}
	g, err := f.verifier.Redeem(code, digestB)
	if err != nil {
		t.Fatal(err)
	}
	if g.Scope != ScopeWindow {
		t.Fatalf("scope %v, want window", g.Scope)
	}
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{
		{t0, true},
		{t0.Add(4*time.Hour - time.Second), true},
		{t0.Add(4 * time.Hour), false},
		{t0.Add(-3 * time.Hour), false}, // clock well before the code was issued
	} {
		if got := g.Covers(tc.at); got != tc.want {
			t.Errorf("Covers(%v) = %v, want %v", tc.at, got, tc.want)
		}
	}
	if _, err := f.verifier.Redeem(code, digestB); !errors.Is(err, ErrUsed) {
		t.Errorf("second Redeem: %v, want ErrUsed", err)
	}
}

// TestVerifier_ReplayRefusedAfterRestart: the spent sequence survives
// reopening the ledger from disk, per key.
func TestVerifier_ReplayRefusedAfterRestart(t *testing.T) {
	f := newFixture(t)
	code := mustIssue(t, f.priv, claims())
	if _, err := f.verifier.Redeem(code, digestA); err != nil {
		t.Fatal(err)
	}

	// Restart: a new ledger from the same file, a new verifier.
	pub2, priv2, _ := Keygen(2)
	k2, _ := ParseKeyring([]byte(pub2))
	if err := f.keys.Merge(k2); err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Keys: f.keys, HardwareID: boxID, Now: func() time.Time { return t0.Add(time.Minute) }, Ledger: mustOpenLedger(t, f.path)}
	if _, err := v.Redeem(code, digestA); !errors.Is(err, ErrUsed) {
		t.Fatalf("replay after restart: %v, want ErrUsed", err)
	}
	if _, err := v.Redeem(mustIssue(t, f.priv, claims(seq(6))), digestA); err != nil {
		t.Errorf("next sequence: %v", err)
	}
	// Sequences are per key: key 2 starts afresh.
	if _, err := v.Redeem(mustIssue(t, priv2, claims(seq(1), func(c *Claims) { c.KeyNumber = 2 })), digestA); err != nil {
		t.Errorf("key 2 sequence 1: %v", err)
	}
	if got := v.Ledger.LastSeq(1); got != 6 {
		t.Errorf("LastSeq(1) = %d, want 6", got)
	}
}

// TestVerifier_CheckDoesNotSpend: previewing a code leaves it redeemable.
func TestVerifier_CheckDoesNotSpend(t *testing.T) {
	f := newFixture(t)
	code := mustIssue(t, f.priv, claims())
	for range 3 {
		if _, err := f.verifier.Check(code, digestA); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.verifier.Redeem(code, digestA); err != nil {
		t.Fatal(err)
	}
}

// TestVerifier_ConcurrentRedeem: of many simultaneous redemptions of one
// code, exactly one wins.
func TestVerifier_ConcurrentRedeem(t *testing.T) {
	f := newFixture(t)
	code := mustIssue(t, f.priv, claims())
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	start := make(chan struct{})
	wins, used := 0, 0
	for range n {
		wg.Go(func() {
			<-start
			_, err := f.verifier.Redeem(code, digestA)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, ErrUsed):
				used++
			default:
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	if wins != 1 || used != n-1 {
		t.Errorf("wins %d, used %d; want 1 and %d", wins, used, n-1)
	}
}

// TestVerifier_RedeemFailsClosed: a ledger that cannot be written spends
// nothing, and Redeem says so instead of granting.
func TestVerifier_RedeemFailsClosed(t *testing.T) {
	f := newFixture(t)
	f.verifier.Ledger = mustOpenLedger(t, t.TempDir()+"/missing-dir/ledger.json")
	code := mustIssue(t, f.priv, claims())
	_, err := f.verifier.Redeem(code, digestA)
	if err == nil || !strings.Contains(err.Error(), "cannot write unlock ledger") {
		t.Fatalf("err = %v, want a ledger write error", err)
	}
	for _, r := range refusals {
		if errors.Is(err, r) {
			t.Errorf("a write failure is not a refusal of the code, got %v", r)
		}
	}
	if got := f.verifier.Ledger.LastSeq(1); got != 0 {
		t.Errorf("LastSeq = %d after a failed write, want 0", got)
	}
	if _, err := (&Verifier{Keys: f.keys, HardwareID: boxID, Now: f.verifier.Now}).Redeem(code, digestA); err == nil {
		t.Error("Redeem without a ledger succeeded")
	}
}

// TestVerifier_RedeemAdvancesTrustedTime: a redeemed code proves its issue
// time has passed, so a clock later set back is caught.
func TestVerifier_RedeemAdvancesTrustedTime(t *testing.T) {
	f := newFixture(t)
	// Issued 50 minutes in the box's future: within tolerance.
	code := mustIssue(t, f.priv, claims(func(c *Claims) { c.Issued = t0.Add(50 * time.Minute) }))
	if _, err := f.verifier.Redeem(code, digestA); err != nil {
		t.Fatal(err)
	}
	if got, want := mustOpenLedger(t, f.path).Status().Trusted, t0.Add(50*time.Minute); !got.Equal(want) {
		t.Errorf("trusted time after restart %v, want %v", got, want)
	}
	f.now = t0.Add(-2 * time.Hour) // power cut, no RTC
	next := mustIssue(t, f.priv, claims(seq(6)))
	if _, err := f.verifier.Check(next, digestA); !errors.Is(err, ErrClockBehind) {
		t.Errorf("err = %v, want ErrClockBehind", err)
	}
}

// TestVerifier_HardwareIDNormalised: the vendor may type the ID in another case.
func TestVerifier_HardwareIDNormalised(t *testing.T) {
	f := newFixture(t)
	code := mustIssue(t, f.priv, claims(func(c *Claims) { c.HardwareID = " " + strings.ToLower(boxID) + "\n" }))
	if _, err := f.verifier.Check(code, digestA); err != nil {
		t.Error(err)
	}
}

// TestVerifier_MisconfiguredIsNotARefusal: wiring mistakes are plain errors.
func TestVerifier_MisconfiguredIsNotARefusal(t *testing.T) {
	f := newFixture(t)
	code := mustIssue(t, f.priv, claims())
	for name, check := range map[string]func() error{
		"no hardware ID": func() error {
			_, err := (&Verifier{Keys: f.keys, Now: f.verifier.Now}).Check(code, digestA)
			return err
		},
		"digest not hex": func() error { _, err := f.verifier.Check(code, "xyz"); return err },
	} {
		err := check()
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		for _, r := range refusals {
			if errors.Is(err, r) {
				t.Errorf("%s: %v is a refusal", name, err)
			}
		}
	}
	// A nil keyring refuses every code as unknown.
	if _, err := (&Verifier{HardwareID: boxID, Now: f.verifier.Now}).Check(code, digestA); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("nil keyring: %v, want ErrUnknownKey", err)
	}
}
