// Package admin is the primary's admin listener: the site list as a web
// page (the seed's window: every site in a table, sorted by clicking a
// column header and again to reverse, narrowed by typing the start of a
// sync ID or user name, a row opening the site's detail), the same as JSON,
// and the metrics in Prometheus text format. Everything is behind its own
// credentials (HTTP Basic, checked against a slow hash), on a listener of
// its own (loopback by default; TLS like the sync listener).
package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"syncagent/agent/passwd"
	"syncagent/agent/primary"
)

// Fleet is what the page shows: the primary's site list.
type Fleet interface {
	Sites() []primary.SiteView
	SiteDetail(id int) (primary.SiteView, bool)
}

// Config is the admin listener's settings.
type Config struct {
	User string
	// PasswordHash is the slow hash of the password's SHA-256, as
	// `syncagent passwd` prints it (password_hash).
	PasswordHash string
	// Metrics writes the Prometheus text exposition; nil: no /metrics.
	Metrics func(io.Writer)
}

//go:embed page.html
var page []byte

// Server serves the admin routes behind the admin credentials.
type Server struct {
	http.Handler
	guard *guard
}

// Handler serves the admin routes.
func Handler(f Fleet, cfg Config, log *slog.Logger) http.Handler { return New(f, cfg, log) }

// SetCredentials replaces the admin user and password hash (a prefs change
// applied live); requests already verified must log in again.
func (s *Server) SetCredentials(user, passwordHash string) {
	s.guard.mu.Lock()
	defer s.guard.mu.Unlock()
	s.guard.creds = credentials{user: user, hash: passwordHash}
	s.guard.ok = false
}

// New returns the admin routes' server.
func New(f Fleet, cfg Config, log *slog.Logger) *Server {
	a := &guard{creds: credentials{user: cfg.User, hash: cfg.PasswordHash}, log: log, slow: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(page)
	})
	mux.HandleFunc("GET /api/sites", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, f.Sites()) })
	mux.HandleFunc("GET /api/sites/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.PathValue("id"))
		v, ok := f.SiteDetail(id)
		if err != nil || !ok {
			http.Error(w, "no such site", http.StatusNotFound)
			return
		}
		writeJSON(w, v)
	})
	if cfg.Metrics != nil {
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			cfg.Metrics(w)
		})
	}
	return &Server{Handler: a.wrap(mux), guard: a}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

// guard checks the admin credentials; a verified password is remembered
// (as its digest) so the page's requests do not each cost a slow hash, and
// wrong ones are slowed down.
type guard struct {
	log  *slog.Logger
	slow chan struct{}

	mu       sync.Mutex
	creds    credentials
	verified [32]byte // digest of the last password that matched
	ok       bool
	failedAt time.Time
}

func (g *guard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		g.mu.Lock()
		c := g.creds
		g.mu.Unlock()
		if !ok || c.user == "" || subtle.ConstantTimeCompare([]byte(user), []byte(c.user)) != 1 || !g.check(c, pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="syncagent admin", charset="UTF-8"`)
			http.Error(w, "admin credentials needed", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// credentials are the admin's user and password hash.
type credentials struct{ user, hash string }

func (g *guard) check(c credentials, pass string) bool {
	digest := sha256.Sum256([]byte(pass))
	g.mu.Lock()
	if g.ok && g.creds == c && subtle.ConstantTimeCompare(g.verified[:], digest[:]) == 1 {
		g.mu.Unlock()
		return true
	}
	g.mu.Unlock()
	g.slow <- struct{}{} // one slow check at a time
	good, err := passwd.Verify(c.hash, passwd.SHA256Hex(pass))
	<-g.slow
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil && good && g.creds == c {
		g.verified, g.ok = digest, true
		return true
	}
	if time.Since(g.failedAt) > time.Minute {
		g.log.Warn("admin login refused", "err", err)
	}
	g.failedAt = time.Now()
	return false
}
