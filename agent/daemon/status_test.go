package daemon

import (
	"strings"
	"testing"
	"time"

	"syncagent/agent/control"
)

// TestStatusLine protects what `systemctl status` shows: role, last sync,
// outbox or queues, and the error or prefs problem, on one short line.
func TestStatusLine(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		st   control.Status
		want []string
	}{
		{"new satellite", control.Status{Role: "satellite", SyncID: 12, OutboxLength: 3}, []string{"satellite 12", "no sync yet", "outbox 3"}},
		{"failing", control.Status{Role: "satellite", SyncID: 12, LastSync: &control.Cycle{Finished: now.Add(-90 * time.Second), Error: "site_incorrect_password: wrong"}},
			[]string{"last sync 1m ago failed", "error: site_incorrect_password"}},
		{"prefs refused", control.Status{Role: "satellite", SyncID: 12, LastSync: &control.Cycle{Finished: now.Add(-5 * time.Second)}, Prefs: control.Prefs{State: "rejected", Error: "locked settings changed"}},
			[]string{"last sync 5s ago ok", "prefs rejected: locked settings changed"}},
		{"primary", control.Status{Role: "primary", SyncID: 1, Queues: []control.Site{{QueueLength: 4, LastContact: now.Add(-2 * time.Hour)}, {QueueLength: 6}}},
			[]string{"primary 1", "2 sites", "queued 10", "last contact 2h ago"}},
		{"disabled", control.Status{Role: "disabled", DisabledReason: "sync_id is 0"}, []string{"sync off: sync_id is 0"}},
	}
	for _, c := range cases {
		got := StatusLine(c.st, now)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", c.name, got, w)
			}
		}
		if strings.Contains(got, "\n") {
			t.Errorf("%s: more than one line", c.name)
		}
	}
}
