package legacyserver_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNotInBinary protects the line between test tooling and the product:
// nothing the syncagent binary is built from imports testtools/.
func TestNotInBinary(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./agent/cmd/syncagent")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "syncagent/testtools") {
			t.Errorf("the syncagent binary depends on %s", p)
		}
	}
}
