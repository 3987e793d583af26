// Package passwd makes and checks the site passwords the primary stores.
//
// On the wire a site never sends its plain password: the Basic-auth password
// is the lowercase hex SHA-256 of it (see SHA256Hex). A satellite keeps that
// hex string in its prefs (password_sha256). The primary must not keep it in
// the clear, because it is all an attacker needs to log in as the site, so it
// keeps a slow hash of it (password_hash), made by Hash and checked by Verify.
//
// The encoded form is
//
//	pbkdf2-sha256$<iterations>$<salt>$<key>
//
// where iterations is a decimal number without leading zeros, salt and key are
// standard base64 without padding (RFC 4648 §4, no '='), the key is
// PBKDF2-HMAC-SHA256(password = the 64 hex characters as ASCII, salt,
// iterations, 32 bytes).
//
// Package passwd imports only the standard library; any package may import it.
package passwd

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Scheme is the first field of an encoded hash.
const Scheme = "pbkdf2-sha256"

// Iterations is the PBKDF2 iteration count Hash uses (OWASP's 2023 figure for
// PBKDF2-HMAC-SHA256). It is a variable so that tests can lower it; Verify
// always uses the count written in the encoded hash.
var Iterations = 600_000

const (
	saltLen = 16 // bytes of random salt Hash draws
	keyLen  = sha256.Size

	// Bounds an encoded hash must respect to be accepted. The upper bound on
	// iterations keeps a hand-edited prefs file from making every login take
	// minutes on a small box.
	minIterations = 1
	maxIterations = 10_000_000
	minSaltLen    = 8
	maxSaltLen    = 64
)

// b64 is the strict unpadded standard base64 of the encoded form: it refuses
// padding and non-zero trailing bits, so one hash has exactly one spelling.
var b64 = base64.RawStdEncoding.Strict()

// SHA256Hex returns the lowercase hex SHA-256 of plain: what a site sends as
// its Basic-auth password and keeps as password_sha256.
func SHA256Hex(plain string) string {
	sum := sha256.Sum256([]byte(plain))
	return hex.EncodeToString(sum[:])
}

// IsSHA256Hex reports whether s looks like SHA256Hex output: exactly 64
// lowercase hexadecimal characters.
func IsSHA256Hex(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Hash returns the encoded slow hash of sha256hex (the output of SHA256Hex),
// with a fresh random 16-byte salt and the current Iterations.
func Hash(sha256hex string) (string, error) {
	if !IsSHA256Hex(sha256hex) {
		return "", errors.New("cannot hash password: expected the 64 lowercase hex characters of its SHA-256, not the password itself")
	}
	if Iterations < minIterations || Iterations > maxIterations {
		return "", fmt.Errorf("cannot hash password: iterations %d outside %d..%d", Iterations, minIterations, maxIterations)
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("cannot hash password: %w", err)
	}
	key, err := pbkdf2.Key(sha256.New, sha256hex, salt, Iterations, keyLen)
	if err != nil {
		return "", fmt.Errorf("cannot hash password: %w", err)
	}
	return encode(parsed{iterations: Iterations, salt: salt, key: key}), nil
}

// Verify reports whether sha256hex is the password encoded hashes. The
// comparison of derived keys takes constant time. A sha256hex that is not 64
// lowercase hex characters simply does not match. The error is non-nil only
// when encoded is not a well-formed hash (see IsHash); then ok is false.
func Verify(encoded, sha256hex string) (ok bool, err error) {
	p, err := decode(encoded)
	if err != nil {
		return false, err
	}
	if !IsSHA256Hex(sha256hex) {
		return false, nil
	}
	key, err := pbkdf2.Key(sha256.New, sha256hex, p.salt, p.iterations, len(p.key))
	if err != nil {
		return false, fmt.Errorf("cannot verify password: %w", err)
	}
	return subtle.ConstantTimeCompare(key, p.key) == 1, nil
}

// IsHash reports whether s is a well-formed encoded hash that Verify accepts.
func IsHash(s string) bool {
	return Check(s) == nil
}

// Check returns nil if s is a well-formed encoded hash, else what is wrong
// with it. The message quotes no part of s: a password pasted in the wrong
// place must not end up in a log.
func Check(s string) error {
	_, err := decode(s)
	return err
}

// parsed is the decoded form of an encoded hash.
type parsed struct {
	iterations int
	salt, key  []byte
}

func encode(p parsed) string {
	return Scheme + "$" + strconv.Itoa(p.iterations) + "$" + b64.EncodeToString(p.salt) + "$" + b64.EncodeToString(p.key)
}

// decode parses the encoded form strictly: a string decode accepts is exactly
// what encode produces for the result.
func decode(s string) (parsed, error) {
	const maxLen = 256 // far above any hash encode makes; bounds the work below
	if len(s) > maxLen {
		return parsed{}, fmt.Errorf("malformed password hash: %d characters is too long", len(s))
	}
	fields := strings.Split(s, "$")
	if len(fields) != 4 {
		return parsed{}, fmt.Errorf("malformed password hash: expected %s$<iterations>$<salt>$<hash>, made by `syncagent passwd`", Scheme)
	}
	if fields[0] != Scheme {
		return parsed{}, fmt.Errorf("malformed password hash: it does not start with %q", Scheme+"$")
	}
	iter, err := parseIterations(fields[1])
	if err != nil {
		return parsed{}, err
	}
	if !isB64(fields[2]) || !isB64(fields[3]) {
		return parsed{}, errors.New("malformed password hash: salt and hash must be unpadded base64 (A-Z a-z 0-9 + /)")
	}
	salt, err := b64.DecodeString(fields[2])
	if err != nil {
		return parsed{}, fmt.Errorf("malformed password hash: salt is not unpadded base64: %v", err)
	}
	if len(salt) < minSaltLen || len(salt) > maxSaltLen {
		return parsed{}, fmt.Errorf("malformed password hash: salt is %d bytes, expected %d to %d", len(salt), minSaltLen, maxSaltLen)
	}
	key, err := b64.DecodeString(fields[3])
	if err != nil {
		return parsed{}, fmt.Errorf("malformed password hash: hash is not unpadded base64: %v", err)
	}
	if len(key) != keyLen {
		return parsed{}, fmt.Errorf("malformed password hash: hash is %d bytes, expected %d", len(key), keyLen)
	}
	return parsed{iterations: iter, salt: salt, key: key}, nil
}

// isB64 reports whether s holds only base64 alphabet characters: the decoder
// itself skips '\r' and '\n', which would give one hash several spellings.
func isB64(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// parseIterations accepts only canonical decimal: digits, no sign, no leading
// zero.
func parseIterations(s string) (int, error) {
	bad := s == "" || len(s) > 9 || s[0] == '0'
	for i := 0; i < len(s) && !bad; i++ {
		bad = s[i] < '0' || s[i] > '9'
	}
	if bad {
		return 0, fmt.Errorf("malformed password hash: the iteration count is not a number from %d to %d", minIterations, maxIterations)
	}
	n, _ := strconv.Atoi(s) // at most 9 digits: cannot fail
	if n < minIterations || n > maxIterations {
		return 0, fmt.Errorf("malformed password hash: iterations %d is not from %d to %d", n, minIterations, maxIterations)
	}
	return n, nil
}
