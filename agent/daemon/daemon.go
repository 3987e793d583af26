// Package daemon is the one place that wires syncagent together: prefs and
// their lock, the hardware ID, the role (satellite, primary or sync
// disabled, each with its datafile and its goroutine), the control socket,
// systemd notification, the watchdog and reload. Behaviour lives in the
// roles and in the packages they use; this package builds them, completely,
// before anything serves, and runs them under one WaitGroup.
//
// Imported by agent/cli, and by the demo and test harnesses that run whole
// agents in one process (agent/demo, testtools/e2e, testtools/soak).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/lock"
	"syncagent/agent/prefs"
	"syncagent/agent/version"
	"syncagent/ops"
)

// Options are what `syncagent run` passes in.
type Options struct {
	PrefsPath string
	Log       *slog.Logger
	// HardwareID computes this box's hardware ID. nil: the file
	// $RUNTIME_DIRECTORY/hardware-id that the unit's root pre-start step
	// writes, when it exists and is not empty; else hw.ID.
	HardwareID func() (string, error)
	// Ready, when set, is called once the agent serves (tests and the demo use
	// it instead of systemd's READY=1).
	Ready func()
}

// ExitError carries the process exit code a failure should end with.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Agent is a running syncagent: the wiring of its parts, each built
// completely before anything serves.
type Agent struct {
	opts    Options
	log     *slog.Logger
	notify  *ops.Notifier
	hwid    string
	started time.Time
	watcher *ops.Watcher // the prefs file; created before the file is first read
	watched bool         // the watcher runs (and releases itself when it ends)
	served  bool         // serve took over the control socket
	lock    *lock.Lock
	ctl     *ctlSocket  // the local API, up before the datafile opens
	start   *lock.Start // what this start runs; committed once it serves
	role    role
	prefs   *prefsControl
	fatal   chan error   // a part that needs the agent to exit (the datafile is gone)
	beat    atomic.Int64 // the heartbeat's last sign of life
	obs     *observability
}

// Run starts the agent and blocks until ctx ends or it fails.
func Run(ctx context.Context, opts Options) error {
	a, err := open(opts)
	if err != nil {
		return err
	}
	defer a.close()
	return a.serve(ctx)
}

// Start runs the agent in the background and returns once it serves (the
// demo and tests use it in place of systemd's READY=1), or with the error that
// kept it from starting within timeout. wait blocks until the agent has
// stopped, after ctx ends, and returns Run's result.
func Start(ctx context.Context, opts Options, timeout time.Duration) (wait func() error, err error) {
	ready, done := make(chan struct{}), make(chan error, 1)
	then := opts.Ready
	opts.Ready = func() {
		close(ready)
		if then != nil {
			then()
		}
	}
	go func() { done <- Run(ctx, opts) }()
	wait = func() error {
		err := <-done
		done <- err // wait may be called again
		return err
	}
	select {
	case <-ready:
		return wait, nil
	case err := <-done:
		done <- err
		return wait, fmt.Errorf("the agent did not start: %w", err)
	case <-time.After(timeout):
		return wait, fmt.Errorf("the agent did not start within %s", timeout)
	}
}

func open(opts Options) (_ *Agent, err error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if opts.HardwareID == nil {
		opts.HardwareID = defaultHardwareID()
	}
	logs := newLogRing() // recent lines for a diagnostics bundle
	opts.Log = slog.New(logs.handler(opts.Log.Handler()))
	a := &Agent{opts: opts, log: opts.Log, notify: ops.NewNotifier(opts.Log), started: time.Now(), fatal: make(chan error, 1)}
	defer func() {
		if err != nil {
			a.close() // serve never ran to release them
		}
	}()
	// Watch before the first read, so an edit in between is not lost.
	if a.watcher, err = ops.NewWatcher(opts.PrefsPath, ops.DefaultDebounce, opts.Log); err != nil {
		opts.Log.Warn("cannot watch the prefs file; reload with SIGHUP or `syncagent prefs reload`", "err", err)
	}
	if a.hwid, err = opts.HardwareID(); err != nil {
		return nil, &ExitError{Code: ops.ExitError, Err: fmt.Errorf("cannot compute this box's hardware ID: %w", err)}
	}
	// The exact bytes read are what the lock decides on and keeps.
	data, readErr := prefs.ReadFile(opts.PrefsPath)
	var file *prefs.Prefs
	if readErr == nil {
		file, _ = prefs.Parse(opts.PrefsPath, data)
	}
	a.lock = lock.New(lock.Options{Dir: lock.Dir(os.Getenv, lock.StateDirOf(file, data)), HardwareID: a.hwid, Log: opts.Log})
	if a.start, err = a.lock.Start(opts.PrefsPath, data, readErr); err != nil {
		return nil, &ExitError{Code: ops.ExitConfig, Err: err}
	}
	p := a.start.Prefs
	p.Source = opts.PrefsPath
	if err := os.MkdirAll(p.Paths.StateDir, 0o700); err != nil {
		return nil, &ExitError{Code: ops.ExitError, Err: fmt.Errorf("cannot create state directory: %w", err)}
	}
	// The local API answers while the datafile opens (seconds, for a big
	// one): status says so, every other call is answered 503.
	if a.ctl, err = openCtlSocket(p.Paths.ControlSocket, startingAPI(p, a.hwid, a.started)); err != nil {
		return nil, &ExitError{Code: ops.ExitError, Err: err}
	}
	a.notify.Status("starting: opening the datafile")
	openingDatafile()
	if a.role, err = a.openRole(p); err != nil {
		return nil, &ExitError{Code: ops.ExitError, Err: err}
	}
	if err := a.start.Confirm(a.role.evidence()); err != nil {
		return nil, &ExitError{Code: ops.ExitConfig, Err: err}
	}
	state := control.Prefs{File: opts.PrefsPath, LoadedAt: time.Now(), State: a.start.State, Error: a.start.Error, Digest: p.LockedDigest()}
	a.obs = newObservability(a, logs, p)
	a.prefs = newPrefsControl(opts.PrefsPath, opts.Log, a.lock, p, state, a.updateStatus, lockComponent{}, a.role, a.obs)
	return a, nil
}

// openingDatafile is called just before the datafile opens (a test holds
// it there, as a big datafile would).
var openingDatafile = func() {}

// openRole builds the role p's sync ID gives, with its datafile open.
func (a *Agent) openRole(p *prefs.Prefs) (role, error) {
	gone := func(err error) {
		a.log.Error("the datafile is gone; writes are refused and the agent exits", "err", err)
		select {
		case a.fatal <- err:
		default:
		}
	}
	// A failed constructor's nil pointer must not become a non-nil role
	// (close would call it).
	var r role
	var err error
	switch p.Role() {
	case prefs.RolePrimary:
		r, err = orNil(newPrimaryRole(p, a.log, gone))
	case prefs.RoleSatellite:
		r, err = orNil(newSatelliteRole(p, a.hwid, a.log, gone, a.updateStatus))
	default:
		r, err = orNil(newDisabledRole(p, a.log, gone, a.updateStatus))
	}
	return r, err
}

func orNil[R role](r R, err error) (role, error) {
	if err != nil {
		return nil, err
	}
	return r, nil
}

// close releases what open acquired, after serve (or a failed open).
func (a *Agent) close() {
	if a.watcher != nil && !a.watched {
		a.watcher.Close() // its Run never started to release it
	}
	if a.ctl != nil && !a.served {
		a.ctl.close() // serve never ran to take it over
	}
	if a.role != nil {
		if err := a.role.Close(); err != nil {
			a.log.Error("closing the datafile", "err", err)
		}
	}
}

// serve binds the listeners, commits the start (only a start that serves
// provisions), then runs every part under one WaitGroup until ctx ends or a
// part fails; it cancels them, waits for them, and returns.
func (a *Agent) serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := a.prefs.running.Load()
	if err := a.role.bind(); err != nil {
		return &ExitError{Code: ops.ExitError, Err: err}
	}
	if err := a.obs.bind(); err != nil {
		return &ExitError{Code: ops.ExitError, Err: err}
	}
	if err := a.start.Commit(); err != nil {
		return &ExitError{Code: ops.ExitError, Err: fmt.Errorf("cannot keep the prefs this start runs: %w", err)}
	}
	if p.Site.SyncID > 0 {
		if err := a.role.provisioned(); err != nil {
			a.log.Warn("cannot record in the datafile that this box is provisioned", "err", err)
		}
	}
	if by := a.start.UnlockedBy; by != "" {
		st := *a.prefs.state.Load()
		st.UnlockedBy = by
		a.prefs.state.Store(&st)
	}

	var wg sync.WaitGroup
	errc := make(chan error, 8)
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	a.ctl.serve(control.Handler(a, a.log))
	a.served = true
	run("control socket", a.ctl.run)
	run(a.role.kind().String(), a.role.Run)
	run("metrics and admin", a.obs.Run)
	hup := ops.ReloadSignals(ctx)
	var changes <-chan struct{}
	if a.watcher != nil {
		changes, a.watched = a.watcher.Changes(), true
		run("prefs watch", func(ctx context.Context) error {
			if err := a.watcher.Run(ctx); err != nil {
				a.log.Error("the prefs file is no longer watched; reload with SIGHUP or `syncagent prefs reload`", "err", err)
			}
			return nil
		})
	}
	run("prefs", func(ctx context.Context) error { a.prefs.Run(ctx, changes, hup, a.notify); return nil })
	run("heartbeat", a.heartbeat)
	run("watchdog", a.watchdog)

	a.notify.Ready()
	a.updateStatus()
	a.log.Info("syncagent ready", "role", a.role.kind().String(), "sync_id", p.Site.SyncID, "version", version.Version)
	if a.opts.Ready != nil {
		a.opts.Ready()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	case runErr = <-a.fatal:
	}
	a.notify.Stopping()
	cancel()
	wg.Wait()
	if runErr != nil {
		a.log.Error("syncagent stopped", "err", runErr)
		return &ExitError{Code: ops.ExitError, Err: runErr}
	}
	a.log.Info("syncagent stopped")
	return nil
}

// serveUntil serves srv on l until ctx ends, then shuts it down with a fresh,
// bounded context.
func serveUntil(ctx context.Context, srv *http.Server, l net.Listener) error {
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	return shutdownAtEnd(ctx, srv, done)
}

// shutdownAtEnd waits until ctx ends, then shuts srv down with a fresh,
// bounded context; done delivers Serve's end (an early one is returned).
func shutdownAtEnd(ctx context.Context, srv *http.Server, done chan error) error {
	select {
	case <-ctx.Done():
	case err := <-done:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	<-done
	return nil
}
