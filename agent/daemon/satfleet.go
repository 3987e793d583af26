package daemon

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/metrics"
	"syncagent/agent/satellite"
	"syncagent/agent/syncapi"
)

// satFleet is a satellite's part of the fleet view: the requests it makes
// counted in the metrics, and the diagnostics the primary asks for,
// uploaded after a cycle.
type satFleet struct {
	reg    atomic.Pointer[metrics.Registry] // nil until observability is built: nothing counted
	cycled func()                           // a cycle ended (refresh the metrics textfile); may be nil
	// build makes the diagnostics bundle answering a request; nil: none.
	build func(request string) ([]byte, error)

	httpOnce sync.Once
	http     *http.Client

	// requested is the diagnostics request the primary's last GET site
	// answer named ("" none).
	requested atomic.Pointer[string]
	// Owned by the cycle goroutine.
	upload *satellite.Upload
	done   string // the last request answered or given up: not sent again
}

// httpClient is the satellite's HTTP client: the syncapi transport, with
// every request counted by method, endpoint and status.
func (f *satFleet) httpClient() *http.Client {
	f.httpOnce.Do(func() {
		base := syncapi.NewHTTPClient(nil)
		base.Transport = &countingTransport{next: base.Transport, reg: &f.reg}
		f.http = base
	})
	return f.http
}

// countingTransport counts requests into a registry (status 0: no answer).
type countingTransport struct {
	next http.RoundTripper
	reg  *atomic.Pointer[metrics.Registry]
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	endpoint := req.URL.Path
	if i := strings.LastIndex(endpoint, syncapi.PathPrefix); i >= 0 {
		endpoint = endpoint[i+len(syncapi.PathPrefix):]
	}
	t.reg.Load().Request(req.Method, endpoint, status, time.Since(start))
	return resp, err
}

// answered reads the primary's answers: a GET site answer names the
// diagnostics request waiting for this site, or none.
func (f *satFleet) answered(endpoint string, h http.Header) {
	if endpoint != syncapi.EndpointSite {
		return
	}
	v := h.Get(syncapi.HeaderDiagnostics)
	if len(v) > syncapi.MaxDiagnosticsRequest || strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		v = ""
	}
	f.requested.Store(&v)
}

// afterCycle counts the cycle, and sends the diagnostics the primary asked
// for; on the cycle goroutine, right after the cycle.
func (s *satelliteRole) afterCycle(ctx context.Context, c control.Cycle) {
	f := &s.fleet
	reg := f.reg.Load()
	result := "ok"
	switch {
	case c.Refused:
		result = "refused"
	case c.Error != "":
		result = "failed"
	}
	reg.Cycle(result)
	reg.Records("pushed", c.Pushed)
	reg.Records("pulled", c.Pulled)
	reg.Records("applied", c.Applied)
	reg.Records("set_aside", c.SetAside)
	s.sendDiagnostics(ctx)
	if f.cycled != nil {
		f.cycled()
	}
}

func (s *satelliteRole) sendDiagnostics(ctx context.Context) {
	f := &s.fleet
	req := ""
	if p := f.requested.Load(); p != nil {
		req = *p
	}
	if req == "" || req == f.done || f.build == nil || ctx.Err() != nil {
		return
	}
	log := s.log.With("component", "diagnostics", "request", req)
	if f.upload == nil || f.upload.Request != req {
		b, err := f.build(req)
		if err != nil {
			log.Warn("cannot build the diagnostics bundle the primary asked for", "err", err)
			f.done = req
			return
		}
		f.upload = satellite.NewUpload(req, b)
		log.Info("the primary asked for diagnostics; sending them", "bytes", len(b))
	}
	out, err := s.sat.Load().SendDiagnostics(ctx, f.upload)
	switch out {
	case satellite.UploadComplete:
		log.Info("diagnostics sent", "bytes", len(f.upload.Bundle))
		f.done, f.upload = req, nil
	case satellite.UploadDropped:
		log.Info("the primary does not take these diagnostics; not sending them", "err", err)
		f.done, f.upload = req, nil
	default:
		log.Info("diagnostics not all sent; the rest goes on the next cycle", "sent", f.upload.Sent(), "bytes", len(f.upload.Bundle), "err", err)
	}
}
