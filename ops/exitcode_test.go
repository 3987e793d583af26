package ops

import (
	"bufio"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// unitSettings reads the [Service] section of a systemd unit file: each key
// with every value assigned to it, in order.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			key, value, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not key=value: %q", path, line)
			}
			out[key] = append(out[key], strings.Fields(value)...)
		}
	}
	must(t, sc.Err())
	return out
}

// The unit decides restarts from these exit codes; a renumbered constant
// without the unit following would turn "bad prefs" into a restart loop.
func TestUnit_mapsExitCodes(t *testing.T) {
	unit := unitSettings(t, "../packaging/syncagent.service")
	for _, tc := range []struct {
		key  string
		code int
	}{
		{"RestartPreventExitStatus", ExitConfig},
		{"RestartForceExitStatus", ExitRestart},
		{"SuccessExitStatus", ExitRestart},
	} {
		if got := unit[tc.key]; !slices.Contains(got, strconv.Itoa(tc.code)) {
			t.Errorf("%s=%q, want it to include %d", tc.key, got, tc.code)
		}
	}
	if got := unit["RestartForceExitStatus"]; slices.Contains(got, strconv.Itoa(ExitConfig)) {
		t.Errorf("RestartForceExitStatus=%q restarts on bad prefs (%d)", got, ExitConfig)
	}
}

// The agent's side of the unit: notify readiness from the main process,
// reload on SIGHUP (ReloadSignals), ping a watchdog.
func TestUnit_matchesAgent(t *testing.T) {
	unit := unitSettings(t, "../packaging/syncagent.service")
	for key, want := range map[string]string{
		"Type":         "notify",
		"NotifyAccess": "main",
		"ExecReload":   "/bin/kill -HUP $MAINPID",
		"Restart":      "on-failure",
	} {
		if got := strings.Join(unit[key], " "); got != want {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
	if len(unit["WatchdogSec"]) == 0 {
		t.Error("no WatchdogSec=: a hung sync loop would never be restarted")
	}
}
