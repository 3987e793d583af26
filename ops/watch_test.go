package ops

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// waitLimit is how long a test waits for something that should happen in
// milliseconds; it only matters on a very loaded machine.
const waitLimit = 15 * time.Second

// watchHarness runs a Watcher and lets a test wait on its checks instead of
// sleeping.
type watchHarness struct {
	t      *testing.T
	w      *Watcher
	checks chan checkResult
}

func startWatcher(t *testing.T, path string, debounce time.Duration) *watchHarness {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := NewWatcher(path, debounce, log)
	if err != nil {
		t.Fatal(err)
	}
	h := &watchHarness{t: t, w: w, checks: make(chan checkResult, 1024)}
	w.afterCheck = func(r checkResult) { h.checks <- r }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitLimit):
			t.Error("Run did not return after cancel")
		}
	})
	return h
}

// waitSignal waits for a change to be signalled.
func (h *watchHarness) waitSignal() {
	h.t.Helper()
	select {
	case <-h.w.Changes():
	case <-time.After(waitLimit):
		h.t.Fatal("no change signalled")
	}
}

// waitCheck waits for a check that saw the file as want describes (content,
// or nil for a missing file) and returns how many checks signalled up to it.
func (h *watchHarness) waitCheck(want []byte) (signalled int) {
	h.t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case r := <-h.checks:
			if r.signalled {
				signalled++
			}
			if want == nil && !r.present || want != nil && r.present && r.sum == sha256.Sum256(want) {
				return signalled
			}
		case <-deadline:
			h.t.Fatalf("no check saw the file as %q", want)
		}
	}
}

// noSignal fails if a change is pending.
func (h *watchHarness) noSignal() {
	h.t.Helper()
	select {
	case <-h.w.Changes():
		h.t.Fatal("a change was signalled, want none")
	default:
	}
}

func write(t *testing.T, path, content string) []byte {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	return []byte(content)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The debounce used where a test does not count signals.
const testDebounce = 50 * time.Millisecond

func TestWatcher_inPlaceWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prefs.toml")
	write(t, path, "interval_minutes = 10\n")
	h := startWatcher(t, path, testDebounce)

	want := write(t, path, "interval_minutes = 15\n") // O_TRUNC, then write
	h.waitSignal()
	h.waitCheck(want)

	// Appending through an open descriptor is an in-place write too.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.WriteString("# more\n")
	must(t, err)
	must(t, f.Close())
	h.waitSignal()
	h.waitCheck(append(want, "# more\n"...))
}

// sed -i writes a temporary file in the same directory and renames it over
// the original.
func TestWatcher_renameReplace_sed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "prefs.toml")
	write(t, path, "interval_minutes = 10\n")
	h := startWatcher(t, path, testDebounce)

	tmp := filepath.Join(dir, "sedAb12Cd")
	want := write(t, tmp, "interval_minutes = 20\n")
	must(t, os.Rename(tmp, path))
	h.waitSignal()
	h.waitCheck(want)

	// The new inode is followed: a later in-place write is seen too.
	want = write(t, path, "interval_minutes = 30\n")
	h.waitSignal()
	h.waitCheck(want)
}

// vim (backupcopy=no/auto) probes with a file named 4913, renames the
// original to prefs.toml~, writes a new prefs.toml and removes the backup,
// with its swap file changing all along.
func TestWatcher_renameReplace_vim(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "prefs.toml")
	write(t, path, "interval_minutes = 10\n")
	h := startWatcher(t, path, testDebounce)

	swp := filepath.Join(dir, ".prefs.toml.swp")
	write(t, swp, "swap")
	probe := filepath.Join(dir, "4913")
	write(t, probe, "")
	must(t, os.Remove(probe))
	must(t, os.Rename(path, path+"~"))
	want := write(t, path, "interval_minutes = 25\n")
	must(t, os.Remove(path+"~"))
	must(t, os.Remove(swp))

	h.waitSignal()
	h.waitCheck(want)
}

// The prefs file is a symlink to a versioned file in another directory,
// switched atomically (ln -s new tmp && mv -T tmp prefs.toml).
func TestWatcher_symlinkSwap(t *testing.T) {
	root := t.TempDir()
	etc, data := filepath.Join(root, "etc"), filepath.Join(root, "data")
	must(t, os.Mkdir(etc, 0o755))
	must(t, os.Mkdir(data, 0o755))
	write(t, filepath.Join(data, "v1.toml"), "interval_minutes = 10\n")
	want := write(t, filepath.Join(data, "v2.toml"), "interval_minutes = 40\n")
	path := filepath.Join(etc, "prefs.toml")
	must(t, os.Symlink("../data/v1.toml", path))
	h := startWatcher(t, path, testDebounce)

	must(t, os.Symlink("../data/v2.toml", filepath.Join(etc, ".prefs.tmp")))
	must(t, os.Rename(filepath.Join(etc, ".prefs.tmp"), path))
	h.waitSignal()
	h.waitCheck(want)

	// An edit of the target, in the other directory, is seen as well.
	want = write(t, filepath.Join(data, "v2.toml"), "interval_minutes = 45\n")
	h.waitSignal()
	h.waitCheck(want)
}

// Kubernetes ConfigMap layout: prefs.toml -> ..data/prefs.toml, ..data ->
// ..v1; an update writes ..v2, swaps ..data atomically and removes ..v1.
func TestWatcher_symlinkedDirSwap(t *testing.T) {
	dir := t.TempDir()
	must(t, os.Mkdir(filepath.Join(dir, "..v1"), 0o755))
	write(t, filepath.Join(dir, "..v1", "prefs.toml"), "interval_minutes = 10\n")
	must(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
	path := filepath.Join(dir, "prefs.toml")
	must(t, os.Symlink("..data/prefs.toml", path))
	h := startWatcher(t, path, testDebounce)

	must(t, os.Mkdir(filepath.Join(dir, "..v2"), 0o755))
	want := write(t, filepath.Join(dir, "..v2", "prefs.toml"), "interval_minutes = 50\n")
	must(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	must(t, os.RemoveAll(filepath.Join(dir, "..v1")))
	h.waitSignal()
	h.waitCheck(want)

	// The watch moved to ..v2: an edit there is seen.
	want = write(t, filepath.Join(dir, "..v2", "prefs.toml"), "interval_minutes = 55\n")
	h.waitSignal()
	h.waitCheck(want)
}

// A link in the middle of a chain, in a third directory, is swapped.
func TestWatcher_symlinkChainMiddleSwap(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a", "b", "c"} {
		must(t, os.Mkdir(filepath.Join(root, d), 0o755))
	}
	write(t, filepath.Join(root, "c", "old.toml"), "interval_minutes = 10\n")
	want := write(t, filepath.Join(root, "c", "new.toml"), "interval_minutes = 60\n")
	must(t, os.Symlink("../c/old.toml", filepath.Join(root, "b", "current")))
	path := filepath.Join(root, "a", "prefs.toml")
	must(t, os.Symlink("../b/current", path))
	h := startWatcher(t, path, testDebounce)

	must(t, os.Symlink("../c/new.toml", filepath.Join(root, "b", "next")))
	must(t, os.Rename(filepath.Join(root, "b", "next"), filepath.Join(root, "b", "current")))
	h.waitSignal()
	h.waitCheck(want)
}

// A deleted file is not a change (the running prefs stay); the file coming
// back is, even with the same content.
func TestWatcher_deleteThenRecreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prefs.toml")
	want := write(t, path, "interval_minutes = 10\n")
	h := startWatcher(t, path, testDebounce)

	must(t, os.Remove(path))
	if n := h.waitCheck(nil); n != 0 {
		t.Fatalf("%d checks signalled a deletion, want 0", n)
	}
	h.noSignal()

	write(t, path, string(want))
	h.waitSignal()
	h.waitCheck(want)
}

// The whole directory goes and comes back: the watch falls back to the
// parent and returns to the directory.
func TestWatcher_directoryRemovedAndRecreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "syncagent")
	must(t, os.Mkdir(dir, 0o755))
	path := filepath.Join(dir, "prefs.toml")
	write(t, path, "interval_minutes = 10\n")
	h := startWatcher(t, path, testDebounce)

	must(t, os.RemoveAll(dir))
	h.waitCheck(nil)
	h.noSignal()

	must(t, os.Mkdir(dir, 0o755))
	want := write(t, path, "interval_minutes = 70\n")
	h.waitSignal()
	h.waitCheck(want)

	want = write(t, path, "interval_minutes = 75\n")
	h.waitSignal()
	h.waitCheck(want)
}

// Saving without changes, touch and chmod signal nothing: the agent would
// reload for nothing, and log it.
func TestWatcher_sameContentNoSignal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prefs.toml")
	want := write(t, path, "interval_minutes = 10\n")
	h := startWatcher(t, path, 200*time.Millisecond)

	write(t, path, string(want))
	if n := h.waitCheck(want); n != 0 {
		t.Fatalf("%d checks signalled an unchanged file", n)
	}
	h.noSignal()

	must(t, os.Chmod(path, 0o600))
	now := time.Now()
	must(t, os.Chtimes(path, now, now))
	if n := h.waitCheck(want); n != 0 {
		t.Fatalf("%d checks signalled a chmod or touch", n)
	}
	h.noSignal()
}

// Other files in the directory do not wake the watcher up at all.
func TestWatcher_ignoresOtherFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "prefs.toml")
	write(t, path, "interval_minutes = 10\n")
	h := startWatcher(t, path, testDebounce)

	for i := range 20 {
		write(t, filepath.Join(dir, fmt.Sprintf("other-%d", i)), "x")
	}
	// The next check is the one the real change causes.
	want := write(t, path, "interval_minutes = 80\n")
	h.waitSignal()
	select {
	case r := <-h.checks:
		if r.sum != sha256.Sum256(want) {
			t.Error("a check ran for files other than the watched one")
		}
	case <-time.After(waitLimit):
		t.Fatal("no check")
	}
}

// A burst of writes (an editor saving in several steps, a script) becomes
// one signal, for the final content.
func TestWatcher_debounceCoalescesBurst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prefs.toml")
	write(t, path, "interval_minutes = 10\n")
	h := startWatcher(t, path, 500*time.Millisecond)

	var want []byte
	for i := range 50 {
		want = write(t, path, fmt.Sprintf("interval_minutes = %d\n", 100+i))
	}
	h.waitSignal()
	if n := h.waitCheck(want); n != 1 {
		t.Errorf("%d checks signalled the burst, want 1", n)
	}
	h.noSignal()
}

// Changes the reader has not taken yet coalesce into one pending signal.
func TestWatcher_pendingSignalsCoalesce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prefs.toml")
	write(t, path, "interval_minutes = 10\n")
	h := startWatcher(t, path, testDebounce)

	h.waitCheck(write(t, path, "interval_minutes = 11\n"))
	h.waitCheck(write(t, path, "interval_minutes = 12\n"))
	h.waitSignal()
	h.noSignal()
}

// The file may be missing when watching starts; its arrival is a change.
func TestWatcher_fileAppears(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet")
	path := filepath.Join(dir, "prefs.toml")
	h := startWatcher(t, path, testDebounce)

	must(t, os.MkdirAll(dir, 0o755))
	want := write(t, path, "interval_minutes = 90\n")
	h.waitSignal()
	h.waitCheck(want)
}

// WatchFile runs the watcher on its own until ctx is done.
func TestWatchFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prefs.toml")
	write(t, path, "interval_minutes = 10\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := WatchFile(ctx, path, testDebounce, nil)
	must(t, err)
	write(t, path, "interval_minutes = 11\n")
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatal("no change signalled")
	}
}

func TestNewWatcher_refusesEmptyPath(t *testing.T) {
	if _, err := NewWatcher("", 0, nil); err == nil {
		t.Error("NewWatcher(\"\") succeeded")
	}
}

// TestWatcher_Close protects a watch that is never run: Close releases it.
func TestWatcher_Close(t *testing.T) {
	p := filepath.Join(t.TempDir(), "prefs.toml")
	os.WriteFile(p, []byte("x"), 0o644)
	w, err := NewWatcher(p, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := w.fsw.Add(filepath.Dir(p)); err == nil { // fsnotify refuses a closed watcher
		t.Error("the watch still takes directories after Close")
	}
}
