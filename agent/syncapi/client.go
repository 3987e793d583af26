package syncapi

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"syncagent/agent/version"
)

// Client calls a primary's sync API v5 on behalf of one site.
type Client struct {
	BaseURL        string // e.g. https://central.example.org:2048
	User           string
	PasswordSHA256 string // lowercase hex SHA-256 of the plain password
	HardwareID     string
	// Deprecated: ignored. The app-version header is always
	// version.Release, the product release peers expect (a git describe
	// string is not one); version.Version stays for logs.
	AppVersion  string
	HTTP        *http.Client  // nil: a client with dial and TLS timeouts
	Timeout     time.Duration // deadline of each call; 0 means DefaultTimeout
	MaxResponse int64         // response body limit; 0 means DefaultMaxResponse
	// Observe, when set, is told about every exchange (for the request sizer
	// and the link estimate).
	Observe func(Exchange)
	// Health, when set, gives the health block sent (HeaderHealth) with
	// each GET site, once a cycle; a peer that does not know it ignores it.
	Health func() string
	// Marks, when set, gives the marks header (HeaderMarks) sent with
	// every request.
	Marks func() string
	// Answered, when set, is given the headers of every answer (the
	// satellite reads HeaderDiagnostics from GET site's).
	Answered func(endpoint string, h http.Header)

	// peerTakesGzip is set once the server said (Accept-Encoding response
	// header) that it takes gzip request bodies.
	peerTakesGzip atomic.Bool
}

// Exchange is what one call showed about the link.
type Exchange struct {
	Endpoint string
	Sent     int // request bytes on the wire (body, approximately headers)
	Received int // response bytes on the wire
	Payload  int // request and response bodies as JSON, before gzip: the unit batches are cut in
	Elapsed  time.Duration
	Status   int // 0 when no response arrived
	Err      error
}

// Defaults for Client.
const (
	DefaultTimeout     = 25 * time.Second // shorter than the 60 s watchdog
	DefaultMaxResponse = 64 << 20
)

// NewHTTPClient returns a transport suited to bad links: bounded dials, TLS
// handshakes and header waits; no overall timeout (each call has a deadline).
func NewHTTPClient(tlsConfig *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 20 * time.Second,
		IdleConnTimeout:       60 * time.Second,
		MaxIdleConnsPerHost:   2,
		DisableCompression:    true, // we ask for gzip ourselves, to count wire bytes
	}}
}

var defaultHTTP = NewHTTPClient(nil)

// Site calls GET site: the "check connection" call.
func (c *Client) Site(ctx context.Context) (SiteInfo, error) {
	var out SiteInfo
	return out, c.do(ctx, http.MethodGet, EndpointSite, nil, nil, &out)
}

// healthFor is the health header for endpoint ("" for none).
func (c *Client) healthFor(endpoint string) string {
	if endpoint != EndpointSite || c.Health == nil {
		return ""
	}
	return c.Health()
}

// SiteStatus calls GET site_status.
func (c *Client) SiteStatus(ctx context.Context) (SiteStatus, error) {
	var out SiteStatus
	return out, c.do(ctx, http.MethodGet, EndpointSiteStatus, nil, nil, &out)
}

// Initialise calls POST initialise and returns the new queue length.
func (c *Client) Initialise(ctx context.Context) (int, error) {
	var out InitialiseResponse
	err := c.do(ctx, http.MethodPost, EndpointInitialise, nil, struct{}{}, &out)
	return out.QueueLength, err
}

// CentralRecords calls GET central_records for records after cursor.
func (c *Client) CentralRecords(ctx context.Context, cursor uint64, limit int) (CentralRecords, error) {
	var out CentralRecords
	q := url.Values{"cursor": {strconv.FormatUint(cursor, 10)}, "limit": {strconv.Itoa(limit)}}
	return out, c.do(ctx, http.MethodGet, EndpointCentral, q, nil, &out)
}

// QueuedRecords calls GET queued_records.
func (c *Client) QueuedRecords(ctx context.Context, limit int) (QueuedRecords, error) {
	var out QueuedRecords
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	return out, c.do(ctx, http.MethodGet, EndpointQueued, q, nil, &out)
}

// Acknowledge calls POST acknowledged_records.
func (c *Client) Acknowledge(ctx context.Context, syncIDs []string) error {
	return c.do(ctx, http.MethodPost, EndpointAcknowledged, nil, Acknowledge{SyncIDs: syncIDs}, nil)
}

// Push calls POST queued_records with one batch.
func (c *Client) Push(ctx context.Context, p Push) (PushResponse, error) {
	var out PushResponse
	return out, c.do(ctx, http.MethodPost, EndpointQueued, nil, p, &out)
}

func (c *Client) do(ctx context.Context, method, endpoint string, query url.Values, in, out any) (err error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	ex := Exchange{Endpoint: endpoint}
	start := time.Now()
	defer func() {
		ex.Elapsed, ex.Err = time.Since(start), err
		if c.Observe != nil {
			c.Observe(ex)
		}
	}()

	req, plain, err := c.newRequest(ctx, method, endpoint, query, in)
	if err != nil {
		return err
	}
	ex.Sent, ex.Payload = requestSize(req), plain
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, endpoint, err)
	}
	defer resp.Body.Close()
	ex.Status = resp.StatusCode
	if c.Answered != nil {
		c.Answered(endpoint, resp.Header)
	}
	if strings.Contains(strings.ToLower(resp.Header.Get("Accept-Encoding")), "gzip") {
		c.peerTakesGzip.Store(true)
	}
	body, wire, err := c.readResponse(resp)
	ex.Received = wire
	ex.Payload += len(body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, endpoint, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return responseError(resp.StatusCode, body)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s %s: the server's answer is not the expected JSON: %w", method, endpoint, err)
	}
	return nil
}

func (c *Client) newRequest(ctx context.Context, method, endpoint string, query url.Values, in any) (*http.Request, int, error) {
	u := strings.TrimRight(c.BaseURL, "/") + PathPrefix + endpoint
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var body []byte
	plain, gzipped := 0, false
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return nil, 0, fmt.Errorf("encode %s request: %w", endpoint, err)
		}
		plain = len(body)
		if len(body) >= gzipMinBytes && c.peerTakesGzip.Load() {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
			zw.Write(body)
			zw.Close()
			body, gzipped = buf.Bytes(), true
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, 0, fmt.Errorf("bad primary URL %q: %w", c.BaseURL, err)
	}
	req.SetBasicAuth(c.User, c.PasswordSHA256)
	h := req.Header
	h.Set(HeaderSiteUUID, c.HardwareID)
	h.Set(HeaderAppName, AppName)
	h.Set(HeaderAppVersion, version.Release)
	h.Set(HeaderVersion, strconv.Itoa(APIVersion))
	h.Set("Accept-Encoding", "gzip")
	if v := c.healthFor(endpoint); v != "" {
		h.Set(HeaderHealth, v)
	}
	if c.Marks != nil {
		h.Set(HeaderMarks, c.Marks())
	}
	if in != nil {
		h.Set("Content-Type", "application/json")
	}
	if gzipped {
		h.Set("Content-Encoding", "gzip")
	}
	return req, plain, nil
}

// readResponse reads a bounded body, undoing gzip, and returns the decoded
// body and the number of bytes that crossed the wire.
func (c *Client) readResponse(resp *http.Response) ([]byte, int, error) {
	max := c.MaxResponse
	if max <= 0 {
		max = DefaultMaxResponse
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, len(raw), fmt.Errorf("reading the response: %w", err)
	}
	if int64(len(raw)) > max {
		return nil, len(raw), fmt.Errorf("response over %d bytes: ask for fewer records", max)
	}
	if !strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		return raw, len(raw), nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, len(raw), fmt.Errorf("response says gzip but is not: %w", err)
	}
	body, err := io.ReadAll(io.LimitReader(zr, max+1))
	if err != nil {
		return nil, len(raw), fmt.Errorf("response gzip is broken: %w", err)
	}
	if int64(len(body)) > max {
		return nil, len(raw), fmt.Errorf("response over %d bytes once unzipped", max)
	}
	return body, len(raw), nil
}

// notV5Prefix starts the code of an *Error whose response body was not a v5
// error body: "http_502" for a proxy's HTML page, an empty body, plain text.
const notV5Prefix = "http_"

// NotV5 reports whether the response behind e had no v5 error body: then it
// came from something between us and the primary (a reverse proxy, a
// captive portal) or from a primary too broken to say why, and it says
// nothing about the request's content.
func (e *Error) NotV5() bool { return strings.HasPrefix(e.Code, notV5Prefix) }

// responseError turns a non-2xx response into an *Error, keeping the
// server's code and message when the body is a v5 error body.
func responseError(status int, body []byte) *Error {
	var data json.RawMessage
	eb := ErrorBody{Error: ErrorInfo{Data: &data}}
	if json.Unmarshal(body, &eb) == nil && eb.Error.Code != "" {
		e := &Error{Status: status, Code: eb.Error.Code, Message: eb.Error.Message}
		if len(data) > 0 && string(data) != "null" {
			e.Data = data
		}
		return e
	}
	text := strings.TrimSpace(string(body))
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	return &Error{Status: status, Code: notV5Prefix + strconv.Itoa(status), Message: text}
}

func requestSize(req *http.Request) int {
	n := len(req.Method) + len(req.URL.RequestURI()) + 12
	for k, vs := range req.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	if req.ContentLength > 0 {
		n += int(req.ContentLength)
	}
	return n
}
