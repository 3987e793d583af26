package primary

import (
	"net/http"
	"sync"

	"syncagent/agent/syncapi"
)

// inflight bounds what is being served at once: the bytes of requests in
// flight across every site (a shared budget) and each site's requests. A
// request over either is refused before its body is read, with 503
// sync_is_running and Retry-After: a client comes back, and a site sending
// forty 15 MB pushes at once costs the primary four of them, not forty.
type inflight struct {
	mu      sync.Mutex
	bytes   int64
	perSite map[int]int
}

// admit reserves cost bytes and one of site's slots; release gives them
// back.
func (f *inflight) admit(site int, cost int64, cfg *Config) (release func(), e *syncapi.Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.perSite[site] >= cfg.MaxPerSite:
		return nil, syncapi.Errorf(http.StatusServiceUnavailable, syncapi.CodeSyncIsRunning,
			"site %d already has %d requests in flight; retry after 5 s", site, f.perSite[site])
	case f.bytes+cost > cfg.MaxInFlight && f.bytes > 0:
		return nil, syncapi.Errorf(http.StatusServiceUnavailable, syncapi.CodeSyncIsRunning,
			"the primary is serving %d MiB of requests, its limit; retry after 5 s", f.bytes>>20)
	}
	f.bytes += cost
	f.perSite[site]++
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.bytes -= cost
		if f.perSite[site]--; f.perSite[site] <= 0 {
			delete(f.perSite, site)
		}
	}, nil
}

// costOf is what a request counts for: its body as declared (or the
// largest body the primary takes, when not declared), at least the fixed
// cost of an answer.
func (s *Server) costOf(r *http.Request) int64 {
	if r.Method != http.MethodPost {
		return requestCost
	}
	n := r.ContentLength
	if n < 0 || n > s.cfg.Load().MaxBody {
		n = s.cfg.Load().MaxBody
	}
	return max(n, requestCost)
}
