package syncapi

import (
	"strings"
	"testing"
)

func TestHealth_RoundTripAndBounds(t *testing.T) {
	h := Health{Version: "0.3.0", Outbox: 12, OutboxAge: 30, Aside: 1, LastError: "push: connection reset\nby peer", LastErrorAt: 100,
		LastSuccess: 90, DataBytes: 1 << 20, FreeBytes: 1 << 30, Clock: 1764633600000, Uptime: 3600, Link: "rtt 1.2s, 250 kB/s", Interval: 10,
		OutboxSeq: "1f2e3d4c5b6a7988-00000000000000000042", Acked: 77}
	v := EncodeHealth(h)
	got, err := ParseHealth(v)
	if err != nil {
		t.Fatal(err)
	}
	h.LastError = "push: connection reset by peer" // one line on the wire
	if got != h {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, h)
	}
	// A huge error is shortened so the block stays within its bound.
	h.LastError = strings.Repeat("é", 5000)
	if v := EncodeHealth(h); len(v) > MaxHealth {
		t.Fatalf("encoded %d bytes", len(v))
	} else if _, err := ParseHealth(v); err != nil {
		t.Fatalf("shortened block refused: %v", err)
	}
}

func TestHealth_Refused(t *testing.T) {
	for name, v := range map[string]string{
		"too long":         `{"ver":"` + strings.Repeat("x", MaxHealth) + `"}`,
		"not JSON":         `ver=1`,
		"unknown field":    `{"ver":"1","shell":"rm -rf /"}`,
		"negative":         `{"out":-1}`,
		"control char":     `{"err":"a\u0007b"}`,
		"trailing garbage": `{"out":1}x`,
	} {
		if _, err := ParseHealth(v); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzParseHealth: whatever a site sends, parsing neither panics nor
// accepts a block that encodes beyond its bound.
func FuzzParseHealth(f *testing.F) {
	f.Add(EncodeHealth(Health{Version: "0.3.0", Outbox: 3, Clock: 1}))
	f.Add(`{"err":"\u0000"}`)
	f.Fuzz(func(t *testing.T, v string) {
		h, err := ParseHealth(v)
		if err != nil {
			return
		}
		if len(EncodeHealth(h)) > MaxHealth {
			t.Fatalf("accepted a block that re-encodes beyond %d bytes", MaxHealth)
		}
	})
}

func TestMarks(t *testing.T) {
	want := Marks{OutboxSeq: "1f2e-00000000000000000042", Acked: 77, Gen: 3}
	if got, err := ParseMarks(EncodeMarks(want)); err != nil || got != want {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, v := range []string{"", "no-space", "a b c", "a -1 1", "a 1x 1", "a\x01b 1 1", "a  1 1", "a 1", "a 1 2 3", strings.Repeat("x", 200) + " 1 1"} {
		if _, err := ParseMarks(v); err == nil {
			t.Errorf("%q accepted", v)
		}
	}
}

// FuzzParseMarks: the marks header never panics the primary.
func FuzzParseMarks(f *testing.F) {
	f.Add(EncodeMarks(Marks{OutboxSeq: "e-1", Acked: 3, Gen: 1}))
	f.Fuzz(func(t *testing.T, v string) { ParseMarks(v) })
}
