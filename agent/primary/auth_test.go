package primary

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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
		if _, e := a.check(row, login{presented: sum, from: "10.0.0.2"}); e != nil {
			t.Fatal(e)
		}
	}
	if calls != 1 {
		t.Errorf("100 requests cost %d slow hashes, want 1", calls)
	}
	if _, e := a.check(row, login{presented: passwd.SHA256Hex("guess"), from: "10.0.0.2"}); e == nil || e.Code != syncapi.CodeSiteIncorrectPassword {
		t.Errorf("wrong password: %v", e)
	}
	h2, _ := passwd.Hash(passwd.SHA256Hex("new"))
	row.PasswordHash = h2
	if _, e := a.check(row, login{presented: sum, from: "10.0.0.2"}); e == nil {
		t.Error("old password still accepted after the hash changed")
	}
}

// TestAuthenticator_tokenAfterRestart protects the restart of a primary
// with many sites: a password verified once leaves a token that a new
// authenticator with the same key accepts without a slow hash; a token is
// no use with another key, another password or another stored hash.
func TestAuthenticator_tokenAfterRestart(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	sum := passwd.SHA256Hex("pw")
	h, _ := passwd.Hash(sum)
	row := &SiteRow{SyncID: 2, User: "s", PasswordHash: h}
	first := newAuthenticator(time.Now)
	first.key = key
	tok, e := first.check(row, login{presented: sum, from: "10.0.0.2"})
	if e != nil || tok == "" {
		t.Fatalf("first login: token %q, %v", tok, e)
	}
	if again, _ := first.check(row, login{presented: sum, from: "10.0.0.2", token: tok}); again != "" {
		t.Errorf("an unchanged token is written again (%q)", again)
	}

	cases := []struct {
		name      string
		key       []byte
		presented string
		hash      string
		wantSlow  int
		wantOK    bool
	}{
		{"same key after a restart", key, sum, h, 0, true},
		{"another key", []byte("another key, another primary...."), sum, h, 1, true},
		{"wrong password with the right token", key, passwd.SHA256Hex("guess"), h, 1, false},
		{"stored hash changed", key, sum, mustHash(t, passwd.SHA256Hex("new")), 1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newAuthenticator(time.Now)
			a.key = c.key
			slow := 0
			a.verify = func(enc, s string) (bool, error) { slow++; return passwd.Verify(enc, s) }
			r := *row
			r.PasswordHash = c.hash
			_, e := a.check(&r, login{presented: c.presented, from: "10.0.0.2", token: tok})
			if (e == nil) != c.wantOK || slow != c.wantSlow {
				t.Errorf("let in %v with %d slow hashes, want %v with %d (%v)", e == nil, slow, c.wantOK, c.wantSlow, e)
			}
		})
	}
}

func mustHash(t *testing.T, sum string) string {
	t.Helper()
	h, err := passwd.Hash(sum)
	if err != nil {
		t.Fatal(err)
	}
	return h
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
	if _, e := a.check(row, box); e != nil { // the box logs in once: its password is known
		t.Fatal(e)
	}
	attacker := login{presented: "bad", from: "192.0.2.9", hwid: "hw-guess", pinned: "hw-box"}
	for round, lock := range []time.Duration{firstLockout, 2 * firstLockout} {
		for i := 0; i < maxFailures; i++ {
			_, _ = a.check(row, attacker)
		}
		right := attacker
		right.presented = sum
		if _, e := a.check(row, right); e == nil || e.Code != syncapi.CodeSiteAuthTimeout || e.Status != http.StatusTooManyRequests {
			t.Fatalf("round %d: right password from the locked address without the pinned hardware ID: %v", round, e)
		}
		if _, e := a.check(row, box); e != nil {
			t.Fatalf("round %d: the real box, from its own address, is locked out: %v", round, e)
		}
		fromThere := box
		fromThere.from = attacker.from
		if _, e := a.check(row, fromThere); e != nil {
			t.Fatalf("round %d: the real box behind the guesser's address is locked out: %v", round, e)
		}
		now = now.Add(lock + time.Second)
	}
	if _, e := a.check(row, login{presented: sum, from: "192.0.2.9"}); e != nil {
		t.Errorf("after the lockout: %v", e)
	}
}

// The guess table stays bounded however many addresses guess.
func TestAuthenticator_guessTableBounded(t *testing.T) {
	a := newAuthenticator(time.Now)
	a.verify = func(string, string) (bool, error) { return false, nil } // no slow hashes in this test
	row := &SiteRow{SyncID: 2, User: "s", PasswordHash: "x"}
	for i := range maxGuessers + 500 {
		_, _ = a.check(row, login{presented: "bad", from: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)})
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

// TestServer_restartLetsSitesInWithoutSlowHashes protects the restart of a
// primary with many sites, through the real handler and the real datafile:
// a site that logged in before the restart costs no slow hash after it.
func TestServer_restartLetsSitesInWithoutSlowHashes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	sum := passwd.SHA256Hex("pw")
	h, _ := passwd.Hash(sum)
	rows := []SiteRow{{SyncID: 2, User: "two", PasswordHash: h, Stores: []string{"s"}}}
	key := []byte("0123456789abcdef0123456789abcdef")
	for round, wantSlow := range []int{1, 0} {
		c, err := queue.OpenCentral(path, queue.CentralOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(c, Config{Sites: rows, AuthKey: key}, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		slow := 0
		s.auth.verify = func(enc, sum string) (bool, error) { slow++; return passwd.Verify(enc, sum) }
		req := httptest.NewRequest(http.MethodGet, syncapi.PathPrefix+syncapi.EndpointSiteStatus, nil)
		req.SetBasicAuth("two", sum)
		req.Header.Set(syncapi.HeaderSiteUUID, "hw-2")
		req.Header.Set(syncapi.HeaderVersion, "14")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("round %d: %d %s", round, rec.Code, rec.Body)
		}
		if slow != wantSlow {
			t.Errorf("round %d: %d slow hashes, want %d", round, slow, wantSlow)
		}
		c.Close()
	}
}

// TestAuthenticator_verifiedExpires protects nodes sharing one registry: a
// password this node verified is trusted for verifiedFor, then checked
// again — against the registry's token when it has one (an HMAC, no slow
// hash), so a token another node cleared or replaced stops counting here.
func TestAuthenticator_verifiedExpires(t *testing.T) {
	now := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	sum := passwd.SHA256Hex("pw")
	row := &SiteRow{SyncID: 2, User: "s", PasswordHash: mustHash(t, sum)}
	for _, withKey := range []bool{false, true} {
		a := newAuthenticator(func() time.Time { return now })
		if withKey {
			a.key = []byte("0123456789abcdef0123456789abcdef")
		}
		slow := 0
		a.verify = func(enc, s string) (bool, error) { slow++; return passwd.Verify(enc, s) }
		tok, e := a.check(row, login{presented: sum, from: "10.0.0.2"})
		if e != nil {
			t.Fatal(e)
		}
		now = now.Add(verifiedFor - time.Second)
		a.check(row, login{presented: sum, from: "10.0.0.2", token: tok})
		if slow != 1 {
			t.Errorf("key %v: %d slow hashes within verifiedFor, want 1", withKey, slow)
		}
		now = now.Add(2 * time.Second)
		if _, e := a.check(row, login{presented: sum, from: "10.0.0.2", token: tok}); e != nil {
			t.Fatal(e)
		}
		if want := map[bool]int{false: 2, true: 1}[withKey]; slow != want {
			t.Errorf("key %v: %d slow hashes once verifiedFor passed, want %d (the token is checked, not the hash)", withKey, slow, want)
		}
		if withKey {
			// The token gone from the registry (another node cleared it): the
			// expired entry no longer lets the password in without a slow hash.
			now = now.Add(verifiedFor + time.Second)
			a.check(row, login{presented: sum, from: "10.0.0.2"})
			if slow != 2 {
				t.Errorf("after the token was cleared: %d slow hashes, want 2", slow)
			}
		}
	}
}
