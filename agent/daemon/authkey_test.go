package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestAuthKey protects the primary's auth key file: made once, kept across
// restarts, private, and made again when a first write was torn.
func TestAuthKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.key")
	first, err := authKey(path)
	if err != nil || len(first) != 32 {
		t.Fatalf("first: %d bytes, %v", len(first), err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := authKey(path)
	if err != nil || !bytes.Equal(first, again) {
		t.Fatalf("after a restart the key changed (%v)", err)
	}
	if err := os.WriteFile(path, first[:5], 0o600); err != nil {
		t.Fatal(err)
	}
	torn, err := authKey(path)
	if err != nil || len(torn) != 32 || bytes.Equal(torn, first) {
		t.Fatalf("torn key: %d bytes, %v", len(torn), err)
	}
	if onDisk, _ := os.ReadFile(path); !bytes.Equal(onDisk, torn) {
		t.Error("the new key is not the one on disk")
	}
}
