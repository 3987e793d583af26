// Package lock is the prefs lock policy: which prefs a box runs at start and
// which edits it accepts once it has been provisioned. It works on the exact
// bytes of a prefs file and on the box's lock state, kept in its lock
// directory (the last good prefs, the provisioned marker, the unlock ledger),
// and it keeps as last good exactly the bytes it verified, never the file as
// it is later. It needs no running agent, so it is tested on its own and the
// CLI uses it when the agent is stopped.
//
// The rules (DESIGN.md invariant 7): before a box is provisioned any valid
// prefs go; the first prefs with sync_id > 0 that a start serves with are its
// provisioning; from then on every setting but interval_minutes needs a valid
// unlock code (or an open maintenance window), and interval_minutes may
// change without one only while sync_id > 0. A box that shows it was
// provisioned (its ledger, its marker, its datafile) but has lost its last
// good prefs is not provisioned again from whatever file is there.
//
// Imported by agent/daemon and agent/cli.
package lock

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"syncagent/agent/prefs"
	"syncagent/agent/unlock"
	"syncagent/ops"
	"syncagent/packaging/vendorkeys"
)

// Names in the lock directory.
const (
	// LastGoodName holds the bytes of the last prefs file the lock accepted.
	LastGoodName = "prefs.last-good.toml"
	// ProvisionedName marks a provisioned box: written when a start first
	// serves with sync_id > 0, never removed.
	ProvisionedName = "provisioned"
	// LedgerName is the unlock ledger: spent sequences, trusted time.
	LedgerName = "unlock-ledger.json"
)

// DatafileMeta is the key of the satellite datafile's meta blob that says the
// box was provisioned (queue.Local.SetMeta); the daemon writes it when a start
// provisions, and a fresh-looking lock directory next to a datafile that
// carries it is a lock directory someone emptied.
const DatafileMeta = "lock.provisioned"

// maxKeyringFile bounds a vendor_keys file: 16 keys with comments fit in far
// less.
const maxKeyringFile = 64 << 10

// Options configure a Lock.
type Options struct {
	// Dir is the lock directory (see Dir).
	Dir string
	// HardwareID is this box's hardware ID; codes are bound to it.
	HardwareID string
	// Keyring is the built-in vendor keyring; nil means the one embedded
	// from packaging/vendorkeys.
	Keyring []byte
	// Log receives every refusal of a bypass attempt, as an error.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ReadOnly: never write the lock directory (the CLI's view of a stopped
	// agent; writing there as root would leave files the agent cannot read).
	ReadOnly bool
}

// Lock is one box's lock. Its methods are safe for concurrent use.
type Lock struct {
	opts Options
	log  *slog.Logger

	mu          sync.Mutex
	ledger      *unlock.Ledger // opened on first use; guarded by mu
	provisioned bool           // a start found the box provisioned, or provisioned it; guarded by mu
}

// New returns the lock for opts.Dir.
func New(opts Options) *Lock {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Keyring == nil {
		opts.Keyring = vendorkeys.Keyring
	}
	return &Lock{opts: opts, log: opts.Log.With("component", "lock")}
}

// Dir returns the directory the lock state lives in. Under systemd it is the
// unit's StateDirectory ($STATE_DIRECTORY), which no prefs file can redirect;
// elsewhere the state_dir of the prefs (stateDir, "" for the default).
func Dir(getenv func(string) string, stateDir string) string {
	if d, _, _ := strings.Cut(getenv("STATE_DIRECTORY"), ":"); d != "" {
		return d
	}
	if stateDir != "" {
		return stateDir
	}
	return prefs.DefaultStateDir
}

// StateDirOf returns the state_dir a prefs file names, even when the file is
// invalid (a typo elsewhere must not make a start look for the last good
// prefs in the wrong place): p's when it parsed, else the first
// `state_dir = "…"` line of data, else "".
func StateDirOf(p *prefs.Prefs, data []byte) string {
	if p != nil {
		return p.Paths.StateDir
	}
	for _, line := range strings.Split(string(data), "\n") {
		key, val, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.TrimSpace(key) != "state_dir" && strings.TrimSpace(key) != "paths.state_dir" {
			continue
		}
		val = strings.TrimSpace(val)
		if i := strings.Index(val, " #"); i >= 0 {
			val = strings.TrimSpace(val[:i])
		}
		if len(val) >= 2 && (val[0] == '"' || val[0] == '\'') && val[len(val)-1] == val[0] {
			if s := val[1 : len(val)-1]; filepath.IsAbs(s) {
				return s
			}
		}
	}
	return ""
}

func (l *Lock) path(name string) string { return filepath.Join(l.opts.Dir, name) }

// LastGood returns the last good prefs and their bytes; nil, nil, nil when
// there are none.
func (l *Lock) LastGood() (*prefs.Prefs, []byte, error) {
	data, err := prefs.ReadFile(l.path(LastGoodName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	p, err := prefs.Parse(l.path(LastGoodName), data)
	if err != nil {
		return nil, nil, err
	}
	return p, data, nil
}

// evidence says why the lock directory shows the box was provisioned, or "".
func (l *Lock) evidence() string {
	l.mu.Lock()
	known := l.provisioned
	l.mu.Unlock()
	switch {
	case known:
		return "it was provisioned while running"
	case exists(l.path(ProvisionedName)):
		return "its marker " + l.path(ProvisionedName) + " exists"
	case exists(l.path(LedgerName)):
		return "its unlock ledger " + l.path(LedgerName) + " exists"
	}
	return ""
}

// Provisioned reports whether the lock holds: the box was provisioned.
func (l *Lock) Provisioned() bool {
	if l.evidence() != "" {
		return true
	}
	p, _, _ := l.LastGood()
	return p != nil && p.Site.SyncID > 0
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// keyring is the built-in keyring merged with the root-owned vendor_keys
// file p names.
func (l *Lock) keyring(p *prefs.Prefs) (*unlock.Keyring, error) {
	keys, err := unlock.ParseKeyring(l.opts.Keyring)
	if err != nil {
		return nil, fmt.Errorf("the built-in vendor keyring is broken: %w", err)
	}
	if p == nil || p.Paths.VendorKeys == "" {
		return keys, nil
	}
	path := p.Paths.VendorKeys
	data, err := readRootOwned(path)
	if err != nil {
		return nil, err
	}
	more, err := unlock.ParseKeyring(data)
	if err != nil {
		return nil, fmt.Errorf("vendor_keys %s: %w", path, err)
	}
	if err := keys.Merge(more); err != nil {
		return nil, fmt.Errorf("vendor_keys %s clashes with the built-in keyring: %w", path, err)
	}
	return keys, nil
}

// CheckKeyring refuses prefs whose vendor_keys file cannot be used: missing,
// not root-owned, malformed, or binding a key number the built-in keyring
// binds to another key. A keyring is checked when it is first named, so it
// never gets to block every later change.
func (l *Lock) CheckKeyring(p *prefs.Prefs) error {
	_, err := l.keyring(p)
	return err
}

// readRootOwned reads a keyring only if root owns it and nobody else may
// write it: a keyring is as powerful as the vendor's key. It is read as a
// regular file of bounded size, never a FIFO or a device.
func readRootOwned(path string) ([]byte, error) {
	data, fi, err := ops.ReadRegular(path, maxKeyringFile)
	if err != nil {
		return nil, fmt.Errorf("vendor_keys: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Uid != 0 || fi.Mode().Perm()&0o022 != 0) {
		return nil, fmt.Errorf("vendor_keys %s must be owned by root and writable by root only (chown root:root, chmod 644)", path)
	}
	return data, nil
}

// verifier builds the unlock verifier from the RUNNING prefs' keyring: a
// new file cannot name its own keyring to unlock itself.
func (l *Lock) verifier(running *prefs.Prefs) (*unlock.Verifier, error) {
	keys, err := l.keyring(running)
	if err != nil {
		return nil, err
	}
	ledger, err := l.openLedger()
	if err != nil {
		return nil, err
	}
	if !l.opts.ReadOnly {
		if err := ledger.Observe(l.opts.Now()); err != nil {
			l.log.Warn("cannot record the time in the unlock ledger", "err", err)
		}
	}
	return &unlock.Verifier{Keys: keys, HardwareID: l.opts.HardwareID, Ledger: ledger, Now: l.opts.Now}, nil
}

func (l *Lock) openLedger() (*unlock.Ledger, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ledger != nil {
		return l.ledger, nil
	}
	if !l.opts.ReadOnly {
		if err := os.MkdirAll(l.opts.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("cannot create the lock directory: %w", err)
		}
	}
	led, err := unlock.OpenLedger(l.path(LedgerName))
	if err != nil {
		return nil, fmt.Errorf("cannot open the unlock ledger: %w", err)
	}
	l.ledger = led
	return led, nil
}

// grant is the outcome of a lock check: the change is allowed, and redeem
// (when set) spends the code. Spend it as the very last step before
// applying, so a change that fails later does not burn a code.
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

// authorise decides whether next may replace running. Before provisioning
// anything goes; after it, interval_minutes alone may change without a code
// while sync_id > 0, and any other change needs an open maintenance window or
// a valid code in next's [unlock] code.
func (l *Lock) authorise(running, next *prefs.Prefs, provisioned bool) (grant, error) {
	var locked []string
	intervalChanged := false
	for _, c := range prefs.Changes(running, next) {
		if c.Locked {
			locked = append(locked, c.Key)
		} else if c.Key == "site.interval_minutes" {
			intervalChanged = true
		}
	}
	if !provisioned {
		return grant{}, nil
	}
	if len(locked) == 0 {
		if intervalChanged && running.Site.SyncID <= 0 {
			return grant{}, fmt.Errorf("interval_minutes can change without an unlock code only while sync_id > 0; this box has sync_id 0")
		}
		if code := strings.TrimSpace(next.Unlock.Code); code != "" && next.Unlock.Code != running.Unlock.Code {
			// A new code with no locked change: a maintenance-window code
			// opens its window; a change-bound one is refused as such.
			return l.check(running, "maintenance window", "", code)
		}
		return grant{}, nil
	}
	return l.check(running, strings.Join(locked, ", "), next.LockedDigest(), next.Unlock.Code)
}

// check verifies code for a locked change with the given digest (or finds a
// maintenance window open) without spending it.
func (l *Lock) check(running *prefs.Prefs, what, digest, code string) (grant, error) {
	v, err := l.verifier(running)
	if err != nil {
		return grant{}, err
	}
	if g, ok := v.Ledger.Window(l.opts.Now()); ok {
		return grant{by: fmt.Sprintf("window key %d seq %d", g.KeyNumber, g.Seq)}, nil
	}
	if strings.TrimSpace(code) == "" {
		return grant{}, fmt.Errorf("locked settings changed (%s): an unlock code is needed; run `syncagent unlock` and send its request to the vendor (change digest %s)", what, digest)
	}
	if _, err := v.Check(code, digest); err != nil {
		return grant{}, refusal(err)
	}
	return grant{redeem: func() (string, error) {
		if l.opts.ReadOnly {
			return "", fmt.Errorf("cannot spend an unlock code without the agent")
		}
		g, err := v.Redeem(code, digest)
		if err != nil {
			return "", refusal(err)
		}
		if g.Scope == unlock.ScopeWindow {
			l.log.Warn("maintenance window opened", "key", g.KeyNumber, "seq", g.Seq, "until", g.Expiry)
			return fmt.Sprintf("window key %d seq %d", g.KeyNumber, g.Seq), nil
		}
		l.log.Warn("locked settings unlocked", "key", g.KeyNumber, "seq", g.Seq, "change", what)
		return fmt.Sprintf("key %d seq %d", g.KeyNumber, g.Seq), nil
	}}, nil
}

// refusal says a code was refused without repeating "unlock code".
func refusal(err error) error { return fmt.Errorf("refused: %w", err) }

// WindowUntil is when the open maintenance window closes (zero if none).
func (l *Lock) WindowUntil() time.Time {
	l.mu.Lock()
	led := l.ledger
	l.mu.Unlock()
	if led == nil {
		if !exists(l.path(LedgerName)) {
			return time.Time{}
		}
		var err error
		if led, err = l.openLedger(); err != nil {
			return time.Time{}
		}
	}
	if g, ok := led.Window(l.opts.Now()); ok {
		return g.Expiry
	}
	return time.Time{}
}

// keep writes the bytes of an accepted prefs file as the last good prefs,
// and marks the box provisioned when p has sync_id > 0.
func (l *Lock) keep(data []byte, p *prefs.Prefs) error {
	if l.opts.ReadOnly {
		return fmt.Errorf("cannot keep prefs without the agent")
	}
	if err := os.MkdirAll(l.opts.Dir, 0o700); err != nil {
		return fmt.Errorf("cannot create %s: %w", l.opts.Dir, err)
	}
	if old, err := prefs.ReadFile(l.path(LastGoodName)); err != nil || string(old) != string(data) {
		if err := writeFileSync(l.path(LastGoodName), data, 0o600); err != nil {
			return err
		}
	}
	if p.Site.SyncID > 0 {
		if !exists(l.path(ProvisionedName)) {
			if err := writeFileSync(l.path(ProvisionedName), []byte(l.opts.Now().UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
				return fmt.Errorf("cannot mark the box provisioned: %w", err)
			}
		}
		l.mu.Lock()
		l.provisioned = true
		l.mu.Unlock()
	}
	return nil
}

// writeFileSync replaces path with data: write a temporary file, fsync,
// rename, fsync the directory.
func writeFileSync(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// FirstLine shortens a multi-problem prefs error to its first problem and a
// count, for status lines.
func FirstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + fmt.Sprintf(" (and %d more problems: run `syncagent prefs check`)", strings.Count(s[i:], "\n"))
	}
	return s
}
