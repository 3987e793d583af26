package unlock

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"testing"
	"time"
)

// t0 is the box's clock in most tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const boxID = "HW1-3F9A-77C2-0B1E"

// digestOf returns a change digest as prefs.LockedDigest() would: lowercase hex.
func digestOf(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

var (
	digestA = digestOf("locked settings A")
	digestB = digestOf("locked settings B")
)

// fixture is a box with vendor key 1 trusted and an empty ledger on disk.
type fixture struct {
	pub      string // vendor key 1, a keyring line
	priv     []byte
	keys     *Keyring
	ledger   *Ledger
	path     string
	now      time.Time
	verifier *Verifier
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	pub, priv, err := Keygen(1)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ParseKeyring([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{pub: pub, priv: priv, keys: keys, now: t0, path: filepath.Join(t.TempDir(), "unlock-ledger.json")}
	f.ledger = mustOpenLedger(t, f.path)
	f.verifier = &Verifier{Keys: keys, HardwareID: boxID, Now: func() time.Time { return f.now }, Ledger: f.ledger}
	return f
}

func mustOpenLedger(t *testing.T, path string) *Ledger {
	t.Helper()
	l, err := OpenLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// claims returns a valid change-bound claim for this box and digestA,
// issued five minutes before t0 and valid for a day, then applies mods.
func claims(mods ...func(*Claims)) Claims {
	c := Claims{
		KeyNumber:    1,
		HardwareID:   boxID,
		Issued:       t0.Add(-5 * time.Minute),
		Expiry:       t0.Add(24 * time.Hour),
		Seq:          5,
		Scope:        ScopeChange,
		ChangeDigest: digestA,
	}
	for _, m := range mods {
		m(&c)
	}
	return c
}

func window(c *Claims) { c.Scope, c.ChangeDigest = ScopeWindow, "" }

func seq(n uint32) func(*Claims) { return func(c *Claims) { c.Seq = n } }

func mustIssue(t *testing.T, priv []byte, c Claims) string {
	t.Helper()
	code, err := Issue(priv, c)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// reencode rewrites a valid code's bytes and gives it a correct check symbol,
// as a forger (not a typist) would.
func reencode(t *testing.T, code string, edit func(raw *[codeLen]byte)) string {
	t.Helper()
	c, err := ParseCode(code)
	if err != nil {
		t.Fatal(err)
	}
	edit(&c.raw)
	return formatCode(c.raw)
}
