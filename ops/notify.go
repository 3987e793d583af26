package ops

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/coreos/go-systemd/v22/daemon"
)

// StatusMaxBytes bounds one STATUS= line. `systemctl status` shows it on a
// single line, so anything longer is noise (and a small disk's journal keeps
// every change).
const StatusMaxBytes = 200

// Notifier tells systemd about the agent's state through the sd_notify
// protocol (READY=1, RELOADING=1, STOPPING=1, STATUS=…, WATCHDOG=1).
//
// Outside systemd (NOTIFY_SOCKET unset) every method is a no-op. When sending
// fails the Notifier logs it once and stays quiet afterwards: a watchdog ping
// every 30 seconds must not fill the journal with the same error.
//
// A Notifier is safe for concurrent use.
type Notifier struct {
	log *slog.Logger

	failureLogged  atomic.Bool // the first send failure was logged
	watchdogLogged atomic.Bool // a bad WATCHDOG_USEC was logged

	mu         sync.Mutex
	lastStatus string // last STATUS= line systemd accepted; guarded by mu
}

// NewNotifier returns a Notifier that logs to log (a nil log discards).
func NewNotifier(log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Notifier{log: log.With("component", "sdnotify")}
}

// Enabled reports whether the agent runs under a service manager that listens
// for notifications (NOTIFY_SOCKET is set).
func (n *Notifier) Enabled() bool { return os.Getenv("NOTIFY_SOCKET") != "" }

// Ready sends READY=1: start-up, or a reload announced with Reloading, is
// complete.
func (n *Notifier) Ready() { n.send(daemon.SdNotifyReady) }

// Reloading sends RELOADING=1 with MONOTONIC_USEC=, which systemd 253 and
// later need to match the READY=1 that must follow; systemd 252 ignores the
// extra field. Call Ready when the reload is done, whether it applied or not.
func (n *Notifier) Reloading() {
	state := daemon.SdNotifyReloading
	if usec := strings.TrimSuffix(daemon.SdNotifyMonotonicUsec(), "\n"); usec != "" {
		state += "\n" + usec
	}
	n.send(state)
}

// Stopping sends STOPPING=1: the agent is shutting down.
func (n *Notifier) Stopping() { n.send(daemon.SdNotifyStopping) }

// Watchdog sends WATCHDOG=1. Call it only from a healthy loop (DESIGN.md
// invariant 5), at half of WatchdogInterval.
func (n *Notifier) Watchdog() { n.send(daemon.SdNotifyWatchdog) }

// Status sends STATUS=line for `systemctl status`. Control characters become
// spaces and the line is cut to StatusMaxBytes; a line equal to the last one
// sent is not sent again.
func (n *Notifier) Status(line string) {
	line = statusLine(line)
	n.mu.Lock()
	defer n.mu.Unlock()
	if line == n.lastStatus {
		return
	}
	if n.send("STATUS=" + line) {
		n.lastStatus = line
	}
}

// WatchdogInterval returns the watchdog timeout systemd set for this process
// (WatchdogSec=), and false when there is none. Ping at half of it.
func (n *Notifier) WatchdogInterval() (time.Duration, bool) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		if !n.watchdogLogged.Swap(true) {
			n.log.Warn("ignoring systemd watchdog settings", "err", err)
		}
		return 0, false
	}
	return d, d > 0
}

// send reports whether the message reached the service manager, or there is
// none to tell.
func (n *Notifier) send(state string) bool {
	_, err := daemon.SdNotify(false, state)
	if err != nil {
		if !n.failureLogged.Swap(true) {
			msg, _, _ := strings.Cut(state, "\n")
			n.log.Warn("cannot notify systemd; further failures are not logged",
				"socket", os.Getenv("NOTIFY_SOCKET"), "message", msg, "err", err)
		}
		return false
	}
	return true
}

// statusLine turns s into one line of at most StatusMaxBytes, cut at a rune
// boundary with an ellipsis.
func statusLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) <= StatusMaxBytes {
		return s
	}
	const ellipsis = "…"
	cut := StatusMaxBytes - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
