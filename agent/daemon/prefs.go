package daemon

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/prefs"
)

// lastGoodName is the provisioned prefs, kept in the lock directory: its
// existence means the box is provisioned and locked.
const lastGoodName = "prefs.last-good.toml"

// lockDir holds what the lock depends on (last-good prefs, the unlock
// ledger). Under systemd it is the unit's StateDirectory, which the prefs file
// cannot redirect; elsewhere the state_dir of the prefs.
func lockDir(p *prefs.Prefs) string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return strings.Split(d, ":")[0]
	}
	if p != nil && p.Paths.StateDir != "" {
		return p.Paths.StateDir
	}
	return "/var/lib/syncagent"
}

// loadStartupPrefs picks the prefs to start with: the file, when it is valid
// and allowed by the lock; otherwise the last good copy, with the reason kept
// for status. A fresh box accepts its first valid file as its provisioning.
func (a *Agent) loadStartupPrefs() (*prefs.Prefs, control.Prefs, error) {
	path := a.opts.PrefsPath
	fileP, fileErr := prefs.Load(path)
	var seed *prefs.Prefs
	if fileErr == nil {
		seed = fileP
	}
	dir := lockDir(seed)
	good, goodErr := prefs.Load(filepath.Join(dir, lastGoodName))
	state := control.Prefs{File: path, LoadedAt: time.Now(), State: "ok"}
	if goodErr != nil && !errors.Is(goodErr, fs.ErrNotExist) {
		a.log.Error("the last good prefs copy is unreadable; treating the file as the provisioning", "err", goodErr)
	}
	switch {
	case good == nil && fileErr != nil:
		if errors.Is(fileErr, fs.ErrNotExist) {
			return nil, state, fmt.Errorf("no prefs file at %s: install one (see /usr/share/doc/syncagent/prefs.toml) or pass --prefs", path)
		}
		return nil, state, fmt.Errorf("invalid prefs, nothing started: %w", fileErr)
	case good == nil:
		// First start: nothing to compare with.
		if err := accept(dir, path, fileP); err != nil {
			return nil, state, err
		}
		state.Digest = fileP.LockedDigest()
		return fileP, state, nil
	case fileErr != nil:
		state.State, state.Error = "rejected", firstLine(fileErr)
		a.log.Error("prefs file rejected; running the last good prefs", "err", fileErr)
		good.Source = path
		state.Digest = good.LockedDigest()
		return good, state, nil
	}
	g, err := a.authorise(good, fileP)
	var by string
	if err == nil {
		by, err = g.spend()
	}
	if err == nil {
		err = accept(dir, path, fileP)
	}
	if err != nil {
		state.State, state.Error = "rejected", err.Error()
		a.log.Error("prefs change refused; running the last good prefs", "err", err)
		state.Digest = good.LockedDigest()
		good.Source = path
		return good, state, nil
	}
	state.UnlockedBy, state.Digest = by, fileP.LockedDigest()
	return fileP, state, nil
}

// accept records p (read from path) as the last good prefs, and the box as
// provisioned once p has sync_id > 0.
func accept(dir, path string, p *prefs.Prefs) error {
	if err := saveLastGood(dir, path); err != nil {
		return err
	}
	if p.Site.SyncID > 0 && !provisioned(dir) {
		if err := writeFileSync(filepath.Join(dir, provisionedName), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
			return fmt.Errorf("cannot mark the box provisioned: %w", err)
		}
	}
	return nil
}

// saveLastGood copies the accepted prefs file into the lock directory with
// write-temp, fsync, rename, fsync-dir.
func saveLastGood(dir, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read prefs to keep as last good: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot create %s: %w", dir, err)
	}
	return writeFileSync(filepath.Join(dir, lastGoodName), data, 0o600)
}

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

// watchPrefs reloads on SIGHUP and when the prefs file's content changes.
// hup must be registered before READY=1, or an early `systemctl reload`
// would kill the agent.
func (a *Agent) watchPrefs(ctx context.Context, changes, hup <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
			a.Reload()
		case <-hup:
			a.notify.Reloading()
			a.Reload()
			a.notify.Ready()
		}
	}
}

// Reload re-reads the prefs file: strict decode, validate, check the lock,
// let every component verify, then commit. Any failure keeps the running prefs
// and says why, once per file content.
func (a *Agent) Reload() (control.Reload, error) {
	a.prefsMu.Lock()
	defer a.prefsMu.Unlock()
	path := a.opts.PrefsPath
	data, readErr := os.ReadFile(path)
	sum := sha256.Sum256(data)
	state := a.reloadLocked(data, readErr)
	if state.Error != "" && sum != a.lastSeen {
		a.log.Error("prefs change not applied; the running prefs stay in force", "state", state.State, "err", state.Error)
	}
	a.lastSeen = sum
	a.prefsSt.Store(&state)
	a.updateStatus()
	if state.Error != "" {
		return control.Reload{State: state.State + ": " + state.Error}, nil
	}
	return control.Reload{State: state.State}, nil
}

func (a *Agent) reloadLocked(data []byte, readErr error) control.Prefs {
	old := a.prefs.Load()
	prev := *a.prefsSt.Load()
	state := control.Prefs{File: a.opts.PrefsPath, LoadedAt: time.Now(), State: "ok", Digest: old.LockedDigest(), UnlockedBy: prev.UnlockedBy, WindowUntil: prev.WindowUntil}
	reject := func(kind string, err error) control.Prefs {
		state.State, state.Error = kind, firstLine(err)
		return state
	}
	if readErr != nil {
		return reject("rejected", fmt.Errorf("cannot read %s: %w", a.opts.PrefsPath, readErr))
	}
	next, err := prefs.Parse(a.opts.PrefsPath, data)
	if err != nil {
		return reject("rejected", err)
	}
	g, err := a.authorise(old, next)
	if err != nil {
		return reject("rejected", err)
	}
	var restart []string
	for _, c := range prefs.Changes(old, next) {
		switch c.Setting() {
		case "version", "site.sync_id", "paths.state_dir", "paths.control_socket", "paths.vendor_keys", "listen.address", "listen.tls_cert", "listen.tls_key":
		default:
			continue
		}
		{
			restart = append(restart, c.Key)
		}
	}
	if len(restart) > 0 {
		return reject("restart needed", fmt.Errorf("%s cannot change while running: run `systemctl restart syncagent` to apply", strings.Join(restart, ", ")))
	}
	if err := a.verify(next); err != nil {
		return reject("rejected", err)
	}
	by, err := g.spend()
	if err != nil {
		return reject("rejected", err)
	}
	if err := accept(lockDir(old), a.opts.PrefsPath, next); err != nil {
		return reject("rejected", err)
	}
	a.commit(next)
	if by != "" {
		state.UnlockedBy = by
	}
	state.Digest = next.LockedDigest()
	state.WindowUntil = a.windowUntil()
	a.log.Info("prefs applied", "interval", next.Interval(), "locked_digest", state.Digest[:12])
	return state
}

// verify asks every component whether it can take next.
func (a *Agent) verify(next *prefs.Prefs) error {
	if a.prim != nil {
		return a.prim.Verify(primaryConfig(next))
	}
	return nil
}

// commit applies next everywhere; verify has passed.
func (a *Agent) commit(next *prefs.Prefs) {
	next.Source = a.opts.PrefsPath
	a.prefs.Store(next)
	if a.prim != nil {
		if err := a.prim.Configure(primaryConfig(next)); err != nil {
			a.log.Error("primary refused verified prefs", "err", err)
		}
	}
	if a.sat != nil {
		a.sat.Configure(satelliteConfig(next))
	}
	if a.local != nil {
		a.local.SetOutboxMax(next.Limits.OutboxMaxRecords)
	}
	if a.loop != nil {
		a.loop.poke(a.loop.replan)
	}
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + fmt.Sprintf(" (and %d more problems: run `syncagent prefs check`)", strings.Count(s[i:], "\n"))
	}
	return s
}
