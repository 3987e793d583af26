package unlock

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestParseCode_RoundTrip(t *testing.T) {
	_, priv, err := Keygen(7)
	if err != nil {
		t.Fatal(err)
	}
	c := claims(func(c *Claims) { c.KeyNumber, c.Seq, c.Expiry = 7, 4000000000, t0.Add(90*time.Second) })
	code := mustIssue(t, priv, c)
	got, err := ParseCode(code)
	if err != nil {
		t.Fatal(err)
	}
	if got.KeyNumber != 7 || got.Seq != 4000000000 || got.Scope != ScopeChange {
		t.Errorf("got key %d seq %d scope %v, want 7 4000000000 change", got.KeyNumber, got.Seq, got.Scope)
	}
	// Expiry and issue time are carried to the minute, rounded down.
	if want := t0.Add(time.Minute); !got.Expiry.Equal(want) {
		t.Errorf("Expiry = %v, want %v", got.Expiry, want)
	}
	if want := t0.Add(-5 * time.Minute); !got.Issued.Equal(want) {
		t.Errorf("Issued = %v, want %v", got.Issued, want)
	}
	if got.String() != code {
		t.Errorf("String() = %q, want %q", got.String(), code)
	}
}

// TestCode_PrintedForm pins the printed shape a technician reads and types.
func TestCode_PrintedForm(t *testing.T) {
	f := newFixture(t)
	code := mustIssue(t, f.priv, claims())
	groups := strings.Split(code, "-")
	if got, want := len(groups), 26; got != want {
		t.Fatalf("%d groups, want %d: %s", got, want, code)
	}
	for i, g := range groups[:25] {
		if len(g) != 5 {
			t.Errorf("group %d is %q, want five symbols", i+1, g)
		}
	}
	if got, want := len(groups[25]), 4; got != want {
		t.Errorf("last group has %d symbols, want %d", got, want)
	}
	if got, want := len(code), 154; got != want {
		t.Errorf("printed length %d, want %d", got, want)
	}
	if strings.ToUpper(code) != code || strings.ContainsAny(code, "ILO") {
		t.Errorf("code %q is not upper case Crockford", code)
	}
	t.Logf("sample code (%d symbols, %d characters printed): %s", CodeSymbols, len(code), code)
}

// TestParseCode_Tolerant: what SMS, dictation and copy-paste do to a code must not matter.
func TestParseCode_Tolerant(t *testing.T) {
	f := newFixture(t)
	code := mustIssue(t, f.priv, claims())
	plain := strings.ReplaceAll(code, "-", "")
	aliases := strings.NewReplacer("1", "l", "0", "O").Replace(strings.ToLower(plain))
	aliasesI := strings.NewReplacer("1", "I", "0", "o").Replace(plain)
	var spaced strings.Builder
	for i, r := range plain {
		if i > 0 && i%4 == 0 {
			spaced.WriteString(" ")
		}
		spaced.WriteRune(r)
	}
	for name, in := range map[string]string{
		"as printed":          code,
		"lower case":          strings.ToLower(code),
		"no hyphens":          plain,
		"spaces not hyphens":  strings.ReplaceAll(code, "-", " "),
		"odd spacing":         spaced.String(),
		"surrounding blanks":  "\t " + code + " \r\n",
		"line breaks":         code[:60] + "\n" + code[60:],
		"l and o for 1 and 0": aliases,
		"I and o for 1 and 0": aliasesI,
		"en dashes":           strings.ReplaceAll(code, "-", "–"),
		"non-breaking spaces": strings.ReplaceAll(code, "-", "\u00a0"),
	} {
		if _, err := f.verifier.Check(in, digestA); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestParseCode_SingleSubstitutionCaught tries every other symbol at every
// position and counts how many the check symbol (or the alphabet) catches.
func TestParseCode_SingleSubstitutionCaught(t *testing.T) {
	f := newFixture(t)
	syms := []byte(strings.ReplaceAll(mustIssue(t, f.priv, claims()), "-", ""))
	tried, caught := 0, 0
	for i := range syms {
		for j := 0; j < len(checkAlphabet); j++ {
			sub := checkAlphabet[j]
			if sub == syms[i] {
				continue
			}
			typo := bytes.Clone(syms)
			typo[i] = sub
			tried++
			if _, err := ParseCode(string(typo)); errors.Is(err, ErrMistyped) {
				caught++
			} else {
				t.Errorf("substituting %q at %d not caught: %v", sub, i, err)
			}
		}
	}
	t.Logf("single substitutions caught: %d of %d (%.2f%%) over all %d positions", caught, tried, 100*float64(caught)/float64(tried), len(syms))
}

// TestParseCode_TranspositionCaught: swapping two adjacent different symbols is caught.
func TestParseCode_TranspositionCaught(t *testing.T) {
	f := newFixture(t)
	syms := []byte(strings.ReplaceAll(mustIssue(t, f.priv, claims()), "-", ""))
	tried := 0
	for i := 0; i+1 < len(syms); i++ {
		if syms[i] == syms[i+1] {
			continue
		}
		typo := bytes.Clone(syms)
		typo[i], typo[i+1] = typo[i+1], typo[i]
		tried++
		if _, err := ParseCode(string(typo)); !errors.Is(err, ErrMistyped) {
			t.Errorf("swapping %d and %d not caught: %v", i, i+1, err)
		}
	}
	t.Logf("adjacent transpositions tried: %d, all caught", tried)
}

func TestParseCode_Mistyped(t *testing.T) {
	f := newFixture(t)
	code := mustIssue(t, f.priv, claims())
	plain := strings.ReplaceAll(code, "-", "")
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "it has 0 symbols, a code has 129"},
		{"group missing", code[:len(code)-5], "it has 125 symbols"},
		{"symbol doubled", plain[:10] + plain[9:], "it has 130 symbols"},
		{"punctuation", plain[:7] + "!" + plain[8:], `'!' (symbol 3 of group 2) is not a code character`},
		{"non-ASCII", "É" + plain[1:], `'É' (symbol 1 of group 1) is not a code character`},
		{"check-only symbol in data", plain[:12] + "U" + plain[13:], `'U' (symbol 3 of group 3) may only be the last symbol`},
		{"far too long", strings.Repeat("0", maxCodeInput+1), "far longer than a code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCode(tc.in)
			if !errors.Is(err, ErrMistyped) {
				t.Fatalf("err = %v, want ErrMistyped", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasSuffix(err.Error(), "; re-type it") {
				t.Errorf("message %q, want it to contain %q and end with re-type it", err, tc.want)
			}
		})
	}
}

// TestParseCode_UnknownFormatVersion: a well-checked code from a future format is named as such.
func TestParseCode_UnknownFormatVersion(t *testing.T) {
	f := newFixture(t)
	code := reencode(t, mustIssue(t, f.priv, claims()), func(raw *[codeLen]byte) { raw[0] = 2<<5 | raw[0]&0x1f })
	_, err := ParseCode(code)
	if !errors.Is(err, ErrMistyped) || !strings.Contains(err.Error(), "format version 2") {
		t.Errorf("err = %v, want ErrMistyped naming format version 2", err)
	}
}

func TestSymbols_RoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 100; n++ {
		b := make([]byte, codeLen)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		syms := toSymbols(b)
		if len(syms) != codeSymbols {
			t.Fatalf("%d symbols, want %d", len(syms), codeSymbols)
		}
		if got := fromSymbols(syms); !bytes.Equal(got, b) {
			t.Fatalf("round trip %x -> %x", b, got)
		}
	}
}

func FuzzParseCode(f *testing.F) {
	_, priv, err := Keygen(1)
	if err != nil {
		f.Fatal(err)
	}
	valid, err := Issue(priv, claims())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(strings.ToLower(strings.ReplaceAll(valid, "-", " ")))
	f.Add("")
	f.Add("U")
	f.Add(strings.Repeat("Z", CodeSymbols))
	f.Add(valid[:len(valid)-1] + "*")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCode(s)
		if err != nil {
			if !errors.Is(err, ErrMistyped) {
				t.Fatalf("ParseCode error is not ErrMistyped: %v", err)
			}
			return
		}
		// A code that parses prints as a code that parses to the same thing.
		again, err := ParseCode(c.String())
		if err != nil || again != c {
			t.Fatalf("reparse of %q: %v, %+v != %+v", c.String(), err, again, c)
		}
		if c.KeyNumber < 0 || c.KeyNumber >= MaxKeys || c.Issued.After(c.Expiry) {
			t.Fatalf("impossible fields %+v", c)
		}
	})
}
