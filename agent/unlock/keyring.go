package unlock

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// MaxKeys is how many vendor keys a keyring holds: key numbers are 0..15,
// carried in four bits of every code.
const MaxKeys = 16

// maxKeyringSize bounds a keyring file; 16 keys with comments fit in far less.
const maxKeyringSize = 64 << 10

// Keyring is the set of vendor public keys a box trusts, by key number.
//
// The keyring file format is line based, UTF-8, one key per line:
//
//	vendor-<N> ed25519 <public key> [revoked]
//
// N is the key number, 0 to 15, in decimal without leading zeros; the public
// key is the 32-byte Ed25519 key in standard base64 with padding (44
// characters); the optional word "revoked" marks a key whose codes are
// refused. Fields are separated by spaces or tabs. '#' starts a comment that
// runs to the end of the line; blank lines are ignored; CRLF line ends are
// accepted. A keyring file is such lines concatenated, so the .pub file that
// Keygen writes is itself a keyring.
//
// A key number appears at most once per file, except that repeating the same
// key is allowed (and "revoked" on any of its lines wins). Key numbers are
// never reused for a different key: to retire a key, revoke it and issue with
// a new number.
type Keyring struct {
	keys [MaxKeys]*vendorKey
}

type vendorKey struct {
	pub     ed25519.PublicKey
	revoked bool
	line    int // where it was defined, for error messages
}

// ParseKeyring reads a keyring file. An empty file (or one of comments only)
// is an empty keyring. Errors name the line: "line 3: ...".
func ParseKeyring(data []byte) (*Keyring, error) {
	if len(data) > maxKeyringSize {
		return nil, fmt.Errorf("keyring is %d bytes, more than the %d a keyring of %d keys needs", len(data), maxKeyringSize, MaxKeys)
	}
	k := &Keyring{}
	for i, line := range bytes.Split(data, []byte("\n")) {
		lineNo := i + 1
		n, pub, revoked, err := parseKeyLine(string(line))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		if pub == nil {
			continue
		}
		if prev := k.keys[n]; prev != nil {
			if !prev.pub.Equal(pub) {
				return nil, fmt.Errorf("line %d: key number %d is already a different key on line %d (key numbers are never reused)", lineNo, n, prev.line)
			}
			prev.revoked = prev.revoked || revoked
			continue
		}
		k.keys[n] = &vendorKey{pub: pub, revoked: revoked, line: lineNo}
	}
	return k, nil
}

// parseKeyLine parses one keyring line; pub is nil for a blank or comment line.
func parseKeyLine(line string) (number int, pub ed25519.PublicKey, revoked bool, err error) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return 0, nil, false, nil
	}
	if len(f) < 3 {
		return 0, nil, false, fmt.Errorf("want \"vendor-<N> ed25519 <base64 public key> [revoked]\", got %d fields", len(f))
	}
	number, err = parseKeyName(f[0])
	if err != nil {
		return 0, nil, false, err
	}
	switch f[1] {
	case "ed25519":
	case privateKeyAlgorithm:
		return 0, nil, false, fmt.Errorf("this is a PRIVATE key; a keyring holds only public keys (vendor-N.pub)")
	default:
		return 0, nil, false, fmt.Errorf("key algorithm %q is not supported, want ed25519", f[1])
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(f[2])
	if err != nil {
		return 0, nil, false, fmt.Errorf("public key is not valid base64: %v", err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return 0, nil, false, fmt.Errorf("public key is %d bytes, an ed25519 key is %d", len(raw), ed25519.PublicKeySize)
	}
	switch {
	case len(f) == 4 && f[3] == "revoked":
		revoked = true
	case len(f) > 3:
		return 0, nil, false, fmt.Errorf("unexpected %q after the public key (only \"revoked\" may follow it)", strings.Join(f[3:], " "))
	}
	return number, ed25519.PublicKey(raw), revoked, nil
}

// parseKeyName reads "vendor-<N>".
func parseKeyName(s string) (int, error) {
	digits, ok := strings.CutPrefix(s, "vendor-")
	n, err := strconv.Atoi(digits)
	if !ok || err != nil || strconv.Itoa(n) != digits {
		return 0, fmt.Errorf("key name %q is not vendor-<N> with N a number from 0 to %d", s, MaxKeys-1)
	}
	if n < 0 || n >= MaxKeys {
		return 0, fmt.Errorf("key number %d is out of range 0 to %d", n, MaxKeys-1)
	}
	return n, nil
}

// formatKeyLine writes one keyring line, newline included.
func formatKeyLine(number int, pub ed25519.PublicKey) string {
	return fmt.Sprintf("vendor-%d ed25519 %s\n", number, base64.StdEncoding.EncodeToString(pub))
}

// Merge adds other's keys to k: the box's embedded keyring merged with the
// root-owned vendor_keys file. A key in both must be the same key; it is
// revoked if either says so, so the file can revoke an embedded key. A key
// number bound to two different keys is an error, and then k is unchanged.
func (k *Keyring) Merge(other *Keyring) error {
	if other == nil {
		return nil
	}
	for n, o := range other.keys {
		if o == nil || k.keys[n] == nil {
			continue
		}
		if !k.keys[n].pub.Equal(o.pub) {
			return fmt.Errorf("key number %d is two different keys (line %d of one keyring, line %d of the other); key numbers are never reused", n, k.keys[n].line, o.line)
		}
	}
	for n, o := range other.keys {
		switch {
		case o == nil:
		case k.keys[n] == nil:
			c := *o
			k.keys[n] = &c
		default:
			k.keys[n].revoked = k.keys[n].revoked || o.revoked
		}
	}
	return nil
}

// Len returns how many key numbers the keyring defines, revoked ones included.
func (k *Keyring) Len() int {
	n := 0
	for _, v := range k.keys {
		if v != nil {
			n++
		}
	}
	return n
}

// Numbers lists the key numbers the keyring trusts and those it has revoked,
// for `syncagent status`.
func (k *Keyring) Numbers() (active, revoked []int) {
	for n, v := range k.keys {
		switch {
		case v == nil:
		case v.revoked:
			revoked = append(revoked, n)
		default:
			active = append(active, n)
		}
	}
	return active, revoked
}

// lookup returns the public key for a key number, or an ErrUnknownKey refusal.
func (k *Keyring) lookup(n int) (ed25519.PublicKey, error) {
	var v *vendorKey
	if k != nil && n >= 0 && n < MaxKeys {
		v = k.keys[n]
	}
	switch {
	case v == nil:
		return nil, fmt.Errorf("%w: the code is signed with vendor key %d, which this box does not know; ask the vendor for a code signed with a current key, or add its public key to the vendor_keys keyring", ErrUnknownKey, n)
	case v.revoked:
		return nil, fmt.Errorf("%w: the code is signed with vendor key %d, which has been revoked; ask the vendor for a new code", ErrUnknownKey, n)
	}
	return v.pub, nil
}
