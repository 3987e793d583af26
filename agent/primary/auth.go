package primary

import (
	"crypto/sha256"
	"crypto/subtle"
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
)

// authenticator verifies site credentials. A verified password is remembered
// (as a SHA-256 of what was presented, per stored hash) so that 1,000 sites
// don't cost one slow hash per request; slow hashes run at most two at once.
type authenticator struct {
	now    func() time.Time
	slow   chan struct{}                                 // semaphore for slow hash verification
	verify func(encoded, sha256hex string) (bool, error) // passwd.Verify; tests count calls

	mu       sync.Mutex
	verified map[string][32]byte // stored hash → sha256 of the presented password that matched it
	guesses  map[guesser]*guessState
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
	return &authenticator{now: now, slow: make(chan struct{}, 2), verify: passwd.Verify, verified: map[string][32]byte{}, guesses: map[guesser]*guessState{}}
}

// login is what a request presents.
type login struct {
	presented string // the password's SHA-256, as sent
	from      string // the source address
	hwid      string // the msupply-site-uuid header
	pinned    string // the hardware ID the primary pinned for the site ("" none)
}

// check returns nil when the presented password matches row's password hash.
func (a *authenticator) check(row *SiteRow, l login) *syncapi.Error {
	now := a.now()
	digest := sha256.Sum256([]byte(l.presented))
	key := guesser{row.User, l.from}
	a.mu.Lock()
	known, ok := a.verified[row.PasswordHash]
	cached := ok && subtle.ConstantTimeCompare(known[:], digest[:]) == 1
	g := a.guesses[key]
	if g != nil && now.Before(g.lockedUntil) {
		box := cached && l.pinned != "" && subtle.ConstantTimeCompare([]byte(l.hwid), []byte(l.pinned)) == 1
		a.mu.Unlock()
		if box {
			return nil // the real box, from an address someone guessed from
		}
		return syncapi.Errorf(http.StatusTooManyRequests, syncapi.CodeSiteAuthTimeout,
			"too many failed logins for %q from %s: try again after %s", row.User, l.from, g.lockedUntil.UTC().Format(time.RFC3339))
	}
	a.mu.Unlock()
	if cached {
		return nil
	}

	a.slow <- struct{}{}
	good, err := a.verify(row.PasswordHash, l.presented)
	<-a.slow

	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil && good {
		a.verified[row.PasswordHash] = digest
		delete(a.guesses, key)
		return nil
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
	return syncapi.Errorf(http.StatusUnauthorized, syncapi.CodeSiteIncorrectPassword, "wrong password for site %q", row.User)
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
