package daemon

import (
	"testing"

	"syncagent/agent/prefs"
)

func digestOf(t *testing.T, text string) string {
	t.Helper()
	p, err := prefs.Parse("prefs.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p.LockedDigest()
}
