package primary

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestRateLog protects the journal: one line per key per minute, with the
// count of what was held back.
func TestRateLog(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := newRateLog(slog.New(slog.NewTextHandler(&buf, nil)), func() time.Time { return now })
	for i := 0; i < 100; i++ {
		r.logf(slog.LevelWarn, "site 2 refused", "push refused")
		r.logf(slog.LevelWarn, "site 3 refused", "push refused")
		now = now.Add(100 * time.Millisecond)
	}
	if got := strings.Count(buf.String(), "\n"); got != 2 {
		t.Fatalf("%d lines in 10s for two keys, want 2:\n%s", got, buf.String())
	}
	now = now.Add(time.Minute)
	r.logf(slog.LevelWarn, "site 2 refused", "push refused")
	if !strings.Contains(buf.String(), "suppressed=99") {
		t.Errorf("suppressed count missing:\n%s", buf.String())
	}
}
