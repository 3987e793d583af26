package unlock

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The refusals. Each error Check and Redeem return for a bad code wraps
// exactly one of these (test with errors.Is), and its message adds what the
// technician should do.
var (
	// ErrMistyped: a character outside the alphabet, the wrong number of
	// symbols, or a check symbol that does not match.
	ErrMistyped = errors.New("unlock code is mistyped")
	// ErrUnknownKey: the code names a vendor key this box does not know, or
	// one that has been revoked.
	ErrUnknownKey = errors.New("unlock code is signed with a key this box does not trust")
	// ErrOtherBox: the code was issued for another hardware ID.
	ErrOtherBox = errors.New("unlock code was issued for another box")
	// ErrOtherChange: a change-bound code issued for other locked settings
	// than those being applied; the message names the digest this change needs.
	ErrOtherChange = errors.New("unlock code was issued for another change")
	// ErrBadSignature: the code was altered or not issued by the vendor.
	ErrBadSignature = errors.New("unlock code signature is not valid")
	// ErrExpired: the code's expiry has passed; the message says when.
	ErrExpired = errors.New("unlock code has expired")
	// ErrClockBehind: the box's clock reads earlier than a time the box has
	// already seen, or than the code's issue time (a box without a real-time
	// clock after a power cut). Expiry cannot be judged until the clock is set.
	ErrClockBehind = errors.New("this box's clock is behind")
	// ErrUsed: the code's sequence number is not above the last one this box
	// used for that key.
	ErrUsed = errors.New("unlock code has already been used")
)

// ClockTolerance is how far the box's clock may read behind a code's issue
// time or behind the latest time the box has seen before Check refuses with
// ErrClockBehind: a box set by hand a little slow still accepts a fresh code,
// and a small NTP step back is not a refusal.
const ClockTolerance = time.Hour

// timeFormat is how refusals print times: UTC, to the minute.
const timeFormat = "2006-01-02 15:04 UTC"

// Grant is what a verified code allows.
type Grant struct {
	KeyNumber int
	Seq       uint32
	Scope     Scope
	Expiry    time.Time
	// Issued is the code's issue time, rounded down to the minute.
	Issued time.Time
}

// Covers reports whether a window grant keeps the maintenance window open at
// now: from (about) its issue time until its expiry. A change-bound grant
// covers exactly one change, applied once, and no time: always false.
func (g Grant) Covers(now time.Time) bool {
	return g.Scope == ScopeWindow && now.Before(g.Expiry) && !now.Before(g.Issued.Add(-ClockTolerance))
}

// Verifier checks codes on a box.
type Verifier struct {
	// Keys is the vendor keyring: embedded keys merged with vendor_keys.
	Keys *Keyring
	// HardwareID is this box's hardware ID, as the hw package computes it.
	HardwareID string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Ledger records used sequence numbers and the latest trusted time.
	// Check without a ledger skips the clock-behind and already-used
	// checks; Redeem needs one.
	Ledger *Ledger
}

// Check validates code for this box and, for a change-bound code, for the
// locked change whose digest is changeDigest (hex, as prefs.LockedDigest()
// returns it; "" when nothing locked is pending). A window code ignores
// changeDigest. Check does not spend the code: use it to preview, and Redeem
// to apply.
//
// The checks run in this order, and the first failure is returned: mistyped,
// unknown or revoked key, other box, other change, bad signature, clock
// behind, expired, already used.
func (v *Verifier) Check(code string, changeDigest string) (Grant, error) {
	g, _, err := v.check(code, changeDigest)
	return g, err
}

// Redeem checks code as Check does, then records its sequence number (and
// the time it proves) in the ledger, fsynced, before it returns. The caller
// applies the change only after Redeem returns nil; if it returns an error,
// nothing was spent. For a window code the caller keeps the window open
// while Grant.Covers(now); Ledger.Window restores it after a restart.
func (v *Verifier) Redeem(code string, changeDigest string) (Grant, error) {
	if v.Ledger == nil {
		return Grant{}, errors.New("cannot redeem an unlock code: no ledger to record it in")
	}
	g, now, err := v.check(code, changeDigest)
	if err != nil {
		return Grant{}, err
	}
	if err := v.Ledger.spend(g, now); err != nil {
		return Grant{}, err
	}
	return g, nil
}

// RedeemClockReset is the way out for a box whose ledger trusts a time ahead
// of its clock (the clock once ran ahead, then was set right): every code is
// refused as "clock behind" there, this one included if it were checked as
// usual. changeDigest must be the digest of the reset operation for the
// trusted time being given up (the caller derives it from the ledger), so a
// code resets exactly that state once. The code is checked as Redeem checks
// it except for the clock-behind test; then its sequence is spent and the
// trusted time set to the clock's reading, fsynced, before it returns.
func (v *Verifier) RedeemClockReset(code string, changeDigest string) (Grant, error) {
	if v.Ledger == nil {
		return Grant{}, errors.New("cannot reset the trusted time: no ledger")
	}
	g, now, err := v.checkWith(code, changeDigest, false)
	if err != nil {
		return Grant{}, err
	}
	if g.Scope != ScopeChange {
		return Grant{}, fmt.Errorf("%w: resetting the trusted time needs a code bound to the reset's digest %s, not a maintenance-window code", ErrOtherChange, changeDigest)
	}
	if err := v.Ledger.resetTrusted(g, now); err != nil {
		return Grant{}, err
	}
	return g, nil
}

func (v *Verifier) check(code string, changeDigest string) (Grant, time.Time, error) {
	return v.checkWith(code, changeDigest, true)
}

func (v *Verifier) checkWith(code string, changeDigest string, clock bool) (Grant, time.Time, error) {
	c, err := ParseCode(code)
	if err != nil {
		return Grant{}, time.Time{}, err
	}
	hwid, err := normalizeHardwareID(v.HardwareID)
	if err != nil {
		return Grant{}, time.Time{}, fmt.Errorf("cannot check unlock code: this box's %w", err)
	}
	pub, err := v.Keys.lookup(c.KeyNumber)
	if err != nil {
		return Grant{}, time.Time{}, err
	}
	if c.hardwareTag() != hardwareTag(hwid) {
		return Grant{}, time.Time{}, fmt.Errorf("%w: ask the vendor for a code for hardware ID %s (`syncagent unlock` prints it)", ErrOtherBox, strings.TrimSpace(v.HardwareID))
	}
	var digest []byte
	if c.Scope == ScopeChange {
		if changeDigest == "" {
			return Grant{}, time.Time{}, fmt.Errorf("%w: this box has no pending locked change; edit the prefs file first, then run `syncagent unlock` for the digest to send to the vendor", ErrOtherChange)
		}
		if digest, err = decodeDigest(changeDigest); err != nil {
			return Grant{}, time.Time{}, fmt.Errorf("cannot check unlock code: %w", err)
		}
		if tag := c.changeTag(); tag[0] != digest[0] || tag[1] != digest[1] {
			return Grant{}, time.Time{}, fmt.Errorf("%w: this change needs a code for digest %x", ErrOtherChange, digest)
		}
	}
	if !ed25519.Verify(pub, signedMessage(c.payload(), hwid, digest), c.signature()) {
		return Grant{}, time.Time{}, fmt.Errorf("%w: the code was altered or not issued by the vendor for this box; ask the vendor for a new code", ErrBadSignature)
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	// Strip the monotonic reading: within one process a monotonic
	// comparison would hide the wall clock being set back.
	now = now.Round(0)
	seen, lastSeq := time.Time{}, uint32(0)
	if v.Ledger != nil {
		seen, lastSeq = v.Ledger.snapshot(c.KeyNumber)
	}
	if c.Issued.After(seen) || !clock {
		seen = c.Issued // a clock reset still refuses a clock behind the code itself
	}
	if err := clockBehind(now, seen); err != nil {
		return Grant{}, time.Time{}, err
	}
	if !now.Before(c.Expiry) {
		return Grant{}, time.Time{}, fmt.Errorf("%w: it expired at %s and this box's clock reads %s; ask the vendor for a new code",
			ErrExpired, c.Expiry.UTC().Format(timeFormat), now.UTC().Format(timeFormat))
	}
	if err := used(c.KeyNumber, c.Seq, lastSeq); err != nil {
		return Grant{}, time.Time{}, err
	}
	return Grant{KeyNumber: c.KeyNumber, Seq: c.Seq, Scope: c.Scope, Expiry: c.Expiry, Issued: c.Issued}, now, nil
}

// clockBehind refuses when now is more than ClockTolerance before seen, a
// time the box knows has already passed.
func clockBehind(now, seen time.Time) error {
	if !now.Before(seen.Add(-ClockTolerance)) {
		return nil
	}
	return fmt.Errorf("%w: it reads %s, but it has already been %s; set the clock (timedatectl set-time 'YYYY-MM-DD HH:MM:SS') and try again",
		ErrClockBehind, now.UTC().Format(timeFormat), seen.UTC().Format(timeFormat))
}

// used refuses a sequence number that is not above the last one used.
func used(key int, seq, lastSeq uint32) error {
	if seq > lastSeq {
		return nil
	}
	return fmt.Errorf("%w: its sequence number %d for vendor key %d is not above %d, the last one this box used; ask the vendor for a code with sequence %d or higher",
		ErrUsed, seq, key, lastSeq, uint64(lastSeq)+1)
}
