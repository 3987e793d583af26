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

// Guessing limits: after maxFailures wrong passwords in a row a site's logins
// are refused (site_auth_timeout) for a lockout that doubles each time.
const (
	maxFailures  = 5
	firstLockout = 30 * time.Second
	maxLockout   = 15 * time.Minute
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
	guesses  map[string]*guessState
}

type guessState struct {
	failures    int
	lockouts    int
	lockedUntil time.Time
}

func newAuthenticator(now func() time.Time) *authenticator {
	return &authenticator{now: now, slow: make(chan struct{}, 2), verify: passwd.Verify, verified: map[string][32]byte{}, guesses: map[string]*guessState{}}
}

// check returns nil when presented matches row's password hash.
func (a *authenticator) check(row *SiteRow, presented string) *syncapi.Error {
	now := a.now()
	a.mu.Lock()
	g := a.guesses[row.User]
	if g != nil && now.Before(g.lockedUntil) {
		a.mu.Unlock()
		return syncapi.Errorf(http.StatusTooManyRequests, syncapi.CodeSiteAuthTimeout,
			"too many failed logins for %q: try again after %s", row.User, g.lockedUntil.UTC().Format(time.RFC3339))
	}
	digest := sha256.Sum256([]byte(presented))
	known, ok := a.verified[row.PasswordHash]
	a.mu.Unlock()
	if ok && subtle.ConstantTimeCompare(known[:], digest[:]) == 1 {
		return nil
	}

	a.slow <- struct{}{}
	good, err := a.verify(row.PasswordHash, presented)
	<-a.slow

	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil && good {
		a.verified[row.PasswordHash] = digest
		delete(a.guesses, row.User)
		return nil
	}
	g = a.guesses[row.User]
	if g == nil {
		g = &guessState{}
		a.guesses[row.User] = g
	}
	g.failures++
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
