package primary

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"syncagent/agent/passwd"
	"syncagent/agent/syncapi"
)

// Guessing limits: after maxFailures wrong passwords in a row for one site
// from one source address, that address's logins to that site are refused
// (site_auth_timeout) for a lockout that doubles each time.
//
// The lockout is per source address so that someone who knows a site's
// user name cannot keep the real box out by guessing from elsewhere; and
// even from a locked address, the right password together with the site's
// pinned hardware ID is let in (checked against the digest of the password
// last verified, which costs no slow hash). The trade-off, written down in
// the README: from a locked address, a guesser who also knows the pinned
// hardware ID can test guesses without the slow hash; a guesser without it
// cannot. Behind a load balancer the source address is taken from
// X-Forwarded-For, trusted only from Config.TrustedProxies.
const (
	maxFailures  = 5
	firstLockout = 30 * time.Second
	maxLockout   = 15 * time.Minute
	maxGuessers  = 10000 // (site, address) pairs remembered at most
	// verifiedFor is how long a node trusts a password it verified before
	// it checks again (the registry's token, an HMAC, or the slow hash):
	// a token cleared or replaced in the shared registry by another node
	// stops counting here within it.
	verifiedFor = 10 * time.Minute
)

// authenticator verifies site credentials. A verified password is remembered
// (as a SHA-256 of what was presented, per stored hash, for verifiedFor)
// so that 1,000 sites don't cost one slow hash per request; slow hashes run at
// most two at once. With an auth key, a verified password also leaves a
// token in the site registry (an HMAC of the stored hash and the password
// under the key), so after a restart — or on another node — the site is let
// in without a slow hash: 20,000 sites with their own passwords cost 20,000
// HMACs, not 20,000 slow hashes. The trade-off: whoever holds both the
// registry and the key can test guesses at HMAC speed; keep the key out of
// the database (a file in the state directory, or the nodes' own setting).
type authenticator struct {
	now    func() time.Time
	slow   chan struct{}                                 // semaphore for slow hash verification
	verify func(encoded, sha256hex string) (bool, error) // passwd.Verify; tests count calls
	key    []byte                                        // auth key for tokens; nil: none

	mu       sync.Mutex
	verified map[string]verifiedPassword // stored hash → the presented password that matched it
	guesses  map[guesser]*guessState
}

// verifiedPassword is a password verified against a stored hash: its
// SHA-256 (of what was presented) and when.
type verifiedPassword struct {
	digest [32]byte
	at     time.Time
}

// guesser is one site's logins from one source address.
type guesser struct {
	user, from string
}

type guessState struct {
	failures    int
	lockouts    int
	lockedUntil time.Time
	last        time.Time
}

func newAuthenticator(now func() time.Time) *authenticator {
	return &authenticator{now: now, slow: make(chan struct{}, 2), verify: passwd.Verify, verified: map[string]verifiedPassword{}, guesses: map[guesser]*guessState{}}
}

// login is what a request presents.
type login struct {
	presented string // the password's SHA-256, as sent
	from      string // the source address
	hwid      string // the msupply-site-uuid header
	pinned    string // the hardware ID the primary pinned for the site ("" none)
	token     string // the registry's token of the password last verified ("" none)
}

// token is the registry's proof that presented was verified against hash.
func (a *authenticator) token(hash, presented string) string {
	if a.key == nil {
		return ""
	}
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(hash))
	m.Write([]byte{0})
	m.Write([]byte(presented))
	return hex.EncodeToString(m.Sum(nil))
}

// check returns nil when the presented password matches row's password
// hash, and the token to keep in the registry when it changed ("" none).
func (a *authenticator) check(row *SiteRow, l login) (string, *syncapi.Error) {
	now := a.now()
	digest := sha256.Sum256([]byte(l.presented))
	key := guesser{row.User, l.from}
	a.mu.Lock()
	known, ok := a.verified[row.PasswordHash]
	cached := ok && now.Sub(known.at) < verifiedFor && subtle.ConstantTimeCompare(known.digest[:], digest[:]) == 1
	tok := ""
	if !cached {
		tok = a.token(row.PasswordHash, l.presented)
	}
	if !cached && tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(l.token)) == 1 {
		cached = true // verified before, by this node or another
		a.verified[row.PasswordHash] = verifiedPassword{digest, now}
	}
	g := a.guesses[key]
	if g != nil && now.Before(g.lockedUntil) {
		box := cached && l.pinned != "" && subtle.ConstantTimeCompare([]byte(l.hwid), []byte(l.pinned)) == 1
		a.mu.Unlock()
		if box {
			return "", nil // the real box, from an address someone guessed from
		}
		return "", syncapi.Errorf(http.StatusTooManyRequests, syncapi.CodeSiteAuthTimeout,
			"too many failed logins for %q from %s: try again after %s", row.User, l.from, g.lockedUntil.UTC().Format(time.RFC3339))
	}
	a.mu.Unlock()
	if cached {
		return "", nil
	}

	a.slow <- struct{}{}
	good, err := a.verify(row.PasswordHash, l.presented)
	<-a.slow

	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil && good {
		a.verified[row.PasswordHash] = verifiedPassword{digest, now}
		delete(a.guesses, key)
		if tok != l.token {
			return tok, nil
		}
		return "", nil
	}
	g = a.guesses[key]
	if g == nil {
		a.evictLocked(now)
		g = &guessState{}
		a.guesses[key] = g
	}
	g.failures++
	g.last = now
	if g.failures >= maxFailures {
		lock := firstLockout << g.lockouts
		if lock > maxLockout || lock <= 0 {
			lock = maxLockout
		}
		g.lockouts++
		g.failures = 0
		g.lockedUntil = now.Add(lock)
	}
	return "", syncapi.Errorf(http.StatusUnauthorized, syncapi.CodeSiteIncorrectPassword, "wrong password for site %q", row.User)
}

// evictLocked keeps the guess table bounded: past maxGuessers it drops the
// entries no longer locked, and if that is not enough the oldest.
func (a *authenticator) evictLocked(now time.Time) {
	if len(a.guesses) < maxGuessers {
		return
	}
	var oldest guesser
	var oldestAt time.Time
	for k, g := range a.guesses {
		if now.After(g.lockedUntil) && now.Sub(g.last) > maxLockout {
			delete(a.guesses, k)
			continue
		}
		if oldestAt.IsZero() || g.last.Before(oldestAt) {
			oldest, oldestAt = k, g.last
		}
	}
	if len(a.guesses) >= maxGuessers {
		delete(a.guesses, oldest)
	}
}

// forget drops cached verifications whose stored hash is no longer in use.
func (a *authenticator) forget(inUse map[string]bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for h := range a.verified {
		if !inUse[h] {
			delete(a.verified, h)
		}
	}
}
