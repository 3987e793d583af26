package hw

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Protects the daemon's start against a sysfs read that never returns: a
// FIFO blocks its reader like a wedged driver attribute.
func TestProbe_StuckReadTimesOut(t *testing.T) {
	root := copyTree(t, filepath.Join("testdata", "pc-dmi"))
	fifo := filepath.Join(root, "sys/class/dmi/id/product_uuid")
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("cannot make a FIFO here: %v", err)
	}
	start := time.Now()
	_, err := probeWithin(root, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("probeWithin = %v, want a timeout error", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("probe returned after %v", elapsed)
	}
	// Release the abandoned probe: opening the write end unblocks its read.
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
}

// Protects the CLI's output: ghw's warnings about files it cannot read must
// not reach stderr. The probe runs in a child process, since ghw's logger
// holds the process's real stderr.
func TestProbe_Quiet(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GHW_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// pc-placeholder lacks files ghw reads (product_family, queue/rotational…).
	cmd.Env = append(cmd.Env, probeChildEnv+"="+filepath.Join("testdata", "pc-placeholder"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v; stderr: %s", err, stderr.String())
	}
	if got, want := string(out), "e49c2cd1-d878-8e6f-9b27-b76e0d64b301\n"; got != want {
		t.Errorf("child printed %q, want %q", got, want)
	}
	if stderr.Len() > 0 {
		t.Errorf("probe wrote to stderr: %q", stderr.String())
	}
}

const probeChildEnv = "HW_TEST_PROBE_ROOT"

// TestMain lets TestProbe_Quiet run one Probe in a child process.
func TestMain(m *testing.M) {
	if root := os.Getenv(probeChildEnv); root != "" {
		fp, err := Probe(root)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println(fp.ID)
		os.Exit(0)
	}
	os.Exit(m.Run())
}
