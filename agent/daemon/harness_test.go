package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/passwd"
	"syncagent/agent/unlock"
)

func init() { passwd.Iterations = 1000 }

const testHWID = "test-box-0001"

// box is an agent under test with its own prefs file and state.
type box struct {
	t      *testing.T
	dir    string
	prefs  string
	state  string
	socket string
	keys   string // vendor keyring file
	priv   []byte // the vendor's private key for that keyring
	cancel context.CancelFunc
	wait   func() error
	client *control.Client
}

// newBox prepares a state dir, a vendor keyring and prefs from tmpl
// (%[1]s = state dir, %[2]s = socket, %[3]s = keyring path).
func newBox(t *testing.T) *box {
	t.Helper()
	t.Setenv("STATE_DIRECTORY", "")
	t.Setenv("RUNTIME_DIRECTORY", "")
	// Unix socket paths are short; t.TempDir() can be long.
	dir, err := os.MkdirTemp("", "sa-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b := &box{t: t, dir: dir, prefs: filepath.Join(dir, "prefs.toml"), state: filepath.Join(dir, "state"), socket: filepath.Join(dir, "ctl.sock"), keys: filepath.Join(dir, "vendor.pub")}
	pub, priv, err := unlock.Keygen(3)
	if err != nil {
		t.Fatal(err)
	}
	b.priv = priv
	if err := os.WriteFile(b.keys, []byte(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// satellitePrefs is a satellite pointing at a primary that is not there.
func (b *box) satellitePrefs(syncID, interval int, stores, extra string) string {
	return fmt.Sprintf(`version = 1
[site]
sync_id = %d
interval_minutes = %d
stores = [%s]
[paths]
state_dir = %q
control_socket = %q
vendor_keys = %q
[[sync_with]]
sync_id = 1
user = "clinic"
password_sha256 = "%s"
url = "http://127.0.0.1:9"
%s`, syncID, interval, stores, b.state, b.socket, b.keys, passwd.SHA256Hex("pw"), extra)
}

func (b *box) write(text string) {
	b.t.Helper()
	if err := os.WriteFile(b.prefs, []byte(text), 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// start runs the agent until the test ends or stop is called.
func (b *box) start() {
	b.t.Helper()
	if os.Geteuid() != 0 {
		b.t.Skip("vendor_keys must be root-owned: run the tests as root")
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := Start(ctx, Options{PrefsPath: b.prefs, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		HardwareID: func() (string, error) { return testHWID, nil }}, 20*time.Second)
	b.cancel, b.wait = cancel, wait
	if err != nil {
		b.stop()
		b.t.Fatal(err)
	}
	b.client = control.NewClient(b.socket)
	b.t.Cleanup(b.stop)
}

func (b *box) stop() {
	if b.cancel == nil {
		return
	}
	b.cancel()
	b.wait()
	b.cancel = nil
}

func (b *box) status() control.Status {
	b.t.Helper()
	st, err := b.client.Status(context.Background())
	if err != nil {
		b.t.Fatal(err)
	}
	return st
}

func (b *box) reload() control.Reload {
	b.t.Helper()
	r, err := b.client.Reload(context.Background())
	if err != nil {
		b.t.Fatal(err)
	}
	return r
}

// code issues an unlock code from the test vendor key.
func (b *box) code(seq uint32, digest string, expiry time.Duration) string {
	b.t.Helper()
	c := unlock.Claims{KeyNumber: 3, HardwareID: testHWID, Expiry: time.Now().Add(expiry), Seq: seq, Scope: unlock.ScopeWindow}
	if digest != "" {
		c.Scope, c.ChangeDigest = unlock.ScopeChange, digest
	}
	code, err := unlock.Issue(b.priv, c)
	if err != nil {
		b.t.Fatal(err)
	}
	return code
}

// eventually polls cond until it holds or 10s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func unlockSection(code string) string { return "[unlock]\ncode = \"" + code + "\"\n" }

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestStart_reportsFailure protects Start's other side: an agent that cannot
// start returns its reason at once instead of leaving the caller waiting.
func TestStart_reportsFailure(t *testing.T) {
	wait, err := Start(context.Background(), Options{PrefsPath: filepath.Join(t.TempDir(), "none.toml"),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), HardwareID: func() (string, error) { return testHWID, nil }}, 20*time.Second)
	if err == nil || !strings.Contains(err.Error(), "no prefs file") {
		t.Fatalf("err = %v, want the missing prefs file", err)
	}
	if werr := wait(); werr == nil {
		t.Error("wait reported success for an agent that never started")
	}
}
