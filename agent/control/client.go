package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Client calls a running agent over its control socket.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{Socket: path, hc: &http.Client{Transport: tr}}
}

func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	return c.do(ctx, method, path, body, out)
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.explain(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the agent's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			if eb.Line > 0 {
				return &LineError{Line: eb.Line, Msg: strings.TrimPrefix(eb.Error, fmt.Sprintf("line %d: ", eb.Line)), Status: resp.StatusCode}
			}
			return &Error{Status: resp.StatusCode, Msg: eb.Error}
		}
		return &Error{Status: resp.StatusCode, Msg: fmt.Sprintf("the agent answered HTTP %d", resp.StatusCode)}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// explain turns a dial failure into what the technician should do.
func (c *Client) explain(err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return &notRunningError{fmt.Sprintf("the agent is not running (no one answers on %s): start it with `systemctl start syncagent`", c.Socket)}
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("permission denied on %s: run as root or as a member of the syncagent group", c.Socket)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("the agent did not answer in time on %s", c.Socket)
	}
	return fmt.Errorf("cannot reach the agent on %s: %w", c.Socket, err)
}

// Status returns the agent's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.call(ctx, http.MethodGet, "/v1/status", nil, &s)
}

// Ready returns nil once the agent serves: its status answers and it is no
// longer opening its datafile (while it is, status answers and the rest is
// refused with 503).
func (c *Client) Ready(ctx context.Context) error {
	st, err := c.Status(ctx)
	if err == nil && st.Opening != "" {
		err = fmt.Errorf("the agent is starting: %s", st.Opening)
	}
	return err
}

// Sync runs a full cycle now (or, retrieveOnly, a pull) and waits for it.
func (c *Client) Sync(ctx context.Context, retrieveOnly bool) (Cycle, error) {
	var out Cycle
	path := "/v1/sync"
	if retrieveOnly {
		path = "/v1/retrieve"
	}
	return out, c.call(ctx, http.MethodPost, path, nil, &out)
}

// Check tests the connection to the primary.
func (c *Client) Check(ctx context.Context) (Check, error) {
	var out Check
	return out, c.call(ctx, http.MethodPost, "/v1/check", nil, &out)
}

// Generate re-queues sync records.
func (c *Client) Generate(ctx context.Context, fresh bool) (Generated, error) {
	mode := "existing"
	if fresh {
		mode = "new"
	}
	var out Generated
	return out, c.call(ctx, http.MethodPost, "/v1/generate?mode="+mode, nil, &out)
}

// Sites lists the sites this agent syncs with.
func (c *Client) Sites(ctx context.Context) ([]Site, error) {
	var out []Site
	return out, c.call(ctx, http.MethodGet, "/v1/sites", nil, &out)
}

// ClearHardwareID clears a site's pinned hardware ID on the primary.
func (c *Client) ClearHardwareID(ctx context.Context, syncID int, code string) error {
	return c.call(ctx, http.MethodPost, "/v1/sites/"+strconv.Itoa(syncID)+"/clear-hwid", map[string]string{"code": code}, nil)
}

// PutRecord writes a record.
func (c *Client) PutRecord(ctx context.Context, table, id string, data json.RawMessage) (Record, error) {
	var out Record
	return out, c.call(ctx, http.MethodPut, recordPath(table, id), data, &out)
}

// PutLines writes the records of a batch body (DecodeLines: one JSON
// record a line, at most MaxBatchRecords and MaxBody bytes) in one commit.
// A refused line is a *LineError.
func (c *Client) PutLines(ctx context.Context, body []byte) (BatchResult, error) {
	var out BatchResult
	return out, c.do(ctx, http.MethodPost, "/v1/records", bytes.NewReader(body), &out)
}

// GetRecord reads a record.
func (c *Client) GetRecord(ctx context.Context, table, id string) (Record, error) {
	var out Record
	return out, c.call(ctx, http.MethodGet, recordPath(table, id), nil, &out)
}

// DeleteRecord deletes a record.
func (c *Client) DeleteRecord(ctx context.Context, table, id string) error {
	return c.call(ctx, http.MethodDelete, recordPath(table, id), nil, nil)
}

// ListRecords lists a table's records by id.
func (c *Client) ListRecords(ctx context.Context, table, after string, limit int) ([]Record, error) {
	var out []Record
	q := url.Values{"after": {after}, "limit": {strconv.Itoa(limit)}}
	return out, c.call(ctx, http.MethodGet, "/v1/records/"+url.PathEscape(table)+"?"+q.Encode(), nil, &out)
}

// Aside lists the records the agent stopped pushing.
func (c *Client) Aside(ctx context.Context) ([]Aside, error) {
	var out []Aside
	return out, c.call(ctx, http.MethodGet, "/v1/aside", nil, &out)
}

// RetryAside puts a set-aside record back into the outbox.
func (c *Client) RetryAside(ctx context.Context, table, id string) error {
	return c.call(ctx, http.MethodPost, "/v1/aside/"+url.PathEscape(table)+"/"+url.PathEscape(id)+"/retry", nil, nil)
}

// Reload re-reads the prefs file.
func (c *Client) Reload(ctx context.Context) (Reload, error) {
	var out Reload
	return out, c.call(ctx, http.MethodPost, "/v1/prefs/reload", nil, &out)
}

// Unlock returns what a technician sends the vendor for an unlock code.
func (c *Client) Unlock(ctx context.Context) (Unlock, error) {
	var out Unlock
	return out, c.call(ctx, http.MethodGet, "/v1/unlock", nil, &out)
}

// History lists the last sync cycles, newest first.
func (c *Client) History(ctx context.Context) ([]Cycle, error) {
	var out []Cycle
	return out, c.call(ctx, http.MethodGet, "/v1/history", nil, &out)
}

// CheckCode asks whether code would unlock the change on disk, without
// spending it.
func (c *Client) CheckCode(ctx context.Context, code string) error {
	return c.call(ctx, http.MethodPost, "/v1/unlock/check", CodeRequest{Code: code}, nil)
}

// ResetClock resets an unlock ledger whose trusted time is ahead of the
// clock.
func (c *Client) ResetClock(ctx context.Context, code string) (Unlocked, error) {
	var out Unlocked
	return out, c.call(ctx, http.MethodPost, "/v1/unlock/reset-clock", CodeRequest{Code: code}, &out)
}

// NotRunning reports whether err says no agent answers on the socket.
func NotRunning(err error) bool {
	var nr *notRunningError
	return errors.As(err, &nr)
}

type notRunningError struct{ msg string }

func (e *notRunningError) Error() string { return e.msg }

func recordPath(table, id string) string {
	return "/v1/records/" + url.PathEscape(table) + "/" + url.PathEscape(id)
}

// DefaultTimeout bounds quick local API calls.
const DefaultTimeout = 10 * time.Second
