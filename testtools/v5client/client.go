// Package v5client is a test client (test tooling; it never ships) that
// syncs the way the open-source open-mSupply remote server's v5 client
// does, request for request, so our primary can be held to what a real peer
// sends. It follows msupply-foundation/open-msupply
// server/service/src/sync/: api/core.rs (headers, Basic auth with the
// password's SHA-256, an empty JSON object as the body of POST initialise,
// bodies sent without a content type), synchroniser.rs (the order of a
// cycle), remote_data_synchroniser.rs (initialisation and its polling,
// push batches whose queueLength counts the batch and a final empty batch,
// waiting for integration, queue pull and acknowledgement) and
// central_data_synchroniser.rs (the central cursor, and an empty page below
// maxCursor stepped over by one). The code is ours.
package v5client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Client is one open-mSupply-like remote site.
type Client struct {
	URL        string
	User       string
	Password   string // plain; sent as its SHA-256
	HardwareID string
	HTTP       *http.Client
	// Poll periods: the reference client polls site_status every 15 s during
	// an initialisation (30 min at most) and every second after a push (30 s
	// at most); tests shorten them.
	InitPoll, InitTimeout         time.Duration
	IntegratePoll, IntegrateLimit time.Duration
	// Batch sizes (the reference defaults: remote pull 500, push 1024,
	// central pull 500).
	PullBatch, PushBatch, CentralBatch int

	// The site's own state, as the reference keeps it in its database.
	Records       map[string]map[string]json.RawMessage // table → id → data
	CentralCursor uint64
	Changelog     []Change // changes waiting to be pushed, in order
	changeCursor  int      // the reference's change-log cursor: next syncOutId
	Requests      []string // every request sent, "METHOD path?query"
}

// Change is one change-log entry to push.
type Change struct {
	Table, ID, Action string // Action: "Update" or "Delete", as the reference sends
	Data              json.RawMessage
}

// New returns a client with the reference's defaults and short polls.
func New(url, user, password, hardwareID string) *Client {
	return &Client{URL: url, User: user, Password: password, HardwareID: hardwareID, HTTP: http.DefaultClient,
		InitPoll: 50 * time.Millisecond, InitTimeout: 10 * time.Second, IntegratePoll: 20 * time.Millisecond, IntegrateLimit: 2 * time.Second,
		PullBatch: 500, PushBatch: 1024, CentralBatch: 500, Records: map[string]map[string]json.RawMessage{}}
}

// Write records a local change for the next push (the reference writes it
// to its change log; one entry per record is pushed, the latest).
func (c *Client) Write(table, id string, data json.RawMessage) {
	c.Changelog = append(c.Changelog, Change{Table: table, ID: id, Action: "Update", Data: data})
	c.apply(table, id, data)
}

// Delete records a local delete for the next push.
func (c *Client) Delete(table, id string) {
	c.Changelog = append(c.Changelog, Change{Table: table, ID: id, Action: "Delete"})
	c.apply(table, id, nil)
}

func (c *Client) apply(table, id string, data json.RawMessage) {
	if data == nil {
		delete(c.Records[table], id)
		return
	}
	if c.Records[table] == nil {
		c.Records[table] = map[string]json.RawMessage{}
	}
	c.Records[table][id] = data
}

// SiteInfo is the part of GET site the reference reads.
type SiteInfo struct {
	ID                       string `json:"id"`
	SiteID                   int    `json:"siteId"`
	InitialisationStatus     string `json:"initialisationStatus"`
	OmSupplyCentralServerURL string `json:"omSupplyCentralServerUrl"`
}

// Sync runs one cycle as synchroniser.rs does: site info; on a site that
// was never initialised, initialise (or wait for a running one) and pull
// everything; otherwise push, wait for integration, pull central records,
// pull the queue.
func (c *Client) Sync(ctx context.Context, initialised bool) (SiteInfo, error) {
	var info SiteInfo
	if err := c.call(ctx, "GET", "site", nil, nil, &info); err != nil {
		return info, fmt.Errorf("site info: %w", err)
	}
	if !initialised {
		if info.InitialisationStatus != "started" {
			if err := c.call(ctx, "POST", "initialise", nil, map[string]any{}, nil); err != nil {
				return info, fmt.Errorf("initialise: %w", err)
			}
		}
		if err := c.waitIdle(ctx, c.InitPoll, c.InitTimeout); err != nil {
			return info, fmt.Errorf("wait for initialisation: %w", err)
		}
	} else if err := c.push(ctx); err != nil {
		return info, err
	}
	if err := c.pullCentral(ctx); err != nil {
		return info, err
	}
	return info, c.pullRemote(ctx)
}

// push sends the change log in batches, queueLength counting the records
// still to push including this batch, then an empty batch that starts
// integration, then polls site_status until idle.
func (c *Client) push(ctx context.Context) error {
	for {
		batch := c.Changelog[c.changeCursor:]
		if len(batch) > c.PushBatch {
			batch = batch[:c.PushBatch]
		}
		body := map[string]any{"queueLength": len(c.Changelog) - c.changeCursor, "data": c.records(batch)}
		var resp struct {
			IntegrationStarted bool `json:"integrationStarted"`
		}
		if err := c.call(ctx, "POST", "queued_records", nil, body, &resp); err != nil {
			return fmt.Errorf("push: %w", err)
		}
		c.changeCursor += len(batch)
		if len(batch) == 0 {
			if !resp.IntegrationStarted {
				return fmt.Errorf("push: total remaining sent to server is 0 but integration not started")
			}
			break
		}
	}
	return c.waitIdle(ctx, c.IntegratePoll, c.IntegrateLimit)
}

func (c *Client) records(batch []Change) []map[string]any {
	out := make([]map[string]any, 0, len(batch))
	for i, ch := range batch {
		r := map[string]any{"syncOutId": strconv.Itoa(c.changeCursor + i + 1), "tableName": ch.Table, "recordId": ch.ID, "action": ch.Action, "recordData": nil}
		if ch.Data != nil {
			r["recordData"] = ch.Data
		}
		out = append(out, r)
	}
	return out
}

// waitIdle polls site_status until it says idle.
func (c *Client) waitIdle(ctx context.Context, every, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		time.Sleep(every)
		var st struct {
			Code string `json:"code"`
		}
		if err := c.call(ctx, "GET", "site_status", nil, nil, &st); err != nil {
			return err
		}
		if st.Code == "idle" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("site_status still %q after %s", st.Code, limit)
		}
	}
}

func (c *Client) pullCentral(ctx context.Context) error {
	for range 100000 {
		var page struct {
			MaxCursor uint64 `json:"maxCursor"`
			Data      []struct {
				ID         uint64          `json:"ID"`
				TableName  string          `json:"tableName"`
				RecordID   string          `json:"recordId"`
				Action     string          `json:"action"`
				RecordData json.RawMessage `json:"recordData"`
			} `json:"data"`
		}
		q := url.Values{"cursor": {strconv.FormatUint(c.CentralCursor, 10)}, "limit": {strconv.Itoa(c.CentralBatch)}}
		if err := c.call(ctx, "GET", "central_records", q, nil, &page); err != nil {
			return fmt.Errorf("central records: %w", err)
		}
		last := c.CentralCursor
		for _, r := range page.Data {
			c.applyPulled(r.TableName, r.RecordID, r.Action, r.RecordData)
			last = r.ID
		}
		c.CentralCursor = last
		switch {
		case len(page.Data) == 0 && last >= page.MaxCursor:
			return nil
		case len(page.Data) == 0:
			c.CentralCursor = last + 1 // a gap: step over it
		}
	}
	return fmt.Errorf("central records: no end")
}

func (c *Client) pullRemote(ctx context.Context) error {
	for range 100000 {
		var page struct {
			QueueLength int `json:"queueLength"`
			Data        []struct {
				SyncOutID  string          `json:"syncOutId"`
				TableName  string          `json:"tableName"`
				RecordID   string          `json:"recordId"`
				Action     string          `json:"action"`
				RecordData json.RawMessage `json:"recordData"`
			} `json:"data"`
		}
		if err := c.call(ctx, "GET", "queued_records", url.Values{"limit": {strconv.Itoa(c.PullBatch)}}, nil, &page); err != nil {
			return fmt.Errorf("queued records: %w", err)
		}
		if len(page.Data) == 0 {
			return nil
		}
		ids := make([]string, 0, len(page.Data))
		for _, r := range page.Data {
			c.applyPulled(r.TableName, r.RecordID, r.Action, r.RecordData)
			ids = append(ids, r.SyncOutID)
		}
		if err := c.call(ctx, "POST", "acknowledged_records", nil, map[string]any{"syncIDs": ids}, nil); err != nil {
			return fmt.Errorf("acknowledge: %w", err)
		}
	}
	return fmt.Errorf("queued records: no end")
}

func (c *Client) applyPulled(table, id, action string, data json.RawMessage) {
	switch action {
	case "delete", "Delete":
		c.apply(table, id, nil)
	case "merge", "Merge":
		var m struct {
			Drop string `json:"mergeIdToDelete"`
		}
		json.Unmarshal(data, &m)
		c.apply(table, m.Drop, nil)
	default:
		c.apply(table, id, data)
	}
}

// call sends one request with the reference's headers and auth.
func (c *Client) call(ctx context.Context, method, endpoint string, query url.Values, in, out any) error {
	u := c.URL + "/sync/v5/" + endpoint
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(c.Password))
	req.SetBasicAuth(c.User, hex.EncodeToString(sum[:]))
	req.Header.Set("msupply-site-uuid", c.HardwareID)
	req.Header.Set("app-version", "2.20.0")
	req.Header.Set("app-name", "Open mSupply Desktop")
	req.Header.Set("version", "14")
	c.Requests = append(c.Requests, method+" "+endpoint+queryString(query))
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	if out == nil || len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, out)
}

func queryString(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}
