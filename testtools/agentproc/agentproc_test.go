package agentproc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStatCPU(t *testing.T) {
	// A command name with spaces and a parenthesis, as a process may have.
	line := "4242 (sync agent) (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 100 0 0"
	if got, want := statCPU([]byte(line)), 3250*time.Millisecond; got != want {
		t.Errorf("statCPU = %v, want %v", got, want)
	}
	if got := statCPU([]byte("garbage")); got != 0 {
		t.Errorf("statCPU(garbage) = %v, want 0", got)
	}
}

// A real process: its environment without systemd's variables, its output
// in the log, waited for, stopped by a signal, killed, its CPU read.
func TestProc(t *testing.T) {
	sh, err := filepath.Abs("/bin/sh")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "agent.log")
	flag := filepath.Join(dir, "up")
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	p, err := Start(sh, []string{"-c", `echo "notify=[$NOTIFY_SOCKET] x=$X"; touch ` + flag + `; trap 'echo bye; exit 0' TERM; while :; do sleep 0.05; done`}, log, "X=1")
	if err != nil {
		t.Fatal(err)
	}
	up := func(context.Context) error {
		if _, err := os.Stat(flag); err != nil {
			return errors.New("not yet")
		}
		return nil
	}
	if err := p.WaitAnswer(context.Background(), 10*time.Second, 10*time.Millisecond, up); err != nil {
		t.Fatal(err)
	}
	if p.Exited() {
		t.Fatal("exited while running")
	}
	p.CPU() // readable while it runs (the shell may have used less than a tick)
	p.Stop(syscall.SIGTERM, 10*time.Second)
	if !p.Exited() {
		t.Fatal("still running after Stop")
	}
	if got := Tail(log, 5); !strings.Contains(got, "notify=[] x=1") || !strings.Contains(got, "bye") {
		t.Errorf("log:\n%s\nwant systemd's variables cleared, X=1 and the TERM trap's bye", got)
	}

	// A process that exits at start: WaitAnswer says so with the log.
	p, err = Start(sh, []string{"-c", "echo cannot open the datafile; exit 3"}, log)
	if err != nil {
		t.Fatal(err)
	}
	never := func(context.Context) error { return errors.New("no") }
	if err := p.WaitAnswer(context.Background(), 10*time.Second, 10*time.Millisecond, never); err == nil || !strings.Contains(err.Error(), "cannot open the datafile") {
		t.Errorf("WaitAnswer on an agent that exited: %v", err)
	}

	p, err = Start(sh, []string{"-c", "trap '' TERM; while :; do sleep 0.05; done"}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil || !p.Exited() {
		t.Errorf("Kill: %v, exited %v", err, p.Exited())
	}
}
