package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/daemon"
	"syncagent/agent/passwd"
	"syncagent/agent/prefs"
	"syncagent/agent/unlock"
	"syncagent/agent/version"
	"syncagent/ops"
)

// TestHelp protects finding one's way: `help`, `--version`, a group alone,
// and every command's help listing its own flags in the --flag form the
// commands are written with.
func TestHelp(t *testing.T) {
	cases := []struct {
		args []string
		out  []string
	}{
		{[]string{"help"}, []string{"Commands:", "history"}},
		{[]string{"help", "sites", "clear-hwid"}, []string{"Usage: syncagent sites clear-hwid", "--code CODE"}},
		{[]string{"--version"}, []string{"syncagent " + version.Version}},
		{[]string{"record"}, []string{"record put", "record get", "record delete", "record list"}},
		{[]string{"prefs"}, []string{"prefs check", "prefs reload"}},
		{[]string{"authcode"}, []string{"authcode keygen", "authcode issue"}},
		{[]string{"sites", "--help"}, []string{"Subcommands:", "sites clear-hwid", "--filter PREFIX"}},
	}
	for _, c := range cases {
		code, out, errOut := run(t, "", c.args...)
		if code != ops.ExitOK {
			t.Errorf("%v: exit %d, %s", c.args, code, errOut)
		}
		for _, w := range c.out {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output lacks %q:\n%s", c.args, w, out)
			}
		}
	}
	for _, cmd := range commands {
		_, out, _ := run(t, "", append(strings.Fields(cmd.name), "--help")...)
		if !strings.Contains(out, "Usage: syncagent "+cmd.name) {
			t.Errorf("%s --help: %q", cmd.name, out)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "  -") && !strings.HasPrefix(line, "  --") {
				t.Errorf("%s --help shows a flag in -flag form: %q", cmd.name, line)
			}
		}
	}
}

// agentFor starts an agent on prefs text (with %[1]s the state dir, %[2]s
// the socket, %[3]s the keyring) and returns the prefs path.
type testAgent struct {
	dir, prefs, state, socket, keys string
	priv                            []byte
	cancel                          func()
	wait                            func() error
}

func newTestAgent(t *testing.T) *testAgent {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("vendor_keys must be root-owned: run the tests as root")
	}
	t.Setenv("STATE_DIRECTORY", "")
	t.Setenv("RUNTIME_DIRECTORY", "")
	dir, _ := os.MkdirTemp("", "sa-cli-")
	t.Cleanup(func() { os.RemoveAll(dir) })
	pub, priv, err := unlock.Keygen(3)
	if err != nil {
		t.Fatal(err)
	}
	a := &testAgent{dir: dir, prefs: filepath.Join(dir, "prefs.toml"), state: filepath.Join(dir, "state"), socket: filepath.Join(dir, "ctl.sock"), keys: filepath.Join(dir, "keys.pub"), priv: priv}
	os.WriteFile(a.keys, []byte(pub), 0o644)
	os.WriteFile(filepath.Join(dir, "hardware-id"), []byte("cli-box\n"), 0o644)
	t.Setenv("RUNTIME_DIRECTORY", dir) // where `unlock` finds the ID with the agent stopped
	t.Cleanup(a.stop)
	return a
}

func (a *testAgent) text(syncID int, stores ...string) string {
	p := prefs.Prefs{
		Site:  prefs.Site{SyncID: syncID, IntervalMinutes: 60, Stores: stores},
		Paths: prefs.Paths{StateDir: a.state, ControlSocket: a.socket, VendorKeys: a.keys},
	}
	if syncID > 1 {
		p.SyncWith = []prefs.Peer{{SyncID: 1, User: "Clinic-Twelve", PasswordSHA256: passwd.SHA256Hex("pw"), URL: "http://127.0.0.1:9"}}
	}
	return string(prefs.Encode(&p))
}

func (a *testAgent) write(t *testing.T, text string) {
	t.Helper()
	if err := os.WriteFile(a.prefs, []byte(text), 0o640); err != nil {
		t.Fatal(err)
	}
}

func (a *testAgent) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := daemon.Start(ctx, daemon.Options{PrefsPath: a.prefs, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		HardwareID: func() (string, error) { return "cli-box", nil }}, 20*time.Second)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	a.cancel, a.wait = cancel, wait
}

func (a *testAgent) stop() {
	if a.cancel != nil {
		a.cancel()
		a.wait()
		a.cancel = nil
	}
}

func (a *testAgent) code(t *testing.T, seq uint32, digest string) string {
	t.Helper()
	c := unlock.Claims{KeyNumber: 3, HardwareID: "cli-box", Expiry: time.Now().Add(time.Hour), Seq: seq, Scope: unlock.ScopeChange, ChangeDigest: digest}
	code, err := unlock.Issue(a.priv, c)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func digest(t *testing.T, text string) string {
	t.Helper()
	p, err := prefs.Parse("p.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p.LockedDigest()
}

// TestRecordPut_dataFromFileAndStdin protects records over the 128 KiB a
// command-line argument can carry, and IDs that start with "-".
func TestRecordPut_dataFromFileAndStdin(t *testing.T) {
	a := newTestAgent(t)
	a.write(t, a.text(0, "a"))
	a.start(t)
	big := fmt.Sprintf(`{"store_ID":"a","notes":%q}`, strings.Repeat("x", 200<<10))
	file := filepath.Join(a.dir, "rec.json")
	os.WriteFile(file, []byte(big), 0o644)
	if code, out, errOut := run(t, "", "--prefs", a.prefs, "record", "put", "stock", "big", "--data", "@"+file); code != 0 || !strings.Contains(out, "insert stock/big") {
		t.Errorf("--data @FILE: exit %d %q %q", code, out, errOut)
	}
	if code, out, errOut := run(t, big, "--prefs", a.prefs, "record", "put", "stock", "big2", "--data", "-"); code != 0 || !strings.Contains(out, "insert stock/big2") {
		t.Errorf("--data -: exit %d %q %q", code, out, errOut)
	}
	if code, out, errOut := run(t, "", "--prefs", a.prefs, "record", "put", "--data", `{"store_ID":"a"}`, "stock", "--", "-dash"); code != 0 || !strings.Contains(out, "stock/-dash") {
		t.Errorf("-- before an ID: exit %d %q %q", code, out, errOut)
	}
	if code, out, errOut := run(t, "", "--prefs", a.prefs, "record", "get", "stock", "--", "-dash"); code != 0 || !strings.Contains(out, `"id": "-dash"`) {
		t.Errorf("record get -- -dash: exit %d %q %q", code, out, errOut)
	}
}

// TestSites_filterIgnoresCase protects a technician typing a user name in
// any case.
func TestSites_filterIgnoresCase(t *testing.T) {
	a := newTestAgent(t)
	a.write(t, a.text(12, "a"))
	a.start(t)
	if code, out, errOut := run(t, "", "--prefs", a.prefs, "sites", "--filter", "clinic-t"); code != 0 || !strings.Contains(out, "Clinic-Twelve") || !strings.Contains(out, "http://127.0.0.1:9") {
		t.Errorf("sites --filter clinic-t: exit %d\n%s%s", code, out, errOut)
	}
}

// TestStatus_exitCodes protects scripts and monitoring: status exited 0 when
// the last sync failed or the prefs were rejected.
func TestStatus_exitCodes(t *testing.T) {
	a := newTestAgent(t)
	a.write(t, a.text(12, "a"))
	a.start(t)
	if code, _, errOut := run(t, "", "--prefs", a.prefs, "status"); code != 0 {
		t.Errorf("healthy box before any sync: exit %d %s", code, errOut)
	}
	run(t, "", "--prefs", a.prefs, "sync") // the primary is not there
	code, out, errOut := run(t, "", "--prefs", a.prefs, "status", "--json")
	var st struct {
		Running bool `json:"running"`
	}
	if code != ops.StatusSyncFailing || json.Unmarshal([]byte(out), &st) != nil || !st.Running || !strings.Contains(errOut, "the last sync failed") {
		t.Errorf("failing sync: exit %d, %q", code, errOut)
	}
	if strings.Count(errOut, "\n") != 1 {
		t.Errorf("more than one line on stderr: %q", errOut)
	}
}

// TestUnlock_codeNotLeftWhenRefused protects the technician's file: a
// refused code was left in [unlock] code, and the refusal printed twice.
func TestUnlock_codeNotLeftWhenRefused(t *testing.T) {
	a := newTestAgent(t)
	a.write(t, a.text(12, "a"))
	a.start(t)
	edited := a.text(12, "a", "b")
	a.write(t, edited)
	run(t, "", "--prefs", a.prefs, "prefs", "reload")
	wrong := a.code(t, 1, digest(t, a.text(12, "a", "c")))
	code, out, errOut := run(t, "", "--prefs", a.prefs, "unlock", "--code", wrong)
	if code == 0 || !strings.Contains(errOut, "another change") {
		t.Fatalf("wrong code: exit %d %q %q", code, out, errOut)
	}
	if strings.Count(out+errOut, "another change") != 1 {
		t.Errorf("the refusal is printed more than once:\n%s%s", out, errOut)
	}
	if got, _ := os.ReadFile(a.prefs); string(got) != edited {
		t.Errorf("the refused code was left in the prefs file:\n%s", got)
	}
	right := a.code(t, 2, digest(t, edited))
	if code, out, errOut := run(t, "", "--prefs", a.prefs, "unlock", "--code", right); code != 0 || !strings.Contains(out, "prefs: ok") {
		t.Errorf("right code: exit %d %q %q", code, out, errOut)
	}
}

// TestUnlock_agentStopped protects the technician when the agent is down:
// `unlock` said "the agent is not running"; it reads the files on disk.
func TestUnlock_agentStopped(t *testing.T) {
	a := newTestAgent(t)
	a.write(t, a.text(12, "a"))
	a.start(t)
	a.stop()
	stateBefore := listDir(t, a.state)
	edited := a.text(12, "a", "b")
	a.write(t, edited)
	code, out, errOut := run(t, "", "--prefs", a.prefs, "unlock", "--json")
	var u struct {
		HardwareID   string `json:"hardware_id"`
		ChangeDigest string `json:"change_digest"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &u) != nil || u.HardwareID != "cli-box" || u.ChangeDigest != digest(t, edited) {
		t.Fatalf("unlock with the agent stopped: exit %d %q %q", code, out, errOut)
	}
	// A refused code is not written; a good one is, and applies at the start.
	if code, _, _ := run(t, "", "--prefs", a.prefs, "unlock", "--code", a.code(t, 1, digest(t, a.text(12, "z")))); code == 0 {
		t.Error("a code for another change was accepted offline")
	}
	if got, _ := os.ReadFile(a.prefs); string(got) != edited {
		t.Error("a refused code was written offline")
	}
	if code, out, errOut := run(t, "", "--prefs", a.prefs, "unlock", "--code", a.code(t, 2, digest(t, edited))); code != 0 || !strings.Contains(out, "applies when it starts") {
		t.Fatalf("good code offline: exit %d %q %q", code, out, errOut)
	}
	if got := listDir(t, a.state); got != stateBefore {
		t.Errorf("unlock with the agent stopped wrote the state directory (as root, the agent could not read it):\n%s\nwas\n%s", got, stateBefore)
	}
	a.start(t)
	code, out, _ = run(t, "", "--prefs", a.prefs, "status", "--json")
	if code != 0 || !strings.Contains(out, `"unlocked_by": "key 3 seq 2"`) {
		t.Errorf("after the start: exit %d\n%s", code, out)
	}
}

func listDir(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		fi, _ := e.Info()
		fmt.Fprintf(&b, "%s %d %v\n", e.Name(), fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}

// While the agent opens its datafile, `syncagent status` says so, and
// nothing it cannot know yet (no "last sync none yet", no outbox of 0).
func TestPrintStatus_opening(t *testing.T) {
	var b strings.Builder
	printStatus(&b, control.Status{Running: true, Role: "satellite", SyncID: 12, HardwareID: "hw", Version: "1.2.3",
		StartedAt: time.Now(), Opening: "opening the datafile /var/lib/syncagent/satellite.db (242 MB), for 1.2s"}, time.Now())
	out := b.String()
	if !strings.Contains(out, "starting") || !strings.Contains(out, "opening the datafile /var/lib/syncagent/satellite.db (242 MB)") {
		t.Errorf("status while opening:\n%s", out)
	}
	if strings.Contains(out, "last sync") || strings.Contains(out, "outbox") {
		t.Errorf("status while opening claims what it cannot know yet:\n%s", out)
	}
	var xe *daemon.ExitError
	if err := unhealthy(control.Status{Running: true, Opening: "opening the datafile"}); !errors.As(err, &xe) || xe.Code != ops.StatusStarting {
		t.Errorf("the verdict while opening: %v; want exit %d", err, ops.StatusStarting)
	}
}
