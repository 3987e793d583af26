package passwd

import (
	"strings"
	"testing"
)

// Keep hashing fast in tests; Verify reads the count from the hash itself.
func init() { Iterations = 1000 }

func TestSHA256Hex(t *testing.T) {
	tests := []struct{ plain, want string }{
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	}
	for _, tt := range tests {
		if got := SHA256Hex(tt.plain); got != tt.want {
			t.Errorf("SHA256Hex(%q) = %q, want %q", tt.plain, got, tt.want)
		}
	}
}

func TestIsSHA256Hex(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{SHA256Hex("x"), true},
		{strings.ToUpper(SHA256Hex("x")), false}, // the wire form is lowercase
		{SHA256Hex("x")[:63], false},
		{SHA256Hex("x") + "0", false},
		{strings.Repeat("g", 64), false},
		{"", false},
	}
	for _, tt := range tests {
		if got := IsSHA256Hex(tt.in); got != tt.want {
			t.Errorf("IsSHA256Hex(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestHash_Verify(t *testing.T) {
	pw := SHA256Hex("correct horse")
	enc, err := Hash(pw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "pbkdf2-sha256$1000$") {
		t.Fatalf("Hash = %q, want prefix pbkdf2-sha256$1000$", enc)
	}
	if !IsHash(enc) {
		t.Fatalf("IsHash(%q) = false", enc)
	}
	tests := []struct {
		name, try string
		want      bool
	}{
		{"right", pw, true},
		{"wrong", SHA256Hex("wrong horse"), false},
		{"plain password instead of its hash", "correct horse", false},
		{"uppercase hex", strings.ToUpper(pw), false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Verify(enc, tt.try)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Verify = %v, want %v", got, tt.want)
			}
		})
	}
}

// Two hashes of one password differ (fresh salt) and both verify.
func TestHash_Salted(t *testing.T) {
	pw := SHA256Hex("pw")
	a, _ := Hash(pw)
	b, _ := Hash(pw)
	if a == b {
		t.Fatalf("two hashes are equal: %q", a)
	}
	for _, enc := range []string{a, b} {
		if ok, err := Verify(enc, pw); !ok || err != nil {
			t.Errorf("Verify(%q) = %v, %v", enc, ok, err)
		}
	}
}

// Hash refuses what is not a SHA-256 hex string: hashing the plain password
// would make a hash the wire password can never match.
func TestHash_RefusesPlain(t *testing.T) {
	if _, err := Hash("hunter2"); err == nil {
		t.Fatal("Hash(plain) succeeded")
	}
}

// Verify uses the iteration count of the hash, not the package's current one.
func TestVerify_OldIterationCount(t *testing.T) {
	pw := SHA256Hex("pw")
	old := Iterations
	Iterations = 2000
	enc, err := Hash(pw)
	Iterations = old
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := Verify(enc, pw); !ok || err != nil {
		t.Fatalf("Verify = %v, %v", ok, err)
	}
}

// A known vector pins the format: PBKDF2-HMAC-SHA256 over the hex string.
func TestVerify_KnownVector(t *testing.T) {
	// Salt "saltsaltsaltsalt", 1000 iterations, password SHA256Hex("pw"); the
	// key was computed independently with Python's hashlib.pbkdf2_hmac.
	const enc = "pbkdf2-sha256$1000$c2FsdHNhbHRzYWx0c2FsdA$" + knownKey
	ok, err := Verify(enc, SHA256Hex("pw"))
	if err != nil || !ok {
		t.Fatalf("Verify(known) = %v, %v", ok, err)
	}
}

const knownKey = "kU2KeF7NiLfklg8OhwcDmd1cVBEsJJJG3kkXX67Y1GI"

func TestIsHash_Malformed(t *testing.T) {
	good, err := Hash(SHA256Hex("pw"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(good, "$")
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"plain sha256", SHA256Hex("pw")},
		{"other scheme", "bcrypt$" + f[1] + "$" + f[2] + "$" + f[3]},
		{"too few fields", strings.Join(f[:3], "$")},
		{"too many fields", good + "$x"},
		{"leading zero iterations", f[0] + "$01000$" + f[2] + "$" + f[3]},
		{"zero iterations", f[0] + "$0$" + f[2] + "$" + f[3]},
		{"signed iterations", f[0] + "$+1000$" + f[2] + "$" + f[3]},
		{"huge iterations", f[0] + "$999999999$" + f[2] + "$" + f[3]},
		{"padded salt", f[0] + "$" + f[1] + "$" + f[2] + "==$" + f[3]},
		{"short salt", f[0] + "$" + f[1] + "$c2FsdA$" + f[3]},
		{"bad base64 key", f[0] + "$" + f[1] + "$" + f[2] + "$!!" + f[3][2:]},
		{"short key", f[0] + "$" + f[1] + "$" + f[2] + "$" + f[3][:20]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if IsHash(tt.in) {
				t.Errorf("IsHash(%q) = true", tt.in)
			}
			ok, err := Verify(tt.in, SHA256Hex("pw"))
			if ok || err == nil {
				t.Errorf("Verify(%q) = %v, %v; want false and an error", tt.in, ok, err)
			}
		})
	}
}

// A password pasted into the hash field must not be repeated in the error,
// which ends up in `prefs check` output and the journal.
func TestCheck_DoesNotQuote(t *testing.T) {
	for _, s := range []string{"Secret$9999$Secret$Secret", "pbkdf2-sha256$Secret$Secret$Secret", "pbkdf2-sha256$1000$Secret$Secret", "Secret"} {
		err := Check(s)
		if err == nil || strings.Contains(err.Error(), "Secret") {
			t.Errorf("Check(%q) = %v", s, err)
		}
	}
}

// FuzzDecode protects the decoder of the encoded form: it never panics, and
// whatever it accepts is exactly what encode would write (one spelling per
// hash, so comparing encoded hashes as strings is sound).
func FuzzDecode(f *testing.F) {
	good, _ := Hash(SHA256Hex("pw"))
	for _, s := range []string{good, "", "pbkdf2-sha256$1$$", "pbkdf2-sha256$600000$c2FsdHNhbHRzYWx0c2FsdA$" + knownKey, "$$$"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := decode(s)
		if err != nil {
			if IsHash(s) {
				t.Fatalf("IsHash(%q) but decode failed: %v", s, err)
			}
			return
		}
		if got := encode(p); got != s {
			t.Fatalf("decode(%q) re-encodes as %q", s, got)
		}
	})
}
