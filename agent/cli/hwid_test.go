package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHwid_write protects the unit's root pre-start step: `hwid --write FILE`
// replaces FILE whole with the probed ID, world-readable whatever the umask,
// and leaves no temporary file behind.
func TestHwid_write(t *testing.T) {
	dir := t.TempDir()
	noPrefs := filepath.Join(dir, "absent.toml") // no agent to ask
	code, out, errOut := run(t, "", "--prefs", noPrefs, "hwid", "--explain")
	if code != 0 {
		t.Skipf("this machine yields no hardware ID: %s", errOut)
	}
	want := strings.SplitN(out, "\n", 2)[0]

	path := filepath.Join(dir, "hardware-id")
	if err := os.WriteFile(path, []byte("old content, longer than the new one ...........\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run(t, "", "--prefs", noPrefs, "hwid", "--write", path)
	if code != 0 || out != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and nothing printed", code, out, errOut)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want+"\n" {
		t.Errorf("file holds %q, want %q", got, want+"\n")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only hardware-id", len(entries))
	}

	// A directory that does not exist is a clear failure, not a panic.
	code, _, errOut = run(t, "", "--prefs", noPrefs, "hwid", "--write", filepath.Join(dir, "missing", "hardware-id"))
	if code == 0 || !strings.Contains(errOut, "cannot write the hardware ID") {
		t.Errorf("exit %d, stderr %q; want a failure saying it cannot write", code, errOut)
	}
}
