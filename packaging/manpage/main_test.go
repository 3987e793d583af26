package main

import (
	"strings"
	"testing"
)

// TestParseCommand protects the reading of the flag layout (Go's
// flag.PrintDefaults, in the CLI's --flag form or Go's -flag): flags with and
// without an argument, one-line short flags, and the common --prefs/--socket
// dropped (they are documented once, under OPTIONS).
func TestParseCommand(t *testing.T) {
	h := parseCommand("Usage: syncagent sync \n\nrun a full cycle\n\nMore text.\n\nFlags:\n" +
		"  --json\n    \tprint JSON\n" +
		"  -prefs FILE\n    \tprefs FILE (default \"/etc/syncagent/prefs.toml\")\n" +
		"  -q\tquiet\n" +
		"  -timeout DURATION\n    \tgive up after DURATION (default 30m0s)\n")
	if got, want := h.synopsis, "syncagent sync"; got != want {
		t.Errorf("synopsis %q, want %q", got, want)
	}
	want := []flagHelp{{"json", "", "print JSON"}, {"q", "", "quiet"}, {"timeout", "DURATION", "give up after DURATION (default 30m0s)"}}
	if len(h.flags) != len(want) {
		t.Fatalf("flags %+v, want %+v", h.flags, want)
	}
	for i := range want {
		if h.flags[i] != want[i] {
			t.Errorf("flag %d: %+v, want %+v", i, h.flags[i], want[i])
		}
	}
}

// TestLine protects roff escaping: a help line must print as written, never
// be taken as a roff request or escape.
func TestLine(t *testing.T) {
	cases := map[string]string{
		".starts with a dot":   `\&.starts with a dot`,
		`back\slash`:           `back\eslash`,
		"run `syncagent hwid`": `run \fBsyncagent hwid\fR`,
		"--json …":             `\-\-json .\|.\|.`,
		"café":                 `caf\[u00E9]`,
	}
	for in, want := range cases {
		if got := line(in); got != want {
			t.Errorf("line(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestWrite protects the page's skeleton against a change in the top-level
// help layout: every command gets a section, and exit status is kept.
func TestWrite(t *testing.T) {
	top := "syncagent does things.\n\nUsage: syncagent COMMAND\n\nCommands:\n  hwid                 print the ID\n  prefs check          validate\n\nEvery command takes --prefs.\n\nExit status: 0 success, 1 failure.\n"
	help := func(args ...string) (string, error) {
		if len(args) == 0 {
			return top, nil
		}
		return "Usage: syncagent " + strings.Join(args, " ") + " [X]\n\nsummary\n\nFlags:\n  -prefs FILE\n    \tprefs\n", nil
	}
	var b strings.Builder
	if err := write(&b, help, "1.0-1", "2026-01-02"); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{`.TH SYNCAGENT 1 "2026-01-02" "syncagent 1.0\-1"`, `.SS "syncagent hwid [X]"`, `.SS "syncagent prefs check [X]"`, ".SH EXIT STATUS\n0 success, 1 failure.", "Every command takes \\-\\-prefs."} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
}
