// Package daemon is the one place that wires syncagent together: prefs,
// hardware ID, storage, the primary or satellite role, the control socket, the
// sync loop, systemd notification and reload. Only agent/cli imports it.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"syncagent/agent/adapt"
	"syncagent/agent/control"
	"syncagent/agent/prefs"
	"syncagent/agent/primary"
	"syncagent/agent/satellite"
	"syncagent/agent/syncapi"
	"syncagent/agent/unlock"
	"syncagent/agent/version"
	"syncagent/ops"
	"syncagent/queue"
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

// Agent is a running syncagent.
type Agent struct {
	opts     Options
	log      *slog.Logger
	notify   *ops.Notifier
	hwid     string
	started  time.Time
	clock    adapt.Clock
	role     prefs.Role
	prefs    atomic.Pointer[prefs.Prefs]
	prefsMu  sync.Mutex // serialises reloads
	prefsSt  atomic.Pointer[control.Prefs]
	lastSeen [32]byte       // content hash of the last rejected file, so a rejection is logged once; guarded by prefsMu
	ledger   *unlock.Ledger // opened on first use; guarded by prefsMu
	watcher  *ops.Watcher   // the prefs file; created before the file is first read

	local   *queue.Local   // satellite or disabled
	central *queue.Central // primary
	sat     *satellite.Satellite
	prim    *primary.Server

	loop *loop
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
	a := &Agent{opts: opts, log: opts.Log, notify: ops.NewNotifier(opts.Log), started: time.Now(), clock: adapt.SystemClock{}}
	defer func() {
		if err != nil && a.watcher != nil {
			a.watcher.Close() // serve never ran to release it
		}
	}()
	// Watch before the first read, so an edit in between is not lost.
	if a.watcher, err = ops.NewWatcher(opts.PrefsPath, ops.DefaultDebounce, opts.Log); err != nil {
		opts.Log.Warn("cannot watch the prefs file; reload with SIGHUP or `syncagent prefs reload`", "err", err)
	}
	if a.hwid, err = opts.HardwareID(); err != nil {
		return nil, &ExitError{Code: ops.ExitError, Err: fmt.Errorf("cannot compute this box's hardware ID: %w", err)}
	}
	p, state, err := a.loadStartupPrefs()
	if err != nil {
		return nil, &ExitError{Code: ops.ExitConfig, Err: err}
	}
	state.WindowUntil = a.windowUntil()
	a.prefs.Store(p)
	a.prefsSt.Store(&state)
	a.role = p.Role()
	if err := os.MkdirAll(p.Paths.StateDir, 0o700); err != nil {
		return nil, &ExitError{Code: ops.ExitError, Err: fmt.Errorf("cannot create state directory: %w", err)}
	}
	if err := a.openRole(p); err != nil {
		a.close()
		return nil, &ExitError{Code: ops.ExitError, Err: err}
	}
	return a, nil
}

func (a *Agent) openRole(p *prefs.Prefs) error {
	switch a.role {
	case prefs.RolePrimary:
		c, err := queue.OpenCentral(filepath.Join(p.Paths.StateDir, "central.db"), queue.CentralOptions{Logger: a.log})
		if err != nil {
			return fmt.Errorf("cannot open the central datafile: %w", err)
		}
		a.central = c
		if why := c.Recovered(); why != "" {
			a.log.Error("the central datafile was damaged; a copy was kept and every readable record recovered", "detail", why)
		}
		a.prim, err = primary.New(c, primaryConfig(p), a.log, nil)
		return err
	default:
		l, err := queue.OpenLocal(filepath.Join(p.Paths.StateDir, "satellite.db"), queue.LocalOptions{OutboxMax: p.Limits.OutboxMaxRecords, Logger: a.log})
		if err != nil {
			return fmt.Errorf("cannot open the datafile: %w", err)
		}
		a.local = l
		if why := l.Recovered(); why != "" {
			a.log.Error("the datafile was damaged and has been set aside; this site will be refilled from the primary", "detail", why)
		}
		if a.role == prefs.RoleSatellite {
			a.sat = satellite.New(l, a.newClient(p), satelliteConfig(p), a.log, a.clock)
		}
		return nil
	}
}

func (a *Agent) newClient(p *prefs.Prefs) *syncapi.Client {
	peer := p.Primary()
	return &syncapi.Client{BaseURL: peer.URL, User: peer.User, PasswordSHA256: peer.PasswordSHA256,
		HardwareID: a.hwid, AppVersion: version.Version}
}

func primaryConfig(p *prefs.Prefs) primary.Config {
	// interval_minutes paces a satellite's cycles; on the primary it pauses nothing.
	serving := *p
	serving.Site.IntervalMinutes = max(serving.Site.IntervalMinutes, 1)
	cfg := primary.Config{DisabledReason: serving.SyncDisabledReason()}
	for _, row := range p.SyncWith {
		cfg.Sites = append(cfg.Sites, primary.SiteRow{SyncID: row.SyncID, User: row.User, PasswordHash: row.PasswordHash, Stores: row.Stores, HardwareID: row.HardwareID})
	}
	return cfg
}

func satelliteConfig(p *prefs.Prefs) satellite.Config {
	return satellite.Config{Stores: p.Site.Stores, RequestSize: p.Site.RequestSize.Fixed}
}

func (a *Agent) close() {
	if a.local != nil {
		if err := a.local.Close(); err != nil {
			a.log.Error("closing the datafile", "err", err)
		}
	}
	if a.central != nil {
		if err := a.central.Close(); err != nil {
			a.log.Error("closing the central datafile", "err", err)
		}
	}
}

// serve runs the listeners and the loop until ctx ends.
func (a *Agent) serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := a.prefs.Load()
	var wg sync.WaitGroup
	errc := make(chan error, 3)

	ctl, err := control.Listen(p.Paths.ControlSocket)
	if err != nil {
		return &ExitError{Code: ops.ExitError, Err: err}
	}
	ctlSrv := control.NewServer(control.Handler(a, a.log))
	wg.Add(1)
	go func() { defer wg.Done(); serveUntil(ctx, ctlSrv, ctl, errc) }()

	if a.prim != nil {
		l, err := net.Listen("tcp", p.Listen.Address)
		if err != nil {
			cancel()
			wg.Wait()
			return &ExitError{Code: ops.ExitError, Err: fmt.Errorf("cannot listen on %s: %w", p.Listen.Address, err)}
		}
		srv := primary.NewHTTPServer(p.Listen.Address, a.prim.Handler(), a.log)
		if p.Listen.TLSCert != "" {
			srv.TLSConfig = nil
			l, err = tlsListener(l, p.Listen.TLSCert, p.Listen.TLSKey)
			if err != nil {
				cancel()
				wg.Wait()
				return &ExitError{Code: ops.ExitConfig, Err: err}
			}
		}
		a.log.Info("primary listening", "address", l.Addr().String(), "tls", p.Listen.TLSCert != "")
		wg.Add(1)
		go func() { defer wg.Done(); serveUntil(ctx, srv, l, errc) }()
	}

	a.loop = newLoop(a)
	wg.Add(1)
	go func() { defer wg.Done(); a.loop.run(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); a.watchdog(ctx) }()
	hup := ops.ReloadSignals(ctx)
	var changes <-chan struct{}
	if a.watcher != nil {
		changes = a.watcher.Changes()
		wg.Add(1)
		go func() { defer wg.Done(); a.watcher.Run(ctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); a.watchPrefs(ctx, changes, hup) }()

	a.notify.Ready()
	a.updateStatus()
	a.log.Info("syncagent ready", "role", a.role.String(), "sync_id", p.Site.SyncID, "version", version.Version)
	if a.opts.Ready != nil {
		a.opts.Ready()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	a.notify.Stopping()
	cancel()
	wg.Wait()
	a.log.Info("syncagent stopped")
	return runErr
}

// serveUntil serves srv on l until ctx ends, then shuts it down with a fresh,
// bounded context.
func serveUntil(ctx context.Context, srv *http.Server, l net.Listener, errc chan<- error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	select {
	case <-ctx.Done():
	case <-done:
		return
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	<-done
}
