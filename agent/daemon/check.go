package daemon

import (
	"net/url"
	"strings"

	"syncagent/agent/control"
	"syncagent/agent/satellite"
	"syncagent/agent/syncapi"
)

// The steps of a connection check, in the order the primary takes them.
const (
	stepReachable = "reachable"
	stepTLS       = "tls"
	stepAuth      = "authenticated"
	stepHardware  = "hardware_id"
	stepStores    = "stores"
)

// checkReport turns satellite.Check's report into the local API's answer:
// each step ok, failed, or not tried when an earlier one failed; TLS "not
// used" on an http URL; the round trip only when the primary answered.
func checkReport(r satellite.CheckReport, user string) control.Check {
	c := control.Check{URL: r.URL, User: user, Reachable: r.Reachable, TLS: r.TLS, Authenticated: r.Authenticated,
		HardwareAccepted: r.HardwareAccepted, SiteID: r.Site.SiteID, Error: r.Err, Advice: r.Advice}
	https := false
	if u, err := url.Parse(r.URL); err == nil {
		https = u.Scheme == "https"
	}
	results := map[string]string{stepReachable: control.StepNotTried, stepTLS: control.StepNotTried, stepAuth: control.StepNotTried,
		stepHardware: control.StepNotTried, stepStores: control.StepNotTried}
	detail := map[string]string{}
	tlsOK := control.StepNotUsed
	if https {
		tlsOK = control.StepOK
	}
	answered := false
	code := r.Code
	switch {
	case r.Err == "":
		answered = true
		for k := range results {
			results[k] = control.StepOK
		}
		results[stepTLS] = tlsOK
	case !r.Reachable:
		results[stepReachable], detail[stepReachable] = control.StepFailed, r.Err
		if !https {
			results[stepTLS] = control.StepNotUsed
		}
	case code == "": // reachable, but TLS (or the answer) failed
		results[stepReachable] = control.StepOK
		if https && r.TLS != "verified" {
			results[stepTLS], detail[stepTLS] = control.StepFailed, r.TLS
		} else {
			results[stepTLS] = tlsOK
		}
	default:
		answered, c.Refused = true, !strings.HasPrefix(code, "http_")
		results[stepReachable], results[stepTLS] = control.StepOK, tlsOK
		switch code {
		case syncapi.CodeSiteNameNotFound, syncapi.CodeSiteIncorrectPassword, syncapi.CodeSiteAuthTimeout:
			results[stepAuth], detail[stepAuth] = control.StepFailed, code
		case syncapi.CodeSiteIncorrectHWID:
			results[stepAuth] = control.StepOK
			results[stepHardware], detail[stepHardware] = control.StepFailed, code
		case syncapi.CodeSiteHasNoStore:
			results[stepAuth], results[stepHardware] = control.StepOK, control.StepOK
			results[stepStores], detail[stepStores] = control.StepFailed, code
		default: // refused before it looked at the credentials (version, sync disabled, busy)
			detail[stepAuth] = "refused first: " + code
		}
	}
	if answered {
		ms := r.RoundTrip.Milliseconds()
		c.RoundTripMS = &ms
	}
	for _, name := range []string{stepReachable, stepTLS, stepAuth, stepHardware, stepStores} {
		c.Steps = append(c.Steps, control.CheckStep{Name: name, Result: results[name], Detail: detail[name]})
	}
	return c
}
