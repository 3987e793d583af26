package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"syncagent/agent/daemon"
	"syncagent/agent/passwd"
	"syncagent/agent/prefs"
	"syncagent/agent/unlock"
	"syncagent/ops"
)

func init() { passwd.Iterations = 1000 }

func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// TestMain_usage protects the command line's contract: help everywhere,
// one-line errors, and exit codes a script can rely on.
func TestMain_usage(t *testing.T) {
	cases := []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"--help"}, ops.ExitOK, "Commands:", ""},
		{[]string{}, ops.ExitUsage, "Commands:", "no command given"},
		{[]string{"frobnicate"}, ops.ExitUsage, "", `unknown command "frobnicate"`},
		{[]string{"status", "--help"}, ops.ExitOK, "Usage: syncagent status", ""},
		{[]string{"--help", "sites", "clear-hwid"}, ops.ExitOK, "Usage: syncagent sites clear-hwid", ""},
		{[]string{"record", "put", "t"}, ops.ExitUsage, "", "usage: syncagent record put TABLE ID --data JSON"},
		{[]string{"record", "put", "t", "1", "--data", "[1]"}, ops.ExitUsage, "", "--data must be a JSON object"},
		{[]string{"sites", "--sort", "size"}, ops.ExitUsage, "", "--sort must be id, user or last-sync"},
		{[]string{"generate"}, ops.ExitUsage, "", "exactly one of --new or --existing"},
		{[]string{"status", "--bogus"}, ops.ExitUsage, "", "flag provided but not defined: -bogus"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, out, errOut := run(t, "", c.args...)
			if code != c.code || !strings.Contains(out, c.out) || !strings.Contains(errOut, c.err) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout ∋ %q, stderr ∋ %q", code, firstLines(out), errOut, c.code, c.out, c.err)
			}
			if c.code != ops.ExitOK && strings.Count(strings.TrimSpace(errOut), "\n") > 1 {
				t.Errorf("error is more than a line and a hint: %q", errOut)
			}
		})
	}
}

func firstLines(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// TestMain_agentDown protects the message a technician sees, and the exit
// code and JSON a script sees, when the agent is not running: status --json
// used to print nothing, and status exited 1 like any other failure.
func TestMain_agentDown(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	code, _, errOut := run(t, "", "status", "--socket", sock)
	if code != ops.StatusNotRunning || !strings.Contains(errOut, "the agent is not running") {
		t.Errorf("exit %d, %q", code, errOut)
	}
	code, out, _ := run(t, "", "status", "--json", "--socket", sock)
	var st struct {
		Running *bool  `json:"running"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Running == nil || *st.Running || !strings.Contains(st.Error, "not running") {
		t.Errorf("status --json with the agent down: %q (%v)", out, err)
	}
	if code != ops.StatusNotRunning {
		t.Errorf("status --json exit %d, want %d", code, ops.StatusNotRunning)
	}
}

// TestPasswd protects the two lines ready to paste.
func TestPasswd(t *testing.T) {
	code, out, errOut := run(t, "correct horse\n", "passwd")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	sum := passwd.SHA256Hex("correct horse")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[0] != fmt.Sprintf("password_sha256 = %q", sum) || !strings.HasPrefix(lines[1], `password_hash = "pbkdf2-sha256$`) {
		t.Fatalf("output %q", out)
	}
	hash := strings.Trim(strings.TrimPrefix(lines[1], "password_hash = "), `"`)
	if ok, err := passwd.Verify(hash, sum); !ok || err != nil {
		t.Errorf("printed hash does not verify the printed SHA-256: %v", err)
	}
	if code, _, _ := run(t, "", "passwd"); code == 0 {
		t.Error("empty password accepted")
	}
}

// TestPrefsCheck protects offline validation: every problem listed, non-zero
// exit, nothing needed from a running agent.
func TestPrefsCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("version = 1\n[site]\nsync_id = -1\nintervall = 3\n"), 0o644)
	code, _, errOut := run(t, "", "prefs", "check", bad)
	if code != ops.ExitError || !strings.Contains(errOut, "bad.toml:3") || !strings.Contains(errOut, "bad.toml:4") {
		t.Errorf("exit %d, %q", code, errOut)
	}
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte("version = 1\n[site]\nsync_id = 0\n"), 0o644)
	// --prefs after the command names the file too.
	if code, out, errOut := run(t, "", "prefs", "check", "--prefs", good); code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("exit %d, %q %q", code, out, errOut)
	}
}

// TestWriteUnlockCode protects the technician's file: the code lands in
// [unlock] and nothing else changes, whatever the file looked like.
func TestWriteUnlockCode(t *testing.T) {
	cases := []struct{ name, before, after string }{
		{"no section", "version = 1\n# keep me\n", "version = 1\n# keep me\n\n[unlock]\ncode = \"NEW\"\n"},
		{"no newline", "version = 1", "version = 1\n\n[unlock]\ncode = \"NEW\"\n"},
		{"replace", "[unlock]\ncode = \"OLD\" # old\n[site]\nsync_id = 1\n", "[unlock]\ncode = \"NEW\"\n[site]\nsync_id = 1\n"},
		{"empty section", "[unlock]\n\n[site]\n", "[unlock]\ncode = \"NEW\"\n\n[site]\n"},
		{"other code keys untouched", "[site]\ncode = 1\n[unlock]\n", "[site]\ncode = 1\n[unlock]\ncode = \"NEW\"\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "prefs.toml")
			os.WriteFile(p, []byte(c.before), 0o640)
			if err := writeUnlockCode(p, "NEW"); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(p)
			if string(got) != c.after {
				t.Errorf("got %q, want %q", got, c.after)
			}
			if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
				t.Errorf("mode changed to %v", fi.Mode().Perm())
			}
		})
	}
}

// TestCommands_againstAgent protects the commands that talk to a running
// agent: --prefs before or after the command, flags after positionals.
func TestCommands_againstAgent(t *testing.T) {
	dir, _ := os.MkdirTemp("", "sa-cli-")
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Setenv("STATE_DIRECTORY", "")
	pf := filepath.Join(dir, "prefs.toml")
	text := fmt.Sprintf("version = 1\n[site]\nsync_id = 0\nstores = [\"a\"]\n[paths]\nstate_dir = %q\ncontrol_socket = %q\n", filepath.Join(dir, "state"), filepath.Join(dir, "ctl.sock"))
	os.WriteFile(pf, []byte(text), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := daemon.Start(ctx, daemon.Options{PrefsPath: pf, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		HardwareID: func() (string, error) { return "cli-box", nil }}, 20*time.Second)
	defer func() { cancel(); wait() }()
	if err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--prefs", pf, "record", "put", "stock", "s1", "--data", `{"store_ID":"a","qty":3}`}, 0, "insert stock/s1"},
		{[]string{"record", "put", "stock", "s1", "--prefs", pf, "--data", `{"store_ID":"a","qty":4}`}, 0, "update stock/s1"},
		{[]string{"record", "get", "--prefs", pf, "stock", "s1"}, 0, `"qty": 4`},
		{[]string{"record", "list", "stock", "--prefs=" + pf}, 0, `"id":"s1"`},
		{[]string{"--prefs", pf, "status"}, 0, "sync_id is 0"},
		{[]string{"--prefs", pf, "status", "--json"}, 0, `"hardware_id": "cli-box"`},
		{[]string{"--prefs", pf, "hwid"}, 0, "cli-box"},
		{[]string{"--prefs", pf, "check"}, ops.ExitError, ""},
		{[]string{"--prefs", pf, "sync"}, ops.ExitError, ""},
		{[]string{"--prefs", pf, "record", "delete", "stock", "s1"}, 0, "deleted"},
		{[]string{"--prefs", pf, "record", "get", "stock", "s1"}, ops.ExitError, ""},
	}
	for _, s := range steps {
		code, out, errOut := run(t, "", s.args...)
		if code != s.code || !strings.Contains(out, s.out) {
			t.Errorf("%v: exit %d (want %d), stdout %q, stderr %q", s.args, code, s.code, out, errOut)
		}
	}

	// record import: JSON lines as record list prints them, in batches; a
	// bad line is named by its number in the whole input.
	lines := `{"table":"stock","id":"i1","data":{"store_ID":"a","qty":1}}` + "\n\n" +
		`{"table":"stock","id":"i2","data":{"store_ID":"a","qty":2}}` + "\n"
	for _, c := range []struct {
		stdin    string
		code     int
		out, err string
	}{
		{lines, 0, "2 records written (2 new, 0 updated, 0 deleted) in 1 requests", ""},
		{lines + `{"table":"stock","id":"i1","action":"delete"}`, 0, "3 records written (0 new, 2 updated, 1 deleted)", ""},
		{lines + `{"table":"stock","id":"i3","data":[1]}` + "\n", ops.ExitError, "0 records written", "line 4: stock/i3: data must be a JSON object"},
		{lines + `{"table":"stock","id":"i9","action":"delete"}` + "\n", ops.ExitError, "0 records written", "line 4: no record stock/i9; nothing of this batch was written"},
	} {
		code, out, errOut := run(t, c.stdin, "--prefs", pf, "record", "import", "-")
		if code != c.code || !strings.Contains(out, c.out) || !strings.Contains(errOut, c.err) {
			t.Errorf("import %q: exit %d (want %d), stdout %q, stderr %q", c.stdin, code, c.code, out, errOut)
		}
	}
	if _, _, errOut := run(t, "", "--prefs", pf, "record", "get", "stock", "i9"); !strings.Contains(errOut, "no record") {
		t.Errorf("a refused batch wrote something: %s", errOut)
	}
}

// TestAuthcode protects the vendor side end to end: keygen files, a code that
// the box's verifier accepts, and a warning for an expiry already past.
func TestAuthcode(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := run(t, "", "authcode", "keygen", "--out", dir, "--number", "4"); code != 0 {
		t.Fatal(errOut)
	}
	if fi, err := os.Stat(filepath.Join(dir, "vendor-4.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key: %v %v", fi, err)
	}
	p, _ := prefs.Parse("x.toml", []byte("version = 1\n[site]\nsync_id = 0\n"))
	code, out, errOut := run(t, "", "authcode", "issue", "--key", filepath.Join(dir, "vendor-4.key"), "--hwid", "box-7", "--expires", "2h", "--seq", "9", "--change", p.LockedDigest())
	if code != 0 || errOut != "" {
		t.Fatalf("issue: exit %d %q", code, errOut)
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "vendor-4.pub"))
	keys, err := unlock.ParseKeyring(pub)
	if err != nil {
		t.Fatal(err)
	}
	v := unlock.Verifier{Keys: keys, HardwareID: "box-7"}
	g, err := v.Check(strings.TrimSpace(out), p.LockedDigest())
	if err != nil || g.Seq != 9 || g.KeyNumber != 4 {
		t.Fatalf("issued code does not verify: %+v %v", g, err)
	}
	_, _, errOut = run(t, "", "authcode", "issue", "--key", filepath.Join(dir, "vendor-4.key"), "--hwid", "box-7", "--expires", "2020-01-01T00:00:00Z", "--seq", "10")
	if !strings.Contains(errOut, "warning: this code expired") {
		t.Errorf("no warning for a past expiry: %q", errOut)
	}
}
