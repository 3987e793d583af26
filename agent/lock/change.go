package lock

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"syncagent/agent/prefs"
	"syncagent/agent/unlock"
)

// Change is an edit of the running prefs that the lock allows, waiting to be
// committed.
type Change struct {
	Prefs *prefs.Prefs
	data  []byte
	grant grant
}

// Authorise checks whether next, parsed from exactly data, may replace the
// running prefs. A vendor_keys file named for the first time is checked
// here, so a clashing keyring is refused when named, not at the next code.
// Nothing is spent or written: Commit does that.
func (l *Lock) Authorise(running *prefs.Prefs, data []byte, next *prefs.Prefs) (*Change, error) {
	if next.Paths.VendorKeys != running.Paths.VendorKeys {
		if err := l.CheckKeyring(next); err != nil {
			return nil, err
		}
	}
	g, err := l.authorise(running, next, l.Provisioned())
	if err != nil {
		return nil, err
	}
	return &Change{Prefs: next, data: data, grant: g}, nil
}

// Commit spends the change's code, if any, then keeps exactly the verified
// bytes as the last good prefs. Call it after every other component accepted
// the change, right before applying it; on an error, apply nothing.
func (l *Lock) Commit(c *Change) (unlockedBy string, err error) {
	by, err := c.grant.spend()
	if err != nil {
		return "", err
	}
	if err := l.keep(c.data, c.Prefs); err != nil {
		return "", err
	}
	return by, nil
}

// OperationDigest is the change digest a code must be bound to for a locked
// operation that is not a prefs edit, such as "clear-hwid 14".
func OperationDigest(op string) string {
	sum := sha256.Sum256([]byte("syncagent operation v1\x00" + op))
	return hex.EncodeToString(sum[:])
}

// Operation checks and spends a code for a locked operation (an open window
// allows it too), with running's keyring. It returns what allowed it.
func (l *Lock) Operation(running *prefs.Prefs, op, code string) (string, error) {
	g, err := l.check(running, op, OperationDigest(op), code)
	if err != nil {
		return "", err
	}
	return g.spend()
}

// ClockResetOperation is the operation whose digest a clock-reset code is
// bound to: giving up exactly this trusted time.
func ClockResetOperation(trusted time.Time) string {
	return "reset-trusted-time " + trusted.UTC().Format(time.RFC3339Nano)
}

// TrustedAhead returns the ledger's trusted time when the clock reads more
// than unlock.ClockTolerance before it: then every code is refused as
// "clock behind", and ResetClock is the way out.
func (l *Lock) TrustedAhead() (time.Time, bool) {
	if !exists(l.path(LedgerName)) {
		return time.Time{}, false
	}
	led, err := l.openLedger()
	if err != nil {
		return time.Time{}, false
	}
	trusted := led.Status().Trusted
	if l.opts.Now().Round(0).Before(trusted.Add(-unlock.ClockTolerance)) {
		return trusted, true
	}
	return time.Time{}, false
}

// ResetClock brings the ledger's trusted time back to the clock, with a code
// the vendor bound to OperationDigest(ClockResetOperation(trusted)) for the
// trusted time TrustedAhead reports. Set the clock right first: the reset
// trusts it.
func (l *Lock) ResetClock(running *prefs.Prefs, code string) (string, error) {
	if l.opts.ReadOnly {
		return "", fmt.Errorf("resetting the trusted time needs the running agent: start it (it runs with the clock behind; it only refuses codes)")
	}
	trusted, ahead := l.TrustedAhead()
	if !ahead {
		return "", fmt.Errorf("the unlock ledger's trusted time is not ahead of this box's clock: there is nothing to reset")
	}
	v, err := l.verifier(running)
	if err != nil {
		return "", err
	}
	g, err := v.RedeemClockReset(code, OperationDigest(ClockResetOperation(trusted)))
	if err != nil {
		return "", refusal(err)
	}
	l.log.Warn("unlock ledger's trusted time reset to the clock", "was", trusted, "now", l.opts.Now(), "key", g.KeyNumber, "seq", g.Seq)
	return fmt.Sprintf("key %d seq %d", g.KeyNumber, g.Seq), nil
}

// Info is what a technician sends the vendor.
type Info struct {
	HardwareID   string
	ChangeDigest string // of the file on disk
	// Pending: the file on disk differs from the running prefs in locked
	// settings, on a provisioned box.
	Pending     bool
	Provisioned bool
	// TrustedAhead is the ledger's trusted time when it is ahead of the
	// clock (zero otherwise), and ClockResetDigest the digest a code to
	// reset it must be bound to.
	TrustedAhead     time.Time
	ClockResetDigest string
	Request          string
}

// Info describes the pending change from running to onDisk. running is nil
// when there are none (a box never started).
func (l *Lock) Info(running, onDisk *prefs.Prefs) Info {
	in := Info{HardwareID: l.opts.HardwareID, ChangeDigest: onDisk.LockedDigest(), Provisioned: l.Provisioned()}
	in.Pending = in.Provisioned && !running.LockedEqual(onDisk)
	site := onDisk.Site.SyncID
	if running != nil {
		site = running.Site.SyncID
	}
	switch {
	case !in.Provisioned:
		in.Request = "This box is not provisioned yet: no unlock code is needed."
	case in.Pending:
		in.Request = fmt.Sprintf("Please issue a syncagent unlock code: hardware ID %s, change digest %s (site %d).", l.opts.HardwareID, in.ChangeDigest, site)
	default:
		in.Request = fmt.Sprintf("Please issue a syncagent maintenance-window code: hardware ID %s (site %d); no locked change is pending.", l.opts.HardwareID, site)
	}
	if t, ahead := l.TrustedAhead(); ahead {
		in.TrustedAhead, in.ClockResetDigest = t, OperationDigest(ClockResetOperation(t))
		in.Request += fmt.Sprintf(" This box's unlock ledger trusts a time (%s) ahead of its clock, so it refuses every code: if the clock is right, also issue a clock-reset code: hardware ID %s, change digest %s.",
			t.UTC().Format(time.RFC3339), l.opts.HardwareID, in.ClockResetDigest)
	}
	return in
}

// Preview checks, without spending it, whether code would let onDisk (with
// code as its [unlock] code) replace running: the CLI asks before it writes a
// code into the prefs file, so a refused code never stays there.
func (l *Lock) Preview(running, onDisk *prefs.Prefs, code string) error {
	if !l.Provisioned() {
		return fmt.Errorf("this box is not provisioned yet: no unlock code is needed")
	}
	next := *onDisk
	next.Unlock.Code = code
	digest := ""
	if !running.LockedEqual(&next) {
		digest = next.LockedDigest()
	}
	v, err := l.verifier(running)
	if err != nil {
		return err
	}
	if _, err := v.Check(code, digest); err != nil {
		return refusal(err)
	}
	return nil
}

// SitesOperation is the locked operation of a change of the primary's site
// registry whose digest (of exactly the rows it writes and removes) is
// digest: one code covers a change of any size, an import of 40,000 rows
// as much as one edit (docs/registry.md).
func SitesOperation(digest string) string { return "site-registry " + digest }
