package daemon

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"syncagent/agent/control"
)

// heartbeatEvery is how often the agent refreshes STATUS= (so "4m ago"
// stays true), checks its datafile is still there, and shows the watchdog it
// is alive.
var heartbeatEvery = 10 * time.Second

// statusSkew moves the clock STATUS= lines are written by (tests show the
// heartbeat keeping "4m ago" true without waiting four minutes).
var statusSkew atomic.Int64

// updateStatus sends systemd the one-line summary `systemctl status` shows.
func (a *Agent) updateStatus() {
	a.notify.Status(StatusLine(a.Status(), time.Now().Add(time.Duration(statusSkew.Load()))))
}

func (a *Agent) heartbeat(ctx context.Context) error {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		a.beat.Store(time.Now().UnixNano())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.role.checkDatafile() // once gone, the guard makes the agent exit
			a.updateStatus()
		}
	}
}

// watchdog pings systemd while the role's goroutine and the heartbeat show
// signs of life. A link that is down is not unhealthy (every call has a
// deadline, so the cycle goroutine comes round); a goroutine that is stuck
// stops the pings and systemd restarts the agent.
func (a *Agent) watchdog(ctx context.Context) error {
	every, ok := a.notify.WatchdogInterval()
	if !ok {
		return nil
	}
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			stuck := max(a.role.sinceAlive(), time.Since(time.Unix(0, a.beat.Load())))
			if stuck < every-every/4 {
				a.notify.Watchdog()
			} else {
				a.log.Error("the agent shows no progress; withholding the watchdog ping", "since", stuck.Round(time.Second))
			}
		}
	}
}

// StatusLine is the one-line summary of st: role, last sync (how long ago,
// or since when it is offline or refused), outbox or queues, and the last
// error or prefs problem.
func StatusLine(st control.Status, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d", st.Role, st.SyncID)
	switch {
	case st.Role == "primary":
		fmt.Fprintf(&b, " · %d sites · queued %d", st.SitesTotal, st.QueuedTotal)
		if !st.LatestSiteContact.IsZero() {
			fmt.Fprintf(&b, " · last contact %s", ago(now, st.LatestSiteContact))
		}
	case st.LastSync == nil:
		fmt.Fprintf(&b, " · no sync yet · outbox %d", st.OutboxLength)
	case st.LastSync.Error == "":
		fmt.Fprintf(&b, " · last sync %s ok · outbox %d", ago(now, st.LastSync.Finished), st.OutboxLength)
	default:
		since := st.FailingSince
		if since.IsZero() {
			since = st.LastSync.Finished
		}
		what := "offline"
		if st.LastSync.Refused {
			what = "refused"
		}
		fmt.Fprintf(&b, " · %s since %s", what, clock(now, since))
		if !st.LastSuccess.IsZero() {
			fmt.Fprintf(&b, " (last ok %s)", ago(now, st.LastSuccess))
		} else {
			b.WriteString(" (never synced)")
		}
		fmt.Fprintf(&b, " · outbox %d", st.OutboxLength)
	}
	if st.FirstSync != nil {
		fmt.Fprintf(&b, " · first sync %s", st.FirstSync.Line())
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
		return fmt.Sprintf("%ds ago", max(int(d.Seconds()), 0))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// clock is a time of day, with the date when it is not today (in now's zone).
func clock(now, t time.Time) string {
	t = t.In(now.Location())
	if y, m, d := now.Date(); t.Year() == y && t.Month() == m && t.Day() == d {
		return t.Format("15:04")
	}
	return t.Format("Jan 2 15:04")
}
