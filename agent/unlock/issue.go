package unlock

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The vendor side: key generation and code issue. The box never calls these.
//
// A private key file is text: comment lines (Keygen writes the matching public
// line as one, for reference) and exactly one key line
//
//	vendor-<N> ed25519-private <base64 32-byte Ed25519 seed>

const privateKeyAlgorithm = "ed25519-private"

// signDomain separates these signatures from any other use of a vendor key.
const signDomain = "syncagent unlock code v1\x00"

// hardwareTagDomain separates the hardware tag from other hashes of the ID.
const hardwareTagDomain = "syncagent unlock hardware tag v1\x00"

// maxHardwareIDLen bounds the hardware ID that a signature covers.
const maxHardwareIDLen = 1024

// maxLifetimeMinutes is the longest expiry-minus-issue a code can carry (24 bits).
const maxLifetimeMinutes = 1<<24 - 1

// Claims is what a code says. Issue signs it; Verifier.Check returns its
// verified part as a Grant.
type Claims struct {
	// KeyNumber must be the number of the private key that signs (see
	// PrivateKeyNumber).
	KeyNumber int
	// HardwareID is the box's ID as `syncagent unlock` prints it; surrounding
	// white space and letter case do not matter.
	HardwareID string
	// Expiry is stored to the minute, rounded down.
	Expiry time.Time
	// Seq is the sequence number, from 1, per box per key; a box accepts
	// only a number above the last it used for that key.
	Seq   uint32
	Scope Scope
	// ChangeDigest is the SHA-256 digest in hex of the locked settings a
	// change-bound code applies (prefs.LockedDigest()); empty for a window.
	ChangeDigest string
	// Issued is the issue time; zero means now. It is carried to the minute,
	// rounded down, and lets the box notice its clock is behind.
	Issued time.Time
}

// Keygen makes a vendor key pair with the given number (0..15). pub is one
// keyring line, newline included; priv is the private key file's content,
// to be written with mode 0600 and never to leave the vendor.
func Keygen(number int) (pub string, priv []byte, err error) {
	if number < 0 || number >= MaxKeys {
		return "", nil, fmt.Errorf("key number %d is out of range 0 to %d", number, MaxKeys-1)
	}
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, fmt.Errorf("cannot generate key: %w", err)
	}
	pub = formatKeyLine(number, pk)
	priv = fmt.Appendf(nil, "# syncagent vendor private key %d: it signs unlock codes.\n"+
		"# Keep it secret (mode 0600); never copy it to a box or into a repository.\n"+
		"# Its public keyring line:\n# %s"+
		"vendor-%d %s %s\n",
		number, pub, number, privateKeyAlgorithm, base64.StdEncoding.EncodeToString(sk.Seed()))
	return pub, priv, nil
}

// PrivateKeyNumber returns the key number of a private key file, so that a
// caller can fill Claims.KeyNumber.
func PrivateKeyNumber(privFile []byte) (int, error) {
	n, _, err := parsePrivateKey(privFile)
	return n, err
}

func parsePrivateKey(privFile []byte) (int, ed25519.PrivateKey, error) {
	if len(privFile) > maxKeyringSize {
		return 0, nil, fmt.Errorf("private key file is %d bytes; a key file is a few lines", len(privFile))
	}
	var lines [][]string
	for line := range strings.Lines(string(privFile)) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if f := strings.Fields(line); len(f) > 0 {
			lines = append(lines, f)
		}
	}
	if len(lines) != 1 {
		return 0, nil, fmt.Errorf("private key file has %d key lines, want one", len(lines))
	}
	found := lines[0]
	switch {
	case len(found) >= 2 && found[1] == "ed25519":
		return 0, nil, errors.New("this is a public key (vendor-N.pub); issuing needs the private key file (vendor-N.key)")
	case len(found) != 3 || found[1] != privateKeyAlgorithm:
		return 0, nil, fmt.Errorf("private key file: want one line \"vendor-<N> %s <base64 seed>\"", privateKeyAlgorithm)
	}
	n, err := parseKeyName(found[0])
	if err != nil {
		return 0, nil, fmt.Errorf("private key file: %w", err)
	}
	seed, err := base64.StdEncoding.Strict().DecodeString(found[2])
	if err != nil || len(seed) != ed25519.SeedSize {
		return 0, nil, fmt.Errorf("private key file: the key is not a base64 %d-byte ed25519 seed", ed25519.SeedSize)
	}
	return n, ed25519.NewKeyFromSeed(seed), nil
}

// Issue signs c with the private key in privFile and returns the printed code.
// An expiry already past is allowed (to test refusals); the caller warns.
func Issue(privFile []byte, c Claims) (string, error) {
	number, sk, err := parsePrivateKey(privFile)
	if err != nil {
		return "", err
	}
	if c.KeyNumber != number {
		return "", fmt.Errorf("claims name key %d but the private key file is vendor-%d", c.KeyNumber, number)
	}
	hwid, err := normalizeHardwareID(c.HardwareID)
	if err != nil {
		return "", err
	}
	if c.Seq == 0 {
		return "", errors.New("sequence numbers start at 1")
	}
	issued := c.Issued
	if issued.IsZero() {
		issued = time.Now()
	}
	expMin, issMin := floorMinutes(c.Expiry), floorMinutes(issued)
	if expMin < 0 || expMin > 1<<32-1 {
		return "", fmt.Errorf("expiry %s is outside 1970 to 10136", c.Expiry.UTC().Format(time.RFC3339))
	}
	lifetime := max(expMin-issMin, 0) // an expiry already past counts as issued at expiry
	if lifetime > maxLifetimeMinutes {
		return "", fmt.Errorf("expiry %s is more than 31 years after issue", c.Expiry.UTC().Format(time.RFC3339))
	}
	var digest []byte
	switch c.Scope {
	case ScopeChange:
		if digest, err = decodeDigest(c.ChangeDigest); err != nil {
			return "", err
		}
	case ScopeWindow:
		if c.ChangeDigest != "" {
			return "", errors.New("a window code is not bound to a change; leave the change digest empty")
		}
	default:
		return "", fmt.Errorf("unknown scope %d", int(c.Scope))
	}

	var raw [codeLen]byte
	raw[0] = formatVersion<<5 | byte(c.Scope)<<4 | byte(number)
	binary.BigEndian.PutUint32(raw[1:5], uint32(expMin))
	raw[5], raw[6], raw[7] = byte(lifetime>>16), byte(lifetime>>8), byte(lifetime)
	binary.BigEndian.PutUint32(raw[8:12], c.Seq)
	tag := hardwareTag(hwid)
	copy(raw[12:14], tag[:])
	if digest != nil {
		copy(raw[14:16], digest[:2])
	}
	sig := ed25519.Sign(sk, signedMessage(raw[:payloadLen], hwid, digest))
	copy(raw[payloadLen:], sig)
	return formatCode(raw), nil
}

// floorMinutes returns t in unix minutes, rounded down.
func floorMinutes(t time.Time) int64 {
	s := t.Unix()
	if s < 0 {
		return (s - 59) / 60
	}
	return s / 60
}

// normalizeHardwareID trims white space and folds case, on both sides, so a
// dictated or re-typed ID still matches.
func normalizeHardwareID(id string) (string, error) {
	id = strings.ToLower(strings.TrimSpace(id))
	switch {
	case id == "":
		return "", errors.New("hardware ID is empty")
	case len(id) > maxHardwareIDLen:
		return "", fmt.Errorf("hardware ID is %d bytes, longer than %d", len(id), maxHardwareIDLen)
	}
	return id, nil
}

// decodeDigest reads a SHA-256 digest in hex, either letter case.
func decodeDigest(s string) ([]byte, error) {
	d, err := hex.DecodeString(s)
	if err != nil || len(d) != sha256.Size {
		return nil, fmt.Errorf("change digest %q is not a SHA-256 digest (%d hex digits)", s, 2*sha256.Size)
	}
	return d, nil
}

func hardwareTag(normalizedID string) [2]byte {
	h := sha256.Sum256([]byte(hardwareTagDomain + normalizedID))
	return [2]byte{h[0], h[1]}
}

// signedMessage is what a signature covers: the domain, the code's payload,
// the full hardware ID and, for a change-bound code, the full digest.
func signedMessage(payload []byte, normalizedID string, digest []byte) []byte {
	msg := make([]byte, 0, len(signDomain)+len(payload)+2+len(normalizedID)+len(digest))
	msg = append(msg, signDomain...)
	msg = append(msg, payload...)
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(normalizedID)))
	msg = append(msg, normalizedID...)
	return append(msg, digest...)
}
