package ops

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// ReloadSignals delivers SIGHUP (`systemctl reload`, through ExecReload= in
// the unit) until ctx is done, coalesced: a burst of them asks for one reload.
// The channel is never closed.
//
// Registration happens before ReloadSignals returns. Call it before sending
// READY=1: until then, and again once ctx is done, SIGHUP has its default
// action, which kills the process.
func ReloadSignals(ctx context.Context) <-chan struct{} {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reloads := make(chan struct{}, 1)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case reloads <- struct{}{}:
				default: // a reload is already pending
				}
			}
		}
	}()
	return reloads
}

// Signals is ReloadSignals plus stop, which delivers SIGTERM (`systemctl
// stop`) and SIGINT, up to two buffered so that a second one can force an
// exit. Stop signals are delivered until the process exits.
func Signals(ctx context.Context) (reload <-chan struct{}, stop <-chan os.Signal) {
	term := make(chan os.Signal, 2)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	return ReloadSignals(ctx), term
}
