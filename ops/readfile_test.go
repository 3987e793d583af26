package ops

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadRegular protects every reader of the prefs file, the keyring and
// the hardware-ID file from what may sit at their paths: a FIFO used to hang
// the open (and SIGTERM with it), a symlink to /dev/zero grew the agent by
// gigabytes.
func TestReadRegular(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "prefs.toml")
	if err := os.WriteFile(regular, []byte("version = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, []byte(strings.Repeat("x", 101)), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path string
		want       error
	}{
		{"regular", regular, nil},
		{"fifo", fifo, ErrNotRegular},
		{"symlink to /dev/zero", zero, ErrNotRegular},
		{"directory", dir, ErrNotRegular},
		{"over the limit", big, ErrTooLarge},
		{"missing", filepath.Join(dir, "none"), fs.ErrNotExist},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { _, _, err := ReadRegular(c.path, 100); done <- err }()
			select {
			case err := <-done:
				if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
					t.Errorf("err = %v, want %v", err, c.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("ReadRegular blocked")
			}
		})
	}
}

// TestWatcher_fifoDoesNotWedge protects SIGTERM and reload: a FIFO at the
// watched path is a problem reported and retried, not an open that never
// returns, and Run still stops when asked.
func TestWatcher_fifoDoesNotWedge(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "prefs.toml")
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	created := make(chan *Watcher, 1)
	go func() {
		w, err := NewWatcher(path, 10*time.Millisecond, nil)
		if err != nil {
			t.Error(err)
		}
		created <- w
	}()
	var w *Watcher
	select {
	case w = <-created:
	case <-time.After(5 * time.Second):
		t.Fatal("NewWatcher blocked on a FIFO")
	}
	if w == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	// Touch the directory so a check runs against the FIFO.
	os.WriteFile(filepath.Join(dir, "other"), nil, 0o644)
	os.Chmod(path, 0o600)
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop: the check is wedged on the FIFO")
	}
}
