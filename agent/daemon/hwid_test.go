package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHardwareID protects the systemd hand-over of the hardware ID: the agent
// runs as User=syncagent and cannot read the root-only DMI serials, so it must
// take the ID the root pre-start step wrote, and probe only when there is none.
func TestHardwareID(t *testing.T) {
	const probed, written = "probed-id", "5f0c2b9e-1d7a-4c3e-8b6a-2f4e9d1c0a7b"
	dir := t.TempDir()
	write := func(name, text string) string {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if text != "-" {
			if err := os.WriteFile(filepath.Join(d, HardwareIDFile), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	cases := []struct {
		name    string
		runtime string // $RUNTIME_DIRECTORY
		want    string
		wantErr string
	}{
		{"not under systemd", "", probed, ""},
		{"no file", write("nofile", "-"), probed, ""},
		{"empty file", write("empty", ""), probed, ""},
		{"blank file", write("blank", " \n"), probed, ""},
		{"written", write("written", written+"\n"), written, ""},
		{"first of several directories", write("first", written) + ":" + dir, written, ""},
		{"two words", write("words", "a b\n"), "", "does not hold a hardware ID"},
		{"binary", write("binary", "id\x00\x01"), "", "does not hold a hardware ID"},
		{"too long", write("long", strings.Repeat("a", maxHardwareIDFile+1)), "", "longer than a hardware ID"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == "RUNTIME_DIRECTORY" {
					return c.runtime
				}
				return ""
			}
			got, err := hardwareID(getenv, func() (string, error) { return probed, nil })()
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("got %q, %v; want an error containing %q", got, err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

// TestHardwareID_unreadable protects against silently presenting a weaker ID:
// a file that exists but cannot be read is an error, not a reason to probe.
func TestHardwareID_unreadable(t *testing.T) {
	dir := t.TempDir()
	// A directory where the file should be: exists, but reading it fails for
	// root and non-root alike.
	if err := os.Mkdir(filepath.Join(dir, HardwareIDFile), 0o755); err != nil {
		t.Fatal(err)
	}
	getenv := func(string) string { return dir }
	if got, err := hardwareID(getenv, func() (string, error) { return "probed", nil })(); err == nil {
		t.Fatalf("got %q, nil; want an error", got)
	}
}
