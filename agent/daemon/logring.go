package daemon

import (
	"context"
	"log/slog"
	"sync"
)

// logRing keeps the agent's recent log lines in memory, bounded in count
// and length, for a diagnostics bundle: what the journal would show, sent
// to the central team when it asks.
type logRing struct {
	mu    sync.Mutex
	lines []string // a ring of cap maxLines; next is where the next line goes
	next  int
	full  bool
}

// Bounds of the ring.
const (
	logRingLines   = 400
	logRingLineMax = 600 // bytes; a longer line is cut
)

func newLogRing() *logRing { return &logRing{lines: make([]string, logRingLines)} }

// Write takes one log line (slog's text handler writes each record with one
// call).
func (r *logRing) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	line := string(p)
	if len(line) > logRingLineMax {
		line = clipText(line, logRingLineMax)
	}
	r.mu.Lock()
	r.lines[r.next] = line
	r.next = (r.next + 1) % len(r.lines)
	r.full = r.full || r.next == 0
	r.mu.Unlock()
	return n, nil
}

// Lines returns the kept lines, oldest first.
func (r *logRing) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]string(nil), r.lines[:r.next]...)
	}
	return append(append([]string(nil), r.lines[r.next:]...), r.lines[:r.next]...)
}

// handler returns a slog handler that passes every record to next and
// keeps those at info and above in the ring.
func (r *logRing) handler(next slog.Handler) slog.Handler {
	return &ringHandler{next: next, text: slog.NewTextHandler(r, &slog.HandlerOptions{Level: slog.LevelInfo})}
}

type ringHandler struct {
	next slog.Handler
	text slog.Handler // writes to the ring
}

func (h *ringHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l) || h.text.Enabled(ctx, l)
}

func (h *ringHandler) Handle(ctx context.Context, rec slog.Record) error {
	if h.text.Enabled(ctx, rec.Level) {
		h.text.Handle(ctx, rec.Clone())
	}
	if h.next.Enabled(ctx, rec.Level) {
		return h.next.Handle(ctx, rec)
	}
	return nil
}

func (h *ringHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &ringHandler{next: h.next.WithAttrs(as), text: h.text.WithAttrs(as)}
}

func (h *ringHandler) WithGroup(name string) slog.Handler {
	return &ringHandler{next: h.next.WithGroup(name), text: h.text.WithGroup(name)}
}

// clipText shortens s to at most n bytes on a rune boundary, marking the cut.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
