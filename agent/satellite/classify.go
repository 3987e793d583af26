package satellite

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"net/http"

	"syncagent/agent/adapt"
	"syncagent/agent/syncapi"
)

// kind is what a failed call says, and so what the cycle does next.
type kind int

const (
	kindOK kind = iota
	// kindStopped: the cycle's context ended.
	kindStopped
	// kindLink: the link or something on it failed (a timeout, a reset, a
	// dial, DNS or TLS error, a 5xx or 408 whose body is not a v5 error
	// body, such as a reverse proxy's page): retry within the cycle.
	// Never the record's fault.
	kindLink
	// kindBusy: 503 sync_is_running, the primary is busy: wait, then retry,
	// without shrinking the request size.
	kindBusy
	// kindAnswer: anything else the primary (or a proxy) answered: a v5
	// error of any status, 429, a non-v5 4xx. The phase ends with it,
	// unless it refuses records of a push (see recordRefusal).
	kindAnswer
)

func classify(ctx context.Context, err error) kind {
	if err == nil {
		return kindOK
	}
	if ctx.Err() != nil {
		return kindStopped
	}
	e, ok := syncapi.AsError(err)
	switch {
	case !ok:
		return kindLink // transport: timeouts, resets, dial, DNS, TLS, a 2xx that is not JSON
	case isBusy(e):
		return kindBusy
	case e.NotV5() && (e.Status >= 500 || e.Status == http.StatusRequestTimeout || e.Status == http.StatusRequestEntityTooLarge):
		return kindLink
	}
	return kindAnswer
}

// isBusy reports a v5 "come back later": 503 with sync_is_running (the
// legacy server and the reference client's recorded answers, api/error.rs).
func isBusy(e *syncapi.Error) bool {
	return e.Status == http.StatusServiceUnavailable && e.Code == syncapi.CodeSyncIsRunning
}

// unreached reports whether a request cannot have reached the primary:
// no connection, no name, no TLS session.
func unreached(err error) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recErr tls.RecordHeaderError
	return errors.As(err, &opErr) && opErr.Op == "dial" || errors.As(err, &dnsErr) ||
		errors.As(err, &certErr) || errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &recErr)
}

// recordRefusal reports whether err is the primary refusing the content of
// a push as such (v5 400, 413 or 422 without per-record reasons): a batch
// of one record is then that record's refusal, a larger batch is narrowed
// down to find it.
func recordRefusal(err error) bool {
	e, ok := syncapi.AsError(err)
	if !ok || e.NotV5() {
		return false
	}
	switch e.Status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// answered says who answered err, as a prefix for the cycle's error: the
// primary refusing (a v5 4xx), the primary failing (a v5 5xx), or nothing
// to add (a body that is not v5: a proxy, or a primary too broken to say).
func answered(err error) string {
	e, ok := syncapi.AsError(err)
	switch {
	case !ok || e.NotV5():
		return ""
	case e.Status >= 500:
		return "the primary failed: "
	}
	return "refused by the primary: "
}

// refusalsOf extracts the per-record refusals of a push the primary refused
// as a whole: a v5 4xx whose data lists them.
func refusalsOf(err error) ([]syncapi.Refusal, bool) {
	e, ok := syncapi.AsError(err)
	if !ok || e.NotV5() || len(e.Data) == 0 || e.Status >= 500 {
		return nil, false
	}
	var refused []syncapi.Refusal
	if json.Unmarshal(e.Data, &refused) != nil || len(refused) == 0 {
		return nil, false
	}
	for _, r := range refused {
		if r.SyncOutID == "" {
			return nil, false
		}
	}
	return refused, true
}

// within runs call under the deadline z gives a request of about bytes:
// a request the link swallowed is given up after a few times what such a
// request takes, not the client's whole deadline.
func within[T any](ctx context.Context, z *adapt.Sizer, bytes int, call func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, z.Timeout(bytes))
	defer cancel()
	return call(ctx)
}

// observe feeds a sizer with what the last call showed about the link.
// Only the link's failures and the server's size limit teach it: refusals
// and every other answer of the primary (v5 error bodies, 429, busy), and
// requests that never reached it, say nothing about the size a request
// can have, so a fixed request_size stays exactly as set.
func (s *Satellite) observe(ctx context.Context, z *adapt.Sizer, records int, full bool, err error) {
	ex := s.lastExchange
	// Bytes in the unit the outbox cuts batches in (JSON before gzip), so the
	// sizer's byte budget and the batches it gets agree.
	bytes := ex.Payload
	if bytes == 0 {
		bytes = ex.Sent + ex.Received
	}
	o := adapt.Observation{Records: records, Bytes: bytes, Elapsed: ex.Elapsed, Full: full}
	e, isAnswer := syncapi.AsError(err)
	switch {
	case err == nil:
		o.Outcome = adapt.OK
	case ctx.Err() != nil:
		return
	case isAnswer && e.Status == http.StatusRequestEntityTooLarge:
		o.Outcome = adapt.TooLarge
	case isAnswer && classify(ctx, err) != kindLink:
		return
	case !isAnswer && unreached(err):
		return
	case errors.Is(err, context.DeadlineExceeded):
		o.Outcome = adapt.TimedOut
	default:
		o.Outcome = adapt.Failed
	}
	z.Observe(o)
}
