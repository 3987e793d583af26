package ops

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestSignals(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reload, stop := Signals(ctx)

	must(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	select {
	case <-reload:
	case <-time.After(waitLimit):
		t.Fatal("SIGHUP did not ask for a reload")
	}

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		must(t, syscall.Kill(os.Getpid(), sig))
		select {
		case got := <-stop:
			if got != sig {
				t.Errorf("stop got %v, want %v", got, sig)
			}
		case <-time.After(waitLimit):
			t.Fatalf("%v did not ask to stop", sig)
		}
	}
}

// Several agents in one process (the demo) each get every SIGHUP.
func TestReloadSignals_everyListener(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := ReloadSignals(ctx), ReloadSignals(ctx)
	must(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	for _, ch := range []<-chan struct{}{a, b} {
		select {
		case <-ch:
		case <-time.After(waitLimit):
			t.Fatal("a listener missed SIGHUP")
		}
	}
}
