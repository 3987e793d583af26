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
		{"offline", control.Status{Role: "satellite", SyncID: 12, LastSuccess: now.Add(-3 * time.Hour), FailingSince: now.Add(-2 * time.Hour),
			LastSync: &control.Cycle{Finished: now.Add(-90 * time.Second), Error: "push: connection refused"}},
			[]string{"offline since 08:00 (last ok 3h ago)", "error: push: connection refused"}},
		{"refused", control.Status{Role: "satellite", SyncID: 12, FailingSince: now.Add(-90 * time.Second),
			LastSync: &control.Cycle{Finished: now.Add(-90 * time.Second), Error: "site_incorrect_password: wrong", Refused: true}},
			[]string{"refused since 09:58 (never synced)", "error: site_incorrect_password"}},
		{"offline since yesterday", control.Status{Role: "satellite", SyncID: 12, FailingSince: now.Add(-26 * time.Hour),
			LastSync: &control.Cycle{Finished: now.Add(-time.Minute), Error: "timeout"}},
			[]string{"offline since Nov 22 08:00"}},
		{"ok 4m ago", control.Status{Role: "satellite", SyncID: 12, LastSync: &control.Cycle{Finished: now.Add(-4 * time.Minute)}}, []string{"last sync 4m ago ok"}},
		{"prefs refused", control.Status{Role: "satellite", SyncID: 12, LastSync: &control.Cycle{Finished: now.Add(-5 * time.Second)}, Prefs: control.Prefs{State: "rejected", Error: "locked settings changed"}},
			[]string{"last sync 5s ago ok", "prefs rejected: locked settings changed"}},
		{"primary", control.Status{Role: "primary", SyncID: 1, SitesTotal: 2, QueuedTotal: 10, LatestSiteContact: now.Add(-2 * time.Hour)},
			[]string{"primary 1", "2 sites", "queued 10", "last contact 2h ago"}},
		{"first sync", control.Status{Role: "satellite", SyncID: 12, FirstSync: &control.Progress{Done: 4200, Total: 10000, Bytes: 3_100_000, Rate: 120, LeftS: 48}},
			[]string{"first sync 42% (4200 of 10000 records, 3.1 MB, 120/s, 48s left)"}},
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
