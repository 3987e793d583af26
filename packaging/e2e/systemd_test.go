package e2e

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"syncagent/agent/prefs"
)

const (
	unit        = "syncagent"
	primaryUnit = "syncagent-e2e-primary"
	password    = "e2e password"
)

// primaryUnitFile runs a primary on loopback inside the namespaces, so the
// satellite under test really syncs.
const primaryUnitFile = `[Unit]
Description=syncagent primary for the end-to-end test

[Service]
Type=notify
ExecStart=/usr/bin/syncagent run --prefs /etc/syncagent-e2e/primary.toml
StateDirectory=syncagent-e2e-primary
RuntimeDirectory=syncagent-e2e-primary
`

func primaryPrefs(hash string) string {
	return string(prefs.Encode(&prefs.Prefs{
		Site:     prefs.Site{SyncID: 1, IntervalMinutes: prefs.DefaultIntervalMinutes, Stores: []string{"central"}},
		Paths:    prefs.Paths{StateDir: "/var/lib/syncagent-e2e-primary", ControlSocket: "/run/syncagent-e2e-primary/control.sock"},
		Listen:   prefs.Listen{Address: "127.0.0.1:2048"},
		SyncWith: []prefs.Peer{{SyncID: 12, User: "clinic-12", PasswordHash: hash, Stores: []string{"store-a"}}},
	}))
}

// satellitePrefs is the packaged box's prefs: the paths are the package's
// defaults.
func satellitePrefs(interval int, sha string) string {
	return string(prefs.Encode(&prefs.Prefs{
		Site:     prefs.Site{SyncID: 12, IntervalMinutes: interval, Stores: []string{"store-a"}},
		Paths:    prefs.Paths{StateDir: prefs.DefaultStateDir, ControlSocket: prefs.DefaultControlSocket},
		SyncWith: []prefs.Peer{{SyncID: 1, User: "clinic-12", PasswordSHA256: sha, URL: "http://127.0.0.1:2048"}},
	}))
}

// Faster restarts than a clinic box needs, so the test stays short; the
// unit's own settings are otherwise the ones shipped.
const testDropIn = `[Service]
RestartSec=1s
`

// faultDropIn hangs the sync loop (a test build: -tags faultinject) and
// shortens the watchdog so the kill comes within seconds.
const faultDropIn = `[Service]
Environment=SYNCAGENT_FAULT=hang:cycle
WatchdogSec=10s
`

type status struct {
	Role         string `json:"role"`
	HardwareID   string `json:"hardware_id"`
	Version      string `json:"version"`
	Interval     string `json:"interval"`
	OutboxLength int    `json:"outbox_length"`
	Records      int    `json:"records"`
	LastSync     *struct {
		Error  string `json:"error"`
		Pushed int    `json:"pushed"`
	} `json:"last_sync"`
}

// TestSystemd installs the .deb under the real systemd and checks what a
// clinic box relies on: the unit starts as shipped (hardening included),
// systemctl status shows the agent's STATUS line, reload applies an interval
// change, a hung sync loop is killed by the watchdog and restarted, and stop
// is clean with nothing lost.
func TestSystemd(t *testing.T) {
	deb := preflight(t)
	start := time.Now()
	m := boot(t, deb)
	t.Logf("systemd up in %v (host PID %d, work dir %s)", time.Since(start).Round(time.Millisecond), m.pid1, m.work)

	step := func(name string) { t.Logf("== %s (%v)", name, time.Since(start).Round(time.Second)) }

	step("install the package with dpkg")
	out := m.must("dpkg", "-i", "/var/cache/syncagent-e2e/syncagent.deb")
	t.Logf("%s", out)
	if got := strings.TrimSpace(m.must("systemctl", "is-enabled", unit)); got != "enabled" {
		t.Errorf("after install the unit is %q, want enabled", got)
	}
	// A fresh install must not start: its first prefs become the provisioning.
	if got := m.show(unit, "ActiveState"); got != "inactive" {
		t.Errorf("after install the unit is %q, want inactive", got)
	}
	if got := strings.TrimSpace(m.must("stat", "-c", "%a %U:%G", "/etc/syncagent/prefs.toml")); got != "640 root:syncagent" {
		t.Errorf("prefs.toml is %q, want 640 root:syncagent", got)
	}
	m.must("test", "-s", "/usr/share/man/man1/syncagent.1.gz")
	m.must("test", "-s", "/usr/share/doc/syncagent/prefs.toml")

	step("start a primary on loopback")
	hashes := m.must("sh", "-c", fmt.Sprintf("printf '%%s\\n' %q | syncagent passwd", password))
	sha := field(t, hashes, "password_sha256")
	hash := field(t, hashes, "password_hash")
	m.writeFile("/etc/syncagent-e2e/primary.toml", primaryPrefs(hash))
	m.writeFile("/etc/systemd/system/"+primaryUnit+".service", primaryUnitFile)
	m.must("systemctl", "daemon-reload")
	m.must("systemctl", "start", primaryUnit)

	step("provision the satellite and start it")
	m.writeFile("/etc/syncagent/prefs.toml", satellitePrefs(10, sha))
	m.writeFile("/etc/systemd/system/syncagent.service.d/e2e.conf", testDropIn)
	m.must("systemctl", "daemon-reload")
	m.must("systemctl", "start", unit)
	if got := m.show(unit, "ActiveState") + "/" + m.show(unit, "SubState"); got != "active/running" {
		t.Fatalf("after start the unit is %s, want active/running", got)
	}
	if got := strings.TrimSpace(m.must("stat", "-c", "%a %U:%G", "/etc/syncagent/prefs.toml")); got != "640 root:syncagent" {
		t.Errorf("prefs.toml is %q after provisioning, want 640 root:syncagent", got)
	}
	if got := m.show(unit, "User"); got != "syncagent" {
		t.Errorf("the agent runs as %q, want syncagent", got)
	}

	step("hardware ID: written by the root pre-start step, used by the agent")
	if got := strings.TrimSpace(m.must("stat", "-c", "%a %U", "/run/syncagent/hardware-id")); got != "644 root" {
		t.Errorf("/run/syncagent/hardware-id is %q, want 644 root", got)
	}
	fileID := strings.TrimSpace(m.must("cat", "/run/syncagent/hardware-id"))
	probed := strings.SplitN(m.must("syncagent", "hwid", "--explain"), "\n", 2)[0]
	st := agentStatus(t, m)
	if st.HardwareID != fileID || fileID != probed {
		t.Errorf("hardware IDs: agent %q, file %q, root probe %q; want all equal", st.HardwareID, fileID, probed)
	}

	step("systemctl status shows the STATUS line of a real sync")
	m.waitFor("a successful sync in the STATUS line", 30*time.Second, func() (bool, string) {
		text := m.show(unit, "StatusText")
		return strings.HasPrefix(text, "satellite 12 · last sync") && strings.Contains(text, " ok ·"), text
	})
	statusOut, _ := m.run("", "systemctl", "status", "--no-pager", "-l", unit)
	if !regexp.MustCompile(`Status: "satellite 12 · last sync \d+s ago ok · outbox 0`).MatchString(statusOut) {
		t.Errorf("systemctl status shows no STATUS line of a sync:\n%s", statusOut)
	}
	t.Logf("systemctl status:\n%s", statusOut)

	step("records through the local API, pushed to the primary")
	for i := range 20 {
		m.must("syncagent", "record", "put", "stock_line", fmt.Sprintf("s%d", i), "--data", fmt.Sprintf(`{"store_ID":"store-a","qty":%d}`, i))
	}
	m.must("syncagent", "sync")
	if st := agentStatus(t, m); st.OutboxLength != 0 || st.LastSync == nil || st.LastSync.Error != "" {
		t.Errorf("after sync: outbox %d, last sync %+v; want an empty outbox and no error", st.OutboxLength, st.LastSync)
	}
	m.must("syncagent", "--prefs", "/etc/syncagent-e2e/primary.toml", "record", "get", "stock_line", "s19")

	step("systemctl reload applies an interval change")
	if got := agentStatus(t, m).Interval; got != "10m0s" {
		t.Fatalf("interval %q before the change, want 10m0s", got)
	}
	pid := m.show(unit, "MainPID")
	m.writeFile("/etc/syncagent/prefs.toml", satellitePrefs(7, sha))
	m.must("systemctl", "reload", unit)
	m.waitFor("the new interval", 10*time.Second, func() (bool, string) {
		st := agentStatus(t, m)
		return st.Interval == "7m0s", st.Interval
	})
	if got := m.show(unit, "MainPID"); got != pid {
		t.Errorf("reload restarted the agent (PID %s, then %s)", pid, got)
	}
	if got := m.show(unit, "ActiveState"); got != "active" {
		t.Errorf("after reload the unit is %q, want active", got)
	}

	step("systemctl stop is clean and loses nothing")
	for i := range 10 {
		m.must("syncagent", "record", "put", "stock_line", fmt.Sprintf("b%d", i), "--data", fmt.Sprintf(`{"store_ID":"store-a","qty":%d}`, 100+i))
	}
	before := agentStatus(t, m)
	if before.OutboxLength != 10 {
		t.Errorf("outbox %d before stop, want the 10 unsent records", before.OutboxLength)
	}
	began := time.Now()
	m.must("systemctl", "stop", unit)
	took := time.Since(began)
	timeout := m.show(unit, "TimeoutStopUSec")
	t.Logf("stop took %v (TimeoutStopSec %s)", took.Round(time.Millisecond), timeout)
	if took > 10*time.Second {
		t.Errorf("stop took %v; the agent should end at once on SIGTERM", took)
	}
	if got := m.show(unit, "Result"); got != "success" {
		t.Errorf("stop result %q, want success", got)
	}
	if got := m.show(unit, "ExecMainStatus"); got != "0" {
		t.Errorf("exit status %s after stop, want 0", got)
	}
	m.must("systemctl", "start", unit)
	after := agentStatus(t, m)
	if after.Records != before.Records {
		t.Errorf("records %d after restart, %d before stop", after.Records, before.Records)
	}
	m.waitFor("the unsent records to reach the primary after the restart", 30*time.Second, func() (bool, string) {
		out, err := m.run("", "syncagent", "--prefs", "/etc/syncagent-e2e/primary.toml", "record", "get", "stock_line", "b9")
		return err == nil, out
	})

	step("a hung sync loop is killed by the watchdog and restarted")
	m.writeFile("/etc/systemd/system/syncagent.service.d/fault.conf", faultDropIn)
	m.must("systemctl", "daemon-reload")
	m.must("systemctl", "restart", unit)
	restarts := atoi(t, m.show(unit, "NRestarts"))
	firstPID := m.show(unit, "MainPID")
	m.waitFor("a watchdog restart (NRestarts up)", 60*time.Second, func() (bool, string) {
		n := m.show(unit, "NRestarts")
		return atoi(t, n) > restarts, "NRestarts=" + n
	})
	journal := m.must("journalctl", "--no-pager", "-u", unit)
	for _, want := range []string{"the agent shows no progress; withholding the watchdog ping", "Watchdog timeout", "SIGABRT"} {
		if !strings.Contains(journal, want) {
			t.Errorf("the journal does not say %q", want)
		}
	}
	if m.show(unit, "MainPID") == firstPID {
		t.Errorf("NRestarts went up but the main PID is still %s", firstPID)
	}
	m.must("rm", "/etc/systemd/system/syncagent.service.d/fault.conf")
	m.must("systemctl", "daemon-reload")
	m.must("systemctl", "restart", unit)
	if got := agentStatus(t, m); got.Records != before.Records {
		t.Errorf("records %d after the watchdog kills, %d before", got.Records, before.Records)
	}
	m.waitFor("a sync after the watchdog kills", 30*time.Second, func() (bool, string) {
		text := m.show(unit, "StatusText")
		return strings.Contains(text, " ok ·"), text
	})

	step("final stop")
	m.must("systemctl", "stop", unit, primaryUnit)
	if got := m.show(unit, "Result"); got != "success" {
		t.Errorf("final stop result %q, want success", got)
	}
	t.Logf("done in %v", time.Since(start).Round(time.Second))
}

// agentStatus is `syncagent status --json`, retried while the agent starts.
func agentStatus(t *testing.T, m *machine) status {
	t.Helper()
	var st status
	m.waitFor("syncagent status", 15*time.Second, func() (bool, string) {
		out, err := m.run("", "syncagent", "status", "--json")
		if err != nil {
			return false, out
		}
		return json.Unmarshal([]byte(out), &st) == nil, out
	})
	return st
}

// field is the quoted value of `name = "…"` in syncagent passwd's output.
func field(t *testing.T, text, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + ` = "([^"]+)"`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no %s in %q", name, text)
	}
	return m[1]
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}
