package satellite

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"strings"
	"time"

	"syncagent/agent/syncapi"
)

// CheckReport is the seed's "check connection": can this site reach the
// primary, and would the primary let it sync?
type CheckReport struct {
	URL              string
	Reachable        bool
	TLS              string // "none (http)", "verified", or what failed
	Authenticated    bool
	HardwareAccepted bool
	RoundTrip        time.Duration
	Site             syncapi.SiteInfo
	Err              string
	// Code is the v5 error code the primary answered with ("" when it did
	// not answer, or answered no v5 error).
	Code   string
	Advice string
}

// OK reports whether sync can work.
func (r CheckReport) OK() bool { return r.Err == "" }

// Check sends one GET site to the primary. It works whatever the lock state.
func (s *Satellite) Check(ctx context.Context) CheckReport {
	rep := CheckReport{URL: s.client.BaseURL, TLS: "none (http)"}
	u, err := url.Parse(s.client.BaseURL)
	if err == nil && u.Scheme == "https" {
		rep.TLS = "verified"
	}
	start := time.Now()
	info, err := s.client.Site(ctx)
	rep.RoundTrip = time.Since(start)
	if err == nil {
		rep.Reachable, rep.Authenticated, rep.HardwareAccepted, rep.Site = true, true, true, info
		return rep
	}
	rep.Err = err.Error()
	if e, ok := syncapi.AsError(err); ok {
		rep.Reachable = true
		if !e.NotV5() {
			rep.Code = e.Code
		}
		rep.Advice = syncapi.Advice(err)
		switch e.Code {
		case syncapi.CodeSiteIncorrectHWID:
			rep.Authenticated = true
		case syncapi.CodeSiteHasNoStore:
			rep.Authenticated, rep.HardwareAccepted = true, true
		}
		return rep
	}
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recErr tls.RecordHeaderError
	switch {
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr):
		rep.Reachable, rep.TLS = true, "certificate not trusted"
		rep.Advice = "the primary's TLS certificate is not trusted by this box: check the URL's host name and the certificate"
	case errors.As(err, &recErr), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		rep.Reachable, rep.TLS = true, "the server does not speak TLS"
		rep.Advice = "the URL says https but the primary answers plain http: fix the URL's scheme"
	case errors.Is(err, context.DeadlineExceeded):
		rep.Advice = "no answer in time: check the link (modem, SIM credit, satellite dish) and the primary's address"
	default:
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			rep.Advice = "the primary's host name does not resolve: check the URL and the box's DNS"
		} else {
			rep.Advice = "cannot connect: check the link and that the primary is running on that address and port"
		}
	}
	return rep
}
