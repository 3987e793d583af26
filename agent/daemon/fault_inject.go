//go:build faultinject

package daemon

import (
	"os"
	"strings"
)

// faultPoint hangs forever at the named point when SYNCAGENT_FAULT names it
// (e.g. SYNCAGENT_FAULT=hang:cycle). Compiled only into test builds
// (-tags faultinject), so the watchdog can be shown to kill a stuck loop.
func faultPoint(name string) {
	if v := os.Getenv("SYNCAGENT_FAULT"); strings.TrimPrefix(v, "hang:") == name && strings.HasPrefix(v, "hang:") {
		select {}
	}
}
