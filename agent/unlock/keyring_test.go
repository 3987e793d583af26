package unlock

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"syncagent/packaging/vendorkeys"
)

// Two fixed public keys (any 32 bytes are a syntactically valid key).
const (
	keyA = "AxMkA3Uzjg5gqcWz6rLWcDJw8HZAbNfIgk1vu1ypHOY="
	keyB = "zTZbR6zvB3GmXaIoFTzA5d1oO1dDkc6gDdsVFy9Ny3s="
)

func TestParseKeyring(t *testing.T) {
	data := "# vendor keys\r\n" +
		"\n" +
		"vendor-0 ed25519 " + keyA + "   # the first\r\n" +
		"\tvendor-15\ted25519\t" + keyB + "\trevoked\n" +
		"vendor-0 ed25519 " + keyA + " revoked\n" + // the same key again: revocation wins
		"   \n"
	k, err := ParseKeyring([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if got := k.Len(); got != 2 {
		t.Errorf("Len() = %d, want 2", got)
	}
	active, revoked := k.Numbers()
	if len(active) != 0 || !slices.Equal(revoked, []int{0, 15}) {
		t.Errorf("Numbers() = %v, %v; want [], [0 15]", active, revoked)
	}
	if empty, err := ParseKeyring([]byte("# nothing yet\n\n")); err != nil || empty.Len() != 0 {
		t.Errorf("comments only: %v, %d keys", err, empty.Len())
	}
}

// TestParseKeyring_Errors: every malformed line is refused and named.
func TestParseKeyring_Errors(t *testing.T) {
	good := "vendor-1 ed25519 " + keyA + "\n"
	for _, tc := range []struct {
		name, data, want string
	}{
		{"too few fields", good + "vendor-2 ed25519\n", "line 2: want \"vendor-<N> ed25519 <base64 public key> [revoked]\", got 2 fields"},
		{"bad name", "# c\nvendr-1 ed25519 " + keyA + "\n", `line 2: key name "vendr-1" is not vendor-<N>`},
		{"leading zero", "vendor-01 ed25519 " + keyA, `line 1: key name "vendor-01" is not vendor-<N>`},
		{"number out of range", "vendor-16 ed25519 " + keyA, "line 1: key number 16 is out of range 0 to 15"},
		{"negative number", "vendor--1 ed25519 " + keyA, "line 1: key number -1 is out of range"},
		{"plus sign", "vendor-+1 ed25519 " + keyA, `line 1: key name "vendor-+1"`},
		{"other algorithm", "vendor-1 rsa " + keyA, `line 1: key algorithm "rsa" is not supported`},
		{"private key", "vendor-1 ed25519-private " + keyA, "line 1: this is a PRIVATE key"},
		{"bad base64", "\n\nvendor-1 ed25519 not*base64", "line 3: public key is not valid base64"},
		{"short key", "vendor-1 ed25519 AAAA", "line 1: public key is 3 bytes, an ed25519 key is 32"},
		{"trailing word", "vendor-1 ed25519 " + keyA + " expired", `line 1: unexpected "expired" after the public key`},
		{"two words after", "vendor-1 ed25519 " + keyA + " revoked now", `line 1: unexpected "revoked now"`},
		{"number reused", good + "vendor-1 ed25519 " + keyB, "line 2: key number 1 is already a different key on line 1"},
		{"too large", strings.Repeat("#", maxKeyringSize+1), "more than the 65536"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKeyring([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestKeyring_Merge(t *testing.T) {
	embedded, _ := ParseKeyring([]byte("vendor-1 ed25519 " + keyA))
	file, _ := ParseKeyring([]byte("vendor-1 ed25519 " + keyA + " revoked\nvendor-2 ed25519 " + keyB))
	if err := embedded.Merge(file); err != nil {
		t.Fatal(err)
	}
	active, revoked := embedded.Numbers()
	if !slices.Equal(active, []int{2}) || !slices.Equal(revoked, []int{1}) {
		t.Errorf("after merge: active %v revoked %v, want [2] [1]", active, revoked)
	}
	if err := embedded.Merge(nil); err != nil {
		t.Error(err)
	}

	// A conflict leaves the keyring as it was.
	k, _ := ParseKeyring([]byte("vendor-1 ed25519 " + keyA))
	bad, _ := ParseKeyring([]byte("vendor-3 ed25519 " + keyA + "\nvendor-1 ed25519 " + keyB))
	if err := k.Merge(bad); err == nil || !strings.Contains(err.Error(), "key number 1 is two different keys") {
		t.Errorf("conflict: %v", err)
	}
	if k.Len() != 1 {
		t.Errorf("Len() = %d after a failed merge, want 1", k.Len())
	}
	// Merging copies: revoking in the merged ring does not reach back.
	src, _ := ParseKeyring([]byte("vendor-4 ed25519 " + keyB))
	dst := &Keyring{}
	_ = dst.Merge(src)
	rev, _ := ParseKeyring([]byte("vendor-4 ed25519 " + keyB + " revoked"))
	_ = dst.Merge(rev)
	if _, revoked := src.Numbers(); len(revoked) != 0 {
		t.Error("revoking in a merged keyring changed its source")
	}
}

// TestEmbeddedKeyring: the keyring built into the binary parses and holds a key.
func TestEmbeddedKeyring(t *testing.T) {
	k, err := ParseKeyring(vendorkeys.Keyring)
	if err != nil {
		t.Fatalf("packaging/vendorkeys/vendor-keys.pub: %v", err)
	}
	if active, _ := k.Numbers(); len(active) == 0 {
		t.Error("embedded keyring has no active key")
	}
}

func FuzzParseKeyring(f *testing.F) {
	f.Add([]byte("vendor-1 ed25519 " + keyA + "\n"))
	f.Add([]byte("# c\r\nvendor-15 ed25519 " + keyB + " revoked # gone\n\nvendor-0 ed25519 " + keyA))
	f.Add([]byte("vendor-1 ed25519-private " + keyA))
	f.Add([]byte("vendor-1 ed25519 " + keyA + "\nvendor-1 ed25519 " + keyB))
	f.Add(vendorkeys.Keyring)
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKeyring(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") && !bytes.Contains([]byte(err.Error()), []byte("bytes")) {
				t.Fatalf("error does not name a line: %v", err)
			}
			return
		}
		active, revoked := k.Numbers()
		if k.Len() > MaxKeys || len(active)+len(revoked) != k.Len() {
			t.Fatalf("Len %d, active %v, revoked %v", k.Len(), active, revoked)
		}
		for _, v := range k.keys {
			if v != nil && len(v.pub) != 32 {
				t.Fatalf("key of %d bytes", len(v.pub))
			}
		}
		// Merging a keyring into a copy of itself is always allowed.
		if err := (&Keyring{}).Merge(k); err != nil {
			t.Fatal(err)
		}
	})
}
