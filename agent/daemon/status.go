package daemon

import (
	"fmt"
	"strings"
	"time"

	"syncagent/agent/control"
)

// updateStatus sends systemd the one-line summary `systemctl status` shows.
func (a *Agent) updateStatus() {
	a.notify.Status(StatusLine(a.Status(), time.Now()))
}

// StatusLine is the one-line summary of st: role, last sync, outbox or
// queues, and the last error or prefs problem.
func StatusLine(st control.Status, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d", st.Role, st.SyncID)
	switch {
	case st.Role == "primary":
		total, latest := 0, time.Time{}
		for _, q := range st.Queues {
			total += q.QueueLength
			if q.LastContact.After(latest) {
				latest = q.LastContact
			}
		}
		fmt.Fprintf(&b, " · %d sites · queued %d", len(st.Queues), total)
		if !latest.IsZero() {
			fmt.Fprintf(&b, " · last contact %s", ago(now, latest))
		}
	case st.LastSync == nil:
		fmt.Fprintf(&b, " · no sync yet · outbox %d", st.OutboxLength)
	default:
		res := "ok"
		if st.LastSync.Error != "" {
			res = "failed"
		}
		fmt.Fprintf(&b, " · last sync %s %s · outbox %d", ago(now, st.LastSync.Finished), res, st.OutboxLength)
	}
	if st.SetAside > 0 {
		fmt.Fprintf(&b, " · set aside %d", st.SetAside)
	}
	if st.PushSizer != "" && st.RequestSize == "auto" {
		fmt.Fprintf(&b, " · size %s", st.PushSizer)
	}
	if st.DisabledReason != "" {
		fmt.Fprintf(&b, " · sync off: %s", st.DisabledReason)
	}
	if st.LastSync != nil && st.LastSync.Error != "" {
		fmt.Fprintf(&b, " · error: %s", st.LastSync.Error)
	}
	if st.Prefs.Error != "" {
		fmt.Fprintf(&b, " · prefs %s: %s", st.Prefs.State, st.Prefs.Error)
	}
	return b.String()
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.UTC().Format("2006-01-02")
}
