package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/prefs"
	"syncagent/agent/unlock"
	"syncagent/packaging/vendorkeys"
)

// ledgerName is the unlock ledger (spent sequences, last trusted time) in
// the lock directory.
const ledgerName = "unlock-ledger.json"

// verifier builds the unlock verifier from the RUNNING prefs: a new file
// cannot name its own keyring to unlock itself.
func (a *Agent) verifier(running *prefs.Prefs) (*unlock.Verifier, error) {
	keys, err := unlock.ParseKeyring(vendorkeys.Keyring)
	if err != nil {
		return nil, fmt.Errorf("the embedded vendor keyring is broken: %w", err)
	}
	if path := running.Paths.VendorKeys; path != "" {
		extra, err := readRootOwned(path)
		if err != nil {
			return nil, err
		}
		more, err := unlock.ParseKeyring(extra)
		if err != nil {
			return nil, fmt.Errorf("vendor_keys %s: %w", path, err)
		}
		if err := keys.Merge(more); err != nil {
			return nil, fmt.Errorf("vendor_keys %s: %w", path, err)
		}
	}
	if a.ledger == nil {
		l, err := unlock.OpenLedger(filepath.Join(lockDir(running), ledgerName))
		if err != nil {
			return nil, fmt.Errorf("cannot open the unlock ledger: %w", err)
		}
		a.ledger = l
	}
	if err := a.ledger.Observe(time.Now()); err != nil {
		a.log.Warn("cannot record the time in the unlock ledger", "err", err)
	}
	return &unlock.Verifier{Keys: keys, HardwareID: a.hwid, Ledger: a.ledger}, nil
}

// readRootOwned reads a keyring file only if root owns it and nobody else
// may write it: a keyring is as powerful as the vendor's key.
func readRootOwned(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("vendor_keys: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Uid != 0 || fi.Mode().Perm()&0o022 != 0) {
		return nil, fmt.Errorf("vendor_keys %s must be owned by root and writable by root only (chown root:root, chmod 644)", path)
	}
	return os.ReadFile(path)
}

// authorise decides whether next may replace running, per the lock rules:
// interval_minutes alone may change without a code while sync_id > 0; any
// other change needs an open maintenance window or a valid code in
// [unlock] code. It returns who unlocked the change ("" when no code was
// needed).
func (a *Agent) authorise(running, next *prefs.Prefs) (string, error) {
	var locked []string
	intervalChanged := false
	for _, c := range prefs.Changes(running, next) {
		if c.Locked {
			locked = append(locked, c.Key)
		} else if c.Key == "site.interval_minutes" {
			intervalChanged = true
		}
	}
	if len(locked) == 0 {
		if intervalChanged && running.Site.SyncID <= 0 {
			return "", fmt.Errorf("interval_minutes can change without an unlock code only while sync_id > 0; this box has sync_id 0")
		}
		return "", nil
	}
	return a.redeem(running, strings.Join(locked, ", "), next.LockedDigest(), next.Unlock.Code)
}

// redeem spends code for a locked change with the given digest, unless a
// maintenance window is open.
func (a *Agent) redeem(running *prefs.Prefs, what, digest, code string) (string, error) {
	v, err := a.verifier(running)
	if err != nil {
		return "", err
	}
	if g, ok := a.ledger.Window(time.Now()); ok {
		return fmt.Sprintf("window key %d seq %d", g.KeyNumber, g.Seq), nil
	}
	if strings.TrimSpace(code) == "" {
		return "", fmt.Errorf("locked settings changed (%s): an unlock code is needed; run `syncagent unlock` and send its request to the vendor (change digest %s)", what, digest)
	}
	g, err := v.Redeem(code, digest)
	if err != nil {
		return "", fmt.Errorf("unlock code refused: %w", err)
	}
	if g.Scope == unlock.ScopeWindow {
		a.log.Warn("maintenance window opened", "key", g.KeyNumber, "seq", g.Seq, "until", g.Expiry)
		return fmt.Sprintf("window key %d seq %d", g.KeyNumber, g.Seq), nil
	}
	a.log.Warn("locked settings unlocked", "key", g.KeyNumber, "seq", g.Seq, "change", what)
	return fmt.Sprintf("key %d seq %d", g.KeyNumber, g.Seq), nil
}

// windowUntil is when the open maintenance window closes (zero if none).
func (a *Agent) windowUntil() time.Time {
	if a.ledger == nil {
		return time.Time{}
	}
	if g, ok := a.ledger.Window(time.Now()); ok {
		return g.Expiry
	}
	return time.Time{}
}

// OperationDigest is the change digest a code must be bound to for a locked
// operation that is not a prefs edit, such as "clear-hwid 14".
func OperationDigest(op string) string {
	sum := sha256.Sum256([]byte("syncagent operation v1\x00" + op))
	return hex.EncodeToString(sum[:])
}

// checkSiteChange gates a site-row operation on the primary behind a code.
func (a *Agent) checkSiteChange(op, code string) error {
	a.prefsMu.Lock()
	defer a.prefsMu.Unlock()
	if _, err := a.redeem(a.prefs.Load(), op, OperationDigest(op), code); err != nil {
		return control.Errorf(http.StatusForbidden, "%v", err)
	}
	return nil
}

// Unlock tells the technician what to send the vendor.
func (a *Agent) Unlock() (control.Unlock, error) {
	running := a.prefs.Load()
	u := control.Unlock{HardwareID: a.hwid, ChangeDigest: running.LockedDigest()}
	onDisk, err := prefs.Load(a.opts.PrefsPath)
	if err != nil {
		return u, control.Errorf(http.StatusUnprocessableEntity, "the prefs file on disk is invalid, so there is no change to unlock yet: %s", firstLine(err))
	}
	u.ChangeDigest = onDisk.LockedDigest()
	u.Pending = !running.LockedEqual(onDisk)
	if u.Pending {
		u.Request = fmt.Sprintf("Please issue a syncagent unlock code: hardware ID %s, change digest %s (site %d).", a.hwid, u.ChangeDigest, running.Site.SyncID)
	} else {
		u.Request = fmt.Sprintf("Please issue a syncagent maintenance-window code: hardware ID %s (site %d); no locked change is pending.", a.hwid, running.Site.SyncID)
	}
	return u, nil
}
