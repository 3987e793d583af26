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

// Handler serves the admin routes.
func Handler(f Fleet, cfg Config, log *slog.Logger) http.Handler {
	a := &guard{cfg: cfg, log: log, slow: make(chan struct{}, 1)}
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
	return a.wrap(mux)
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
	cfg  Config
	log  *slog.Logger
	slow chan struct{}

	mu       sync.Mutex
	verified [32]byte // digest of the last password that matched
	ok       bool
	failedAt time.Time
}

func (g *guard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(user), []byte(g.cfg.User)) != 1 || !g.check(pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="syncagent admin", charset="UTF-8"`)
			http.Error(w, "admin credentials needed", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (g *guard) check(pass string) bool {
	digest := sha256.Sum256([]byte(pass))
	g.mu.Lock()
	if g.ok && subtle.ConstantTimeCompare(g.verified[:], digest[:]) == 1 {
		g.mu.Unlock()
		return true
	}
	g.mu.Unlock()
	g.slow <- struct{}{} // one slow check at a time
	good, err := passwd.Verify(g.cfg.PasswordHash, passwd.SHA256Hex(pass))
	<-g.slow
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil && good {
		g.verified, g.ok = digest, true
		return true
	}
	if time.Since(g.failedAt) > time.Minute {
		g.log.Warn("admin login refused", "err", err)
	}
	g.failedAt = time.Now()
	return false
}
