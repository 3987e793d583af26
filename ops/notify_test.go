package ops

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// logCounter is a log sink whose lines tests can count.
type logCounter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *logCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *logCounter) lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Split(strings.TrimSpace(c.buf.String()), "\n")
}

func (c *logCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Count(c.buf.String(), "\n")
}

func newCountingLogger() (*slog.Logger, *logCounter) {
	c := &logCounter{}
	return slog.New(slog.NewTextHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug})), c
}

// socketPath returns a short path for a unix socket: sun_path holds only 108
// bytes, and t.TempDir() can be long.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "notify.sock")
}

// listenNotify plays systemd: it binds a unixgram socket and points
// NOTIFY_SOCKET at it.
func listenNotify(t *testing.T) *net.UnixConn {
	t.Helper()
	path := socketPath(t)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

// readNotify returns the next datagram the agent sent.
func readNotify(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _, err := conn.ReadFromUnix(buf)
	if err != nil {
		t.Fatalf("reading notification: %v", err)
	}
	return string(buf[:n])
}

func TestNotifier_messages(t *testing.T) {
	conn := listenNotify(t)
	log, logs := newCountingLogger()
	n := NewNotifier(log)
	if !n.Enabled() {
		t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
	}
	for _, tc := range []struct {
		send func()
		want string
	}{
		{n.Ready, "READY=1"},
		{n.Watchdog, "WATCHDOG=1"},
		{n.Stopping, "STOPPING=1"},
	} {
		tc.send()
		if got := readNotify(t, conn); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	if got := logs.count(); got != 0 {
		t.Errorf("logged %d lines when all went well: %q", got, logs.lines())
	}
}

// systemd ≥ 253 matches RELOADING=1 to the READY=1 that ends it through
// MONOTONIC_USEC; a missing or wrong clock makes it reject the reload.
func TestNotifier_Reloading(t *testing.T) {
	conn := listenNotify(t)
	n := NewNotifier(nil)
	before := monotonicUsec(t)
	n.Reloading()
	after := monotonicUsec(t)

	lines := strings.Split(readNotify(t, conn), "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("got %q, want RELOADING=1 and MONOTONIC_USEC=…", lines)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC = %d, want within [%d, %d]", usec, before, after)
	}
}

func monotonicUsec(t *testing.T) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

// An unchanged status is not sent again: the agent sets it every cycle.
func TestNotifier_Status_deduplicates(t *testing.T) {
	conn := listenNotify(t)
	n := NewNotifier(nil)
	n.Status("satellite: idle")
	n.Status("satellite: idle")
	n.Status("satellite: syncing")
	n.Status("satellite: idle")
	for _, want := range []string{"STATUS=satellite: idle", "STATUS=satellite: syncing", "STATUS=satellite: idle"} {
		if got := readNotify(t, conn); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestNotifier_Status_oneBoundedLine(t *testing.T) {
	conn := listenNotify(t)
	n := NewNotifier(nil)

	n.Status("last error: dial tcp\nconnection refused\r\t ")
	if got, want := readNotify(t, conn), "STATUS=last error: dial tcp connection refused"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}

	n.Status(strings.Repeat("é", 500))
	got := strings.TrimPrefix(readNotify(t, conn), "STATUS=")
	if len(got) > StatusMaxBytes || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Errorf("got %d bytes (valid UTF-8 %v) %q, want at most %d ending in …",
			len(got), utf8.ValidString(got), got, StatusMaxBytes)
	}
}

// Outside systemd nothing is sent and nothing is logged.
func TestNotifier_noSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	log, logs := newCountingLogger()
	n := NewNotifier(log)
	if n.Enabled() {
		t.Error("Enabled() = true without NOTIFY_SOCKET")
	}
	n.Ready()
	n.Reloading()
	n.Status("x")
	n.Watchdog()
	n.Stopping()
	if got := logs.count(); got != 0 {
		t.Errorf("logged %d lines outside systemd: %q", got, logs.lines())
	}
}

// A broken socket is logged once, not at every watchdog ping, and a status
// that failed to go out is sent again once the socket works.
func TestNotifier_failureLoggedOnce(t *testing.T) {
	path := socketPath(t)
	t.Setenv("NOTIFY_SOCKET", path) // nobody listens yet
	log, logs := newCountingLogger()
	n := NewNotifier(log)
	for range 5 {
		n.Watchdog()
		n.Status("waiting")
	}
	if got := logs.count(); got != 1 {
		t.Fatalf("logged %d lines, want 1: %q", got, logs.lines())
	}
	if line := logs.lines()[0]; !strings.Contains(line, "cannot notify systemd") {
		t.Errorf("log line %q does not say what failed", line)
	}

	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	n.Status("waiting")
	if got, want := readNotify(t, conn), "STATUS=waiting"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestNotifier_WatchdogInterval(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		name, usec, pid string
		want            time.Duration
		wantOK          bool
		wantLogs        int
	}{
		{"unset", "", "", 0, false, 0},
		{"for this process", "60000000", pid, time.Minute, true, 0},
		{"no pid", "30000000", "", 30 * time.Second, true, 0},
		{"for another process", "60000000", "1", 0, false, 0},
		{"garbage", "soon", pid, 0, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.pid)
			log, logs := newCountingLogger()
			n := NewNotifier(log)
			got, ok := n.WatchdogInterval()
			n.WatchdogInterval()
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("got %v, %v, want %v, %v", got, ok, tc.want, tc.wantOK)
			}
			if got := logs.count(); got != tc.wantLogs {
				t.Errorf("logged %d lines, want %d", got, tc.wantLogs)
			}
		})
	}
}
