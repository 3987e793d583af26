package unlock

import (
	"strings"
	"testing"
	"time"
)

func TestKeygen(t *testing.T) {
	pub, priv, err := Keygen(15)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pub, "vendor-15 ed25519 ") || !strings.HasSuffix(pub, "\n") || strings.Count(pub, "\n") != 1 {
		t.Errorf("pub = %q, want one keyring line", pub)
	}
	if n, err := PrivateKeyNumber(priv); err != nil || n != 15 {
		t.Errorf("PrivateKeyNumber = %d, %v; want 15", n, err)
	}
	// The public line is in the private file only as a comment, so the
	// private file is not mistaken for a keyring and vice versa.
	if k, err := ParseKeyring(priv); err == nil {
		t.Errorf("a private key file parsed as a keyring of %d keys", k.Len())
	}
	for _, n := range []int{-1, 16} {
		if _, _, err := Keygen(n); err == nil {
			t.Errorf("Keygen(%d) succeeded", n)
		}
	}
}

// TestIssue_Refuses: the vendor tool refuses claims no box would accept.
func TestIssue_Refuses(t *testing.T) {
	pub, priv, _ := Keygen(1)
	for _, tc := range []struct {
		name string
		key  []byte
		c    Claims
		want string
	}{
		{"key number mismatch", priv, claims(func(c *Claims) { c.KeyNumber = 0 }), "claims name key 0 but the private key file is vendor-1"},
		{"public key given", []byte(pub), claims(), "this is a public key (vendor-N.pub)"},
		{"no key", []byte("# nothing\n"), claims(), "has 0 key lines"},
		{"two keys", append(append([]byte{}, priv...), priv...), claims(), "has 2 key lines"},
		{"bad seed", []byte("vendor-1 ed25519-private AAAA"), claims(), "not a base64 32-byte ed25519 seed"},
		{"sequence 0", priv, claims(seq(0)), "sequence numbers start at 1"},
		{"empty hardware ID", priv, claims(func(c *Claims) { c.HardwareID = "  " }), "hardware ID is empty"},
		{"long hardware ID", priv, claims(func(c *Claims) { c.HardwareID = strings.Repeat("x", 1025) }), "longer than 1024"},
		{"change without digest", priv, claims(func(c *Claims) { c.ChangeDigest = "" }), "is not a SHA-256 digest"},
		{"short digest", priv, claims(func(c *Claims) { c.ChangeDigest = digestA[:62] }), "is not a SHA-256 digest"},
		{"window with digest", priv, claims(func(c *Claims) { c.Scope = ScopeWindow }), "leave the change digest empty"},
		{"unknown scope", priv, claims(func(c *Claims) { c.Scope = 7 }), "unknown scope 7"},
		{"expiry before 1970", priv, claims(func(c *Claims) { c.Expiry = time.Unix(-120, 0) }), "outside 1970 to 10136"},
		{"lifetime over 31 years", priv, claims(func(c *Claims) { c.Expiry = t0.AddDate(32, 0, 0) }), "more than 31 years after issue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Issue(tc.key, tc.c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestIssue_PastExpiry: a code may be issued already expired (to test the
// refusal); it then counts as issued at its expiry.
func TestIssue_PastExpiry(t *testing.T) {
	f := newFixture(t)
	code := mustIssue(t, f.priv, claims(func(c *Claims) { c.Issued, c.Expiry = t0, t0.Add(-time.Hour) }))
	c, err := ParseCode(code)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Issued.Equal(c.Expiry) {
		t.Errorf("issued %v, expiry %v; want equal", c.Issued, c.Expiry)
	}
}

// TestIssue_DefaultsToNow: a zero issue time is the wall clock.
func TestIssue_DefaultsToNow(t *testing.T) {
	_, priv, _ := Keygen(1)
	before := time.Now().Add(-time.Minute)
	code := mustIssue(t, priv, claims(func(c *Claims) { c.Issued, c.Expiry = time.Time{}, time.Now().Add(time.Hour) }))
	c, _ := ParseCode(code)
	if c.Issued.Before(before) || c.Issued.After(time.Now()) {
		t.Errorf("issued %v, want about now", c.Issued)
	}
}
