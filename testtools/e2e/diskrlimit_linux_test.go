//go:build linux

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"syncagent/agent/daemon"
)

// The full-disk test without root: the satellite runs as a child process
// (this test binary again, running daemon.Run) whose RLIMIT_FSIZE the test
// lowers and raises with prlimit(2). A write that would grow a file past the
// limit fails with EFBIG, as a full disk fails with ENOSPC; raising the limit
// is space returning.

const agentProcessEnv = "SYNCAGENT_E2E_AGENT_PREFS"

// TestAgentProcess is not a test: it is the child process of
// TestDiskFull_fileSizeLimit.
func TestAgentProcess(t *testing.T) {
	prefs := os.Getenv(agentProcessEnv)
	if prefs == "" {
		t.Skip("helper process for TestDiskFull_fileSizeLimit")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	hwid := os.Getenv("SYNCAGENT_E2E_HWID")
	err := daemon.Run(ctx, daemon.Options{PrefsPath: prefs, Log: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		HardwareID: func() (string, error) { return hwid, nil }})
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// startChild runs a's prefs in a child process and waits until it serves.
func startChild(t *testing.T, a *agent) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^TestAgentProcess$")
	cmd.Env = append(os.Environ(), agentProcessEnv+"="+a.prefs, "SYNCAGENT_E2E_HWID=hw-"+a.name, "NOTIFY_SOCKET=")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("child agent log:\n%s", log.String())
		}
	})
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := a.client.Ready(ctx)
		cancel()
		if err == nil {
			return cmd, &log
		}
		if i > 300 {
			t.Fatalf("child agent does not answer: %v\n%s", err, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func setFileSizeLimit(t *testing.T, pid int, max uint64) {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, nil, &old); err != nil {
		t.Skipf("prlimit: %v", err)
	}
	lim := unix.Rlimit{Cur: min(max, old.Max), Max: old.Max}
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &lim, nil); err != nil {
		t.Skipf("prlimit: %v", err)
	}
}

// TestDiskFull_fileSizeLimit protects the same promises as
// TestDiskFull_satellite without root: a write the file system refuses is
// refused with 507 and a clear reason, nothing is half-written, the agent
// keeps serving, and it takes writes again by itself once space returns.
func TestDiskFull_fileSizeLimit(t *testing.T) {
	s := newAgents(t, nil, nil)
	a, b := s.get("sat-a"), s.get("sat-b")
	a.mustSync(t)
	b.mustSync(t)
	for i := 0; i < 10; i++ {
		a.mustPut(t, "stock", fmt.Sprintf("r%d", i), stock("shared", i))
	}
	a.mustSync(t)
	a.stop() // the same datafile, now in a process whose file size the test bounds
	cmd, _ := startChild(t, a)

	fi, err := os.Stat(filepath.Join(a.dir, "satellite.db"))
	if err != nil {
		t.Fatal(err)
	}
	setFileSizeLimit(t, cmd.Process.Pid, uint64(fi.Size())+1024)
	big := fmt.Sprintf(`{"store_ID":"shared","note":%q}`, strings.Repeat("n", 8<<10))
	refusedWith(t, "write past the file size limit", a.put(t, "stock", "big", big), http.StatusInsufficientStorage, "no space left", "nothing was changed")
	refusedWith(t, "update past the limit", a.put(t, "stock", "r1", big), http.StatusInsufficientStorage, "no space left")
	if r, err := a.client.GetRecord(t.Context(), "stock", "r1"); err != nil || string(r.Data) != stock("shared", 1) {
		t.Errorf("r1 after a refused update: %s %v", r.Data, err)
	}
	if _, err := a.client.GetRecord(t.Context(), "stock", "big"); err == nil {
		t.Error("a refused write was kept")
	}
	if st := a.status(t); st.OutboxLength != 0 || st.Records != 10+storeRows {
		t.Errorf("at the limit: outbox %d, records %d; want 0, 10", st.OutboxLength, st.Records-storeRows)
	}

	setFileSizeLimit(t, cmd.Process.Pid, unix.RLIM_INFINITY) // space returns
	a.mustPut(t, "stock", "big", big)
	a.mustSync(t)
	b.mustSync(t)
	if got := b.records(t, "stock"); len(got) != 11 || got["big"] != big {
		t.Errorf("sat-b holds %d records, want 11 with big", len(got))
	}
	if n := s.queueOf(t, "sat-b"); n != 0 {
		t.Errorf("sat-b's queue = %d, want 0", n)
	}
}
