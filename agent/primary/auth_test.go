package primary

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"syncagent/agent/passwd"
	"syncagent/agent/syncapi"
	"syncagent/queue"
)

func init() { passwd.Iterations = 1000 }

// TestAuthenticator_cachesVerifiedPasswords protects the primary's cost per
// request: one slow hash per site and password, not one per request; a
// changed password or a wrong one is checked again.
func TestAuthenticator_cachesVerifiedPasswords(t *testing.T) {
	a := newAuthenticator(time.Now)
	calls := 0
	a.verify = func(enc, sum string) (bool, error) { calls++; return passwd.Verify(enc, sum) }
	sum := passwd.SHA256Hex("pw")
	h, _ := passwd.Hash(sum)
	row := &SiteRow{SyncID: 2, User: "s", PasswordHash: h}
	for i := 0; i < 100; i++ {
		if e := a.check(row, login{presented: sum, from: "10.0.0.2"}); e != nil {
			t.Fatal(e)
		}
	}
	if calls != 1 {
		t.Errorf("100 requests cost %d slow hashes, want 1", calls)
	}
	if e := a.check(row, login{presented: passwd.SHA256Hex("guess"), from: "10.0.0.2"}); e == nil || e.Code != syncapi.CodeSiteIncorrectPassword {
		t.Errorf("wrong password: %v", e)
	}
	h2, _ := passwd.Hash(passwd.SHA256Hex("new"))
	row.PasswordHash = h2
	if e := a.check(row, login{presented: sum, from: "10.0.0.2"}); e == nil {
		t.Error("old password still accepted after the hash changed")
	}
}

// TestAuthenticator_lockout protects the guessing limit and its doubling,
// per source address; and the real box, which a guesser elsewhere (or on
// its own address) cannot lock out.
func TestAuthenticator_lockout(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := newAuthenticator(func() time.Time { return now })
	sum := passwd.SHA256Hex("pw")
	h, _ := passwd.Hash(sum)
	row := &SiteRow{SyncID: 2, User: "s", PasswordHash: h}
	box := login{presented: sum, from: "10.0.0.2", hwid: "hw-box", pinned: "hw-box"}
	if e := a.check(row, box); e != nil { // the box logs in once: its password is known
		t.Fatal(e)
	}
	attacker := login{presented: "bad", from: "192.0.2.9", hwid: "hw-guess", pinned: "hw-box"}
	for round, lock := range []time.Duration{firstLockout, 2 * firstLockout} {
		for i := 0; i < maxFailures; i++ {
			a.check(row, attacker)
		}
		right := attacker
		right.presented = sum
		if e := a.check(row, right); e == nil || e.Code != syncapi.CodeSiteAuthTimeout || e.Status != http.StatusTooManyRequests {
			t.Fatalf("round %d: right password from the locked address without the pinned hardware ID: %v", round, e)
		}
		if e := a.check(row, box); e != nil {
			t.Fatalf("round %d: the real box, from its own address, is locked out: %v", round, e)
		}
		fromThere := box
		fromThere.from = attacker.from
		if e := a.check(row, fromThere); e != nil {
			t.Fatalf("round %d: the real box behind the guesser's address is locked out: %v", round, e)
		}
		now = now.Add(lock + time.Second)
	}
	if e := a.check(row, login{presented: sum, from: "192.0.2.9"}); e != nil {
		t.Errorf("after the lockout: %v", e)
	}
}

// The guess table stays bounded however many addresses guess.
func TestAuthenticator_guessTableBounded(t *testing.T) {
	a := newAuthenticator(time.Now)
	a.verify = func(string, string) (bool, error) { return false, nil } // no slow hashes in this test
	row := &SiteRow{SyncID: 2, User: "s", PasswordHash: "x"}
	for i := range maxGuessers + 500 {
		a.check(row, login{presented: "bad", from: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)})
	}
	if n := len(a.guesses); n > maxGuessers {
		t.Fatalf("%d entries, at most %d", n, maxGuessers)
	}
}

// BenchmarkServer_Sites1000 measures the site list of a primary with 1,000
// sites (`syncagent sites`).
func BenchmarkServer_Sites1000(b *testing.B) {
	c, err := queue.OpenCentral(filepath.Join(b.TempDir(), "c.db"), queue.CentralOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	h, _ := passwd.Hash(passwd.SHA256Hex("pw"))
	var rows []SiteRow
	for i := 2; i < 1002; i++ {
		rows = append(rows, SiteRow{SyncID: i, User: fmt.Sprintf("clinic-%d", i), PasswordHash: h, Stores: []string{fmt.Sprint("s", i)}})
	}
	s, err := New(c, Config{Sites: rows}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n := len(s.Sites()); n != 1000 {
			b.Fatal(n)
		}
	}
}
