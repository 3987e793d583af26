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

// provisionedName marks a box as provisioned: written the first time prefs
// with sync_id > 0 are accepted, never removed. From then on the lock holds.
const provisionedName = "provisioned"

func provisioned(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, provisionedName))
	return err == nil
}

// grant is the outcome of a lock check: the change is allowed, and redeem
// (when set) spends the code. Call redeem as the very last step before
// committing, so a change that fails later does not burn a code.
type grant struct {
	by     string
	redeem func() (string, error)
}

func (g grant) spend() (string, error) {
	if g.redeem == nil {
		return g.by, nil
	}
	return g.redeem()
}

// authorise decides whether next may replace running, per the lock rules:
// before provisioning anything goes; after it, interval_minutes alone may
// change without a code while sync_id > 0, and any other change needs an
// open maintenance window or a valid code in [unlock] code.
func (a *Agent) authorise(running, next *prefs.Prefs) (grant, error) {
	var locked []string
	intervalChanged := false
	for _, c := range prefs.Changes(running, next) {
		if c.Locked {
			locked = append(locked, c.Key)
		} else if c.Key == "site.interval_minutes" {
			intervalChanged = true
		}
	}
	if !provisioned(lockDir(running)) {
		return grant{}, nil
	}
	if len(locked) == 0 {
		if intervalChanged && running.Site.SyncID <= 0 {
			return grant{}, fmt.Errorf("interval_minutes can change without an unlock code only while sync_id > 0; this box has sync_id 0")
		}
		return grant{}, nil
	}
	return a.check(running, strings.Join(locked, ", "), next.LockedDigest(), next.Unlock.Code)
}

// check verifies code for a locked change with the given digest (or finds a
// maintenance window open) without spending it.
func (a *Agent) check(running *prefs.Prefs, what, digest, code string) (grant, error) {
	v, err := a.verifier(running)
	if err != nil {
		return grant{}, err
	}
	if g, ok := a.ledger.Window(time.Now()); ok {
		return grant{by: fmt.Sprintf("window key %d seq %d", g.KeyNumber, g.Seq)}, nil
	}
	if strings.TrimSpace(code) == "" {
		return grant{}, fmt.Errorf("locked settings changed (%s): an unlock code is needed; run `syncagent unlock` and send its request to the vendor (change digest %s)", what, digest)
	}
	if _, err := v.Check(code, digest); err != nil {
		return grant{}, refusal(err)
	}
	return grant{redeem: func() (string, error) {
		g, err := v.Redeem(code, digest)
		if err != nil {
			return "", refusal(err)
		}
		if g.Scope == unlock.ScopeWindow {
			a.log.Warn("maintenance window opened", "key", g.KeyNumber, "seq", g.Seq, "until", g.Expiry)
			return fmt.Sprintf("window key %d seq %d", g.KeyNumber, g.Seq), nil
		}
		a.log.Warn("locked settings unlocked", "key", g.KeyNumber, "seq", g.Seq, "change", what)
		return fmt.Sprintf("key %d seq %d", g.KeyNumber, g.Seq), nil
	}}, nil
}

// refusal says a code was refused without repeating "unlock code".
func refusal(err error) error { return fmt.Errorf("refused: %w", err) }

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
	g, err := a.check(a.prefs.Load(), op, OperationDigest(op), code)
	if err == nil {
		_, err = g.spend()
	}
	if err != nil {
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
