package daemon

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/lock"
	"syncagent/agent/prefs"
	"syncagent/ops"
)

// prefsControl owns prefs changes. Every reload (file watch, SIGHUP, the
// local API) runs on its one goroutine: read the file once (bounded, regular
// files only), parse those bytes, let the lock decide, find the settings no
// component applies live (restart needed), let every component veto, spend
// the code and keep exactly those bytes as last good, then commit to every
// component. Any failure keeps the running prefs and says why, once per file
// content.
type prefsControl struct {
	path    string
	log     *slog.Logger
	lock    *lock.Lock
	parts   []component
	changed func()

	running  atomic.Pointer[prefs.Prefs]
	state    atomic.Pointer[control.Prefs]
	requests chan chan control.Reload

	lastSeen [32]byte // the last file content (or read error) reported; owned by Run
}

func newPrefsControl(path string, log *slog.Logger, l *lock.Lock, running *prefs.Prefs, state control.Prefs, changed func(), parts ...component) *prefsControl {
	c := &prefsControl{path: path, log: log, lock: l, parts: parts, changed: changed, requests: make(chan chan control.Reload)}
	c.running.Store(running)
	c.state.Store(&state)
	return c
}

// Run serves reloads until ctx ends. hup must be registered before READY=1,
// or an early `systemctl reload` would kill the agent.
func (c *prefsControl) Run(ctx context.Context, changes, hup <-chan struct{}, notify *ops.Notifier) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
			c.reload()
		case <-hup:
			notify.Reloading()
			c.reload()
			notify.Ready()
		case reply := <-c.requests:
			reply <- c.reload()
		}
	}
}

// Reload asks Run for a reload now and waits for its outcome.
func (c *prefsControl) Reload(ctx context.Context) (control.Reload, error) {
	reply := make(chan control.Reload, 1)
	select {
	case c.requests <- reply:
	case <-ctx.Done():
		return control.Reload{}, ctx.Err()
	}
	select {
	case r := <-reply:
		return r, nil
	case <-ctx.Done():
		return control.Reload{}, ctx.Err()
	}
}

func (c *prefsControl) reload() control.Reload {
	data, readErr := prefs.ReadFile(c.path)
	sum := sha256.Sum256(data)
	if readErr != nil {
		sum = sha256.Sum256([]byte(readErr.Error()))
	}
	state := c.apply(data, readErr)
	if state.Error != "" && sum != c.lastSeen {
		c.log.Error("prefs change not applied; the running prefs stay in force", "state", state.State, "err", state.Error)
	}
	c.lastSeen = sum
	c.state.Store(&state)
	c.changed()
	r := control.Reload{State: state.State}
	if state.Error != "" {
		r.State += ": " + state.Error
	}
	if state.Pending != "" {
		r.State += " (" + state.Pending + ")"
	}
	return r
}

func (c *prefsControl) apply(data []byte, readErr error) control.Prefs {
	old := c.running.Load()
	prev := *c.state.Load()
	state := control.Prefs{File: c.path, LoadedAt: time.Now(), State: "ok", Digest: old.LockedDigest(), UnlockedBy: prev.UnlockedBy}
	reject := func(kind string, err error) control.Prefs {
		state.State, state.Error = kind, lock.FirstLine(err)
		return state
	}
	if readErr != nil {
		return reject("rejected", readErr)
	}
	next, err := prefs.Parse(c.path, data)
	if err != nil {
		return reject("rejected", err)
	}
	change, err := c.lock.Authorise(old, data, next)
	if err != nil {
		return reject("rejected", err)
	}
	if restart := c.notLive(old, next); len(restart) > 0 {
		return reject("restart needed", fmt.Errorf("%s cannot change while running: run `systemctl restart syncagent` to apply", strings.Join(restart, ", ")))
	}
	for _, part := range c.parts {
		if err := part.verify(next); err != nil {
			return reject("rejected", err)
		}
	}
	by, err := c.lock.Commit(change)
	if err != nil {
		return reject("rejected", err)
	}
	next.Source = c.path
	c.running.Store(next)
	for _, part := range c.parts {
		if p := part.commit(next); p != "" {
			state.Pending = p
		}
	}
	if by != "" {
		state.UnlockedBy = by
	}
	state.Digest = next.LockedDigest()
	c.log.Info("prefs applied", "interval", next.Interval(), "locked_digest", state.Digest[:12], "pending", state.Pending)
	return state
}

// notLive lists the changed settings that no component applies while
// running.
func (c *prefsControl) notLive(old, next *prefs.Prefs) []string {
	var out []string
	for _, ch := range prefs.Changes(old, next) {
		live := false
		for _, part := range c.parts {
			live = live || part.live(ch.Setting())
		}
		if !live {
			out = append(out, ch.Key)
		}
	}
	return out
}

// lockComponent applies the settings the lock reads at every check: the
// unlock code and the vendor keyring (a keyring is checked when first named,
// by Lock.Authorise).
type lockComponent struct{}

func (lockComponent) live(setting string) bool {
	return setting == "unlock.code" || setting == "paths.vendor_keys"
}
func (lockComponent) verify(*prefs.Prefs) error      { return nil }
func (lockComponent) commit(*prefs.Prefs) (s string) { return }
