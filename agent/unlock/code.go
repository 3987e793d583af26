package unlock

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// A code is 80 bytes, written as 128 Crockford base32 symbols followed by one
// check symbol, in groups of five separated by hyphens (129 symbols, 154
// characters printed). Layout, all integers big-endian:
//
//	byte  0      format version (3 bits, = 1) | scope (1 bit) | key number (4 bits)
//	bytes 1–4    expiry, unix minutes (uint32)
//	bytes 5–7    lifetime: expiry minus issue time, minutes (uint24)
//	bytes 8–11   sequence number (uint32, per box per key, from 1)
//	bytes 12–13  hardware tag: SHA-256(hardwareTagDomain || hardware ID)[:2]
//	bytes 14–15  change tag: the change digest's first two bytes (zero for a window)
//	bytes 16–79  Ed25519 signature
//
// The signature covers signDomain, bytes 0–15, the hardware ID (uint16 length
// prefix) and, for a change-bound code, the 32-byte change digest.
//
// The check symbol is the Crockford check: the value of the 128 symbols read
// as one base-32 number, modulo 37, written with the alphabet extended by
// "*~$=U". Because 37 is prime and larger than any difference of two symbols,
// every single substitution and every transposition of two adjacent symbols
// changes the check and is caught.
const (
	formatVersion = 1
	payloadLen    = 16
	sigLen        = ed25519.SignatureSize
	codeLen       = payloadLen + sigLen // bytes
	codeSymbols   = codeLen * 8 / 5     // data symbols, without the check symbol
	// CodeSymbols is the number of symbols in a code, the check symbol included.
	CodeSymbols = codeSymbols + 1
	groupLen    = 5
	// maxCodeInput bounds what ParseCode will look at; a pasted code with
	// generous spacing is far shorter.
	maxCodeInput = 4096
)

// A compile-time check that the bytes fill the symbols exactly, with no
// padding bits to get wrong.
var _ [0]struct{} = [codeLen * 8 % 5]struct{}{}

const (
	alphabet      = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	checkAlphabet = alphabet + "*~$=U"
	checkModulus  = len(checkAlphabet) // 37
)

// symbolValue maps an upper-case character to its value in checkAlphabet,
// with Crockford's aliases (I and L read as 1, O as 0); -1 if it is none.
var symbolValue = func() (m [256]int8) {
	for i := range m {
		m[i] = -1
	}
	for i := 0; i < len(checkAlphabet); i++ {
		m[checkAlphabet[i]] = int8(i)
	}
	m['I'], m['L'], m['O'] = 1, 1, 0
	return m
}()

// Scope says what a code unlocks.
type Scope int

// The scopes of a code.
const (
	// ScopeChange unlocks exactly one change: the locked settings whose
	// digest the code was issued for.
	ScopeChange Scope = iota
	// ScopeWindow opens a maintenance window: any locked change on this box
	// until the code's expiry.
	ScopeWindow
)

func (s Scope) String() string {
	switch s {
	case ScopeChange:
		return "change"
	case ScopeWindow:
		return "window"
	}
	return fmt.Sprintf("Scope(%d)", int(s))
}

// Code is a parsed, well-formed but NOT verified code. Its fields say what
// the code claims; only Verifier.Check says whether the claim is true.
type Code struct {
	KeyNumber int
	Scope     Scope
	// Issued is the issue time rounded down to the minute, so it is never
	// later than the real issue time.
	Issued time.Time
	Expiry time.Time
	Seq    uint32

	raw [codeLen]byte
}

// hardwareTag returns the two bytes of a hardware ID that a code carries.
func (c Code) hardwareTag() [2]byte { return [2]byte{c.raw[12], c.raw[13]} }

// changeTag returns the two bytes of the change digest that a code carries.
func (c Code) changeTag() [2]byte { return [2]byte{c.raw[14], c.raw[15]} }

func (c Code) payload() []byte   { return c.raw[:payloadLen] }
func (c Code) signature() []byte { return c.raw[payloadLen:] }

// String returns the code in its printed form: upper case, groups of five.
func (c Code) String() string { return formatCode(c.raw) }

// ParseCode reads a code as a technician may have typed it: any letter case;
// hyphens, dashes and white space anywhere are ignored; I and L read as 1 and
// O as 0. Anything else that is wrong (a character outside the alphabet, the
// wrong number of symbols, a check symbol that does not match, a field no
// issuer writes) is ErrMistyped, and the message says where.
func ParseCode(s string) (Code, error) {
	if len(s) > maxCodeInput {
		return Code{}, mistyped("it is %d characters long, far longer than a code", len(s))
	}
	var syms []byte
	for _, r := range s {
		if r == '-' || unicode.Is(unicode.Pd, r) || unicode.IsSpace(r) {
			continue
		}
		v := int8(-1)
		if r < 0x80 {
			v = symbolValue[byte(unicode.ToUpper(r))]
		}
		if v < 0 {
			return Code{}, mistyped("%q (symbol %s) is not a code character", r, symbolPosition(len(syms)))
		}
		syms = append(syms, byte(v))
	}
	if len(syms) != CodeSymbols {
		return Code{}, mistyped("it has %d symbols, a code has %d (%d groups of five and one of four)",
			len(syms), CodeSymbols, CodeSymbols/groupLen)
	}
	data, check := syms[:codeSymbols], int(syms[codeSymbols])
	for i, v := range data {
		if v >= 32 {
			return Code{}, mistyped("%q (symbol %s) may only be the last symbol", checkAlphabet[v], symbolPosition(i))
		}
	}
	if checkValue(data) != check {
		return Code{}, mistyped("the check symbol does not match")
	}
	var c Code
	copy(c.raw[:], fromSymbols(data))
	if v := int(c.raw[0] >> 5); v != formatVersion {
		return Code{}, mistyped("it is in format version %d; this syncagent reads version %d (if it is right, ask the vendor for a version %d code)",
			v, formatVersion, formatVersion)
	}
	c.Scope = Scope(c.raw[0] >> 4 & 1)
	c.KeyNumber = int(c.raw[0] & 0x0f)
	expiry := int64(binary.BigEndian.Uint32(c.raw[1:5]))
	lifetime := int64(c.raw[5])<<16 | int64(c.raw[6])<<8 | int64(c.raw[7])
	c.Expiry = time.Unix(expiry*60, 0).UTC()
	c.Issued = time.Unix((expiry-lifetime)*60, 0).UTC()
	c.Seq = binary.BigEndian.Uint32(c.raw[8:12])
	return c, nil
}

// symbolPosition names the i-th symbol the way a technician counts it.
func symbolPosition(i int) string {
	return fmt.Sprintf("%d of group %d", i%groupLen+1, i/groupLen+1)
}

func mistyped(format string, args ...any) error {
	return fmt.Errorf("%w: %s; re-type it", ErrMistyped, fmt.Sprintf(format, args...))
}

// formatCode writes raw bytes as a printed code.
func formatCode(raw [codeLen]byte) string {
	syms := toSymbols(raw[:])
	syms = append(syms, byte(checkValue(syms)))
	var b strings.Builder
	b.Grow(len(syms) + len(syms)/groupLen)
	for i, v := range syms {
		if i > 0 && i%groupLen == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(checkAlphabet[v])
	}
	return b.String()
}

// toSymbols splits bytes into 5-bit values, most significant bit first.
func toSymbols(b []byte) []byte {
	out := make([]byte, 0, (len(b)*8+4)/5+1)
	var acc uint32
	var n uint
	for _, x := range b {
		acc = acc<<8 | uint32(x)
		n += 8
		for n >= 5 {
			n -= 5
			out = append(out, byte(acc>>n)&31)
		}
		acc &= 1<<n - 1
	}
	if n > 0 {
		out = append(out, byte(acc<<(5-n))&31)
	}
	return out
}

// fromSymbols joins 5-bit values into bytes; trailing bits that do not fill a
// byte are dropped (a code has none).
func fromSymbols(s []byte) []byte {
	out := make([]byte, 0, len(s)*5/8)
	var acc uint32
	var n uint
	for _, v := range s {
		acc = acc<<5 | uint32(v&31)
		n += 5
		if n >= 8 {
			n -= 8
			out = append(out, byte(acc>>n))
			acc &= 1<<n - 1
		}
	}
	return out
}

// checkValue is the Crockford check: the symbols as one base-32 number, mod 37.
func checkValue(syms []byte) int {
	r := 0
	for _, v := range syms {
		r = (r*32 + int(v)) % checkModulus
	}
	return r
}
