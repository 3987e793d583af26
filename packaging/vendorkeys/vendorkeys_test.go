package vendorkeys

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// keyLine is a keyring line (the full parser lives in agent/unlock, which
// this package does not import).
var keyLine = regexp.MustCompile(`(?m)^vendor-([0-9]|1[0-5]) ed25519 [A-Za-z0-9+/]{43}=( revoked)?[ \t]*(#.*)?$`)

// TestKeyring_HasAKey protects the build from embedding an empty or garbled keyring.
func TestKeyring_HasAKey(t *testing.T) {
	if !keyLine.Match(Keyring) {
		t.Fatalf("embedded keyring has no vendor key line:\n%s", Keyring)
	}
}

// TestNoPrivateKeyCommitted fails if a private key file or line lands in this folder.
func TestNoPrivateKeyCommitted(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if filepath.Ext(e.Name()) == ".key" {
			t.Errorf("%s: private key files never enter the repository", e.Name())
		}
		data, err := os.ReadFile(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() != "vendorkeys_test.go" && bytes.Contains(data, []byte("ed25519-private")) {
			t.Errorf("%s holds a private key line; only public keys belong here", e.Name())
		}
	}
}
