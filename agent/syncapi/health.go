package syncapi

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// HeaderHealth carries a satellite's health block on its requests:
// syncagent's extension, a header a real v5 peer or the legacy server
// ignores. The primary keeps the last one per site for the fleet view.
const HeaderHealth = "syncagent-health"

// MaxHealth bounds the header's value.
const MaxHealth = 1024

// HeaderMarks carries, on every request of a syncagent satellite, the
// numbers a primary needs to notice a datafile restored from an older copy
// before that box acknowledges anything: "<outbox numbering> <highest queue
// entry acknowledged> <initialisation generation>". Sent on every request
// because the first one after a restore may not be GET site.
const HeaderMarks = "syncagent-marks"

// Marks are the marks header's numbers.
type Marks struct {
	OutboxSeq string
	Acked     uint64
	Gen       uint64
}

// EncodeMarks renders the marks header.
func EncodeMarks(m Marks) string {
	return fmt.Sprintf("%s %d %d", m.OutboxSeq, m.Acked, m.Gen)
}

// ParseMarks reads the marks header.
func ParseMarks(v string) (Marks, error) {
	f := strings.Split(v, " ")
	if len(f) != 3 || len(f[0]) > maxHealthSeq || f[0] == "" || strings.ContainsFunc(f[0], func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return Marks{}, fmt.Errorf("the %s header is not \"<outbox numbering> <acknowledged> <generation>\"", HeaderMarks)
	}
	acked, err1 := strconv.ParseUint(f[1], 10, 64)
	gen, err2 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return Marks{}, fmt.Errorf("the %s header's acknowledged mark and generation must be numbers", HeaderMarks)
	}
	return Marks{OutboxSeq: f[0], Acked: acked, Gen: gen}, nil
}

// Health is a satellite's state as it reports it, compact JSON in
// HeaderHealth. Times are unix seconds (Clock: milliseconds), sizes bytes.
type Health struct {
	Version     string `json:"ver"`             // product release
	Outbox      int    `json:"out"`             // changes waiting to be pushed
	OutboxAge   int64  `json:"outAge"`          // seconds the oldest of them has waited
	Aside       int    `json:"aside"`           // records set aside
	LastError   string `json:"err,omitempty"`   // the last failed cycle's reason
	LastErrorAt int64  `json:"errAt,omitempty"` // when it failed
	LastSuccess int64  `json:"ok,omitempty"`    // when a cycle last succeeded
	DataBytes   int64  `json:"db"`              // datafile size
	FreeBytes   int64  `json:"free"`            // free space in the state directory
	Clock       int64  `json:"now"`             // the satellite's clock, ms (the primary derives the skew)
	Uptime      int64  `json:"up"`              // seconds since the agent started
	Link        string `json:"link,omitempty"`  // the request sizer's estimate of the link
	Interval    int    `json:"every,omitempty"` // minutes between cycles (0: paused)
	// For the primary to notice a box restored from an older copy: the
	// outbox's numbering ("<epoch>-<last seq>") and the highest queue
	// entry applied and acknowledged.
	OutboxSeq string `json:"seq,omitempty"`
	Acked     uint64 `json:"acked,omitempty"`
}

// Bounds of the health block's text fields.
const (
	maxHealthError   = 300
	maxHealthVersion = 40
	maxHealthLink    = 120
	maxHealthSeq     = 160
)

// EncodeHealth renders h for the header, shortening the error text so the
// whole stays within MaxHealth.
func EncodeHealth(h Health) string {
	h.LastError = clip(oneLine(h.LastError), maxHealthError)
	h.Link = clip(oneLine(h.Link), maxHealthLink)
	h.Version = clip(oneLine(h.Version), maxHealthVersion)
	for {
		b, _ := json.Marshal(h)
		if len(b) <= MaxHealth || h.LastError == "" {
			return string(b)
		}
		h.LastError = clip(h.LastError, len(h.LastError)/2)
	}
}

// ParseHealth reads and validates a health header like any outside input:
// bounded, JSON, no control characters, nothing negative.
func ParseHealth(v string) (Health, error) {
	var h Health
	if len(v) > MaxHealth {
		return h, fmt.Errorf("the %s header is %d bytes; at most %d", HeaderHealth, len(v), MaxHealth)
	}
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return Health{}, fmt.Errorf("the %s header is not a health block: %v", HeaderHealth, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Health{}, fmt.Errorf("the %s header has data after its health block", HeaderHealth)
	}
	for name, s := range map[string]string{"ver": h.Version, "err": h.LastError, "link": h.Link, "seq": h.OutboxSeq} {
		if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return Health{}, fmt.Errorf("the %s header's %s holds control characters", HeaderHealth, name)
		}
	}
	if len(h.OutboxSeq) > maxHealthSeq {
		return Health{}, fmt.Errorf("the %s header's seq is too long", HeaderHealth)
	}
	for name, n := range map[string]int64{"out": int64(h.Outbox), "outAge": h.OutboxAge, "aside": int64(h.Aside), "errAt": h.LastErrorAt,
		"ok": h.LastSuccess, "db": h.DataBytes, "free": h.FreeBytes, "now": h.Clock, "up": h.Uptime, "every": int64(h.Interval)} {
		if n < 0 {
			return Health{}, fmt.Errorf("the %s header's %s is negative", HeaderHealth, name)
		}
	}
	return h, nil
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// clip shortens s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
