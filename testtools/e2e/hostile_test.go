package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"syncagent/agent/passwd"
	"syncagent/agent/primary"
	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// Hostile input on the primary: each bad request gets a clear v5 error,
// writes nothing (the central datafile does not grow by a byte) and the
// primary keeps serving the other sites.

// call is one raw request to the primary.
type call struct {
	method, path, body string
	site               int    // Basic auth as site-<site>; 0: no auth
	hwid               string // msupply-site-uuid; "": hw-<site>
	header             map[string]string
	rawBody            []byte // sent instead of body when set
}

func (c call) do(t *testing.T, base string) (int, []byte) {
	t.Helper()
	var body io.Reader = strings.NewReader(c.body)
	if c.rawBody != nil {
		body = bytes.NewReader(c.rawBody)
	}
	req, err := http.NewRequest(c.method, base+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.site != 0 {
		req.SetBasicAuth(fmt.Sprintf("site-%d", c.site), password(c.site))
		hwid := c.hwid
		if hwid == "" {
			hwid = fmt.Sprintf("hw-%d", c.site)
		}
		req.Header.Set(syncapi.HeaderSiteUUID, hwid)
	}
	req.Header.Set(syncapi.HeaderVersion, "14")
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s %s: %d with Content-Type %q", c.method, c.path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, b
}

// checkV5Error fails unless body is a v5 error body with code and a message.
func checkV5Error(t *testing.T, what string, status int, body []byte, wantStatus int, wantCode string) {
	t.Helper()
	var eb struct {
		Error *struct {
			Code    string           `json:"code"`
			Message string           `json:"message"`
			Data    *json.RawMessage `json:"data"`
		} `json:"error"`
	}
	raw := map[string]map[string]json.RawMessage{}
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error == nil || json.Unmarshal(body, &raw) != nil {
		t.Errorf("%s: %d, not a v5 error body: %q", what, status, body)
		return
	}
	if _, ok := raw["error"]["data"]; !ok {
		t.Errorf("%s: error body without \"data\": %s", what, body)
	}
	if status != wantStatus || eb.Error.Code != wantCode || eb.Error.Message == "" {
		t.Errorf("%s: %d %s %q, want %d %s with a message", what, status, eb.Error.Code, eb.Error.Message, wantStatus, wantCode)
	}
}

// fingerprint is what must not change: the datafile's bytes on disk and
// what the primary serves.
func (p *livePrimary) fingerprint(t *testing.T) string {
	t.Helper()
	return fingerprint(t, p.path, p.central, p.rows)
}

func fingerprint(t *testing.T, path string, c *queue.Central, rows []primary.SiteRow) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "size %d;", fi.Size())
	for _, table := range []string{"stock", "item"} {
		recs, _ := c.List(table, "", 100000)
		fmt.Fprintf(&b, "%s %d;", table, len(recs))
	}
	entries, maxCursor, _ := c.CentralSince(0, 100000)
	fmt.Fprintf(&b, "clog %d/%d;", len(entries), maxCursor)
	for _, row := range rows {
		st, _ := c.Site(row.SyncID)
		fmt.Fprintf(&b, "site %d queue %d hw %q init %q;", row.SyncID, c.QueueLen(row.SyncID), st.HardwareID, st.Initialisation)
	}
	return b.String()
}

// hostileSetup is a primary with small limits, sites 2 (a, shared) and 3
// (b, shared) that have each made contact once (so later requests within
// the minute write nothing for their last contact), and one record held.
func hostileSetup(t *testing.T) (p *livePrimary, base string) {
	t.Helper()
	p = newLivePrimary(t, map[int][]string{2: {"a", "shared"}, 3: {"b", "shared"}, 4: {"c"}})
	if err := p.prim.Configure(primary.Config{Sites: p.rows, MaxBody: 64 << 10, MaxBatch: 20}); err != nil {
		t.Fatal(err)
	}
	base = "http://" + p.addr
	for _, id := range []int{2, 3, 4} {
		if status, b := (call{method: "POST", path: "/sync/v5/initialise", site: id}).do(t, base); status != 200 {
			t.Fatalf("initialise site %d: %d %s", id, status, b)
		}
	}
	push := `{"queueLength":0,"data":[{"syncOutId":"ok-1","tableName":"stock","recordId":"held","action":"insert","recordData":{"store_ID":"shared","qty":1}}]}`
	if status, b := (call{method: "POST", path: "/sync/v5/queued_records", site: 2, body: push}).do(t, base); status != 200 {
		t.Fatalf("push: %d %s", status, b)
	}
	return p, base
}

func pushBody(records ...string) string {
	return `{"queueLength":0,"data":[` + strings.Join(records, ",") + `]}`
}

func rec(sid, table, id, action, data string) string {
	return fmt.Sprintf(`{"syncOutId":%q,"tableName":%q,"recordId":%q,"action":%q,"recordData":%s}`, sid, table, id, action, data)
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// TestHostile_badRequests protects the primary against bad requests from a
// site that authenticates: each is refused with its v5 error, changes
// nothing, and the next site is served.
func TestHostile_badRequests(t *testing.T) {
	p, base := hostileSetup(t)
	good := rec("h-1", "stock", "new", "insert", `{"store_ID":"a"}`)
	var batch21 []string
	for i := 0; i < 21; i++ {
		batch21 = append(batch21, rec(fmt.Sprintf("h-%d", i), "stock", fmt.Sprintf("n%d", i), "insert", `{"store_ID":"a"}`))
	}
	ids21, _ := json.Marshal(map[string]any{"syncIDs": strings.Split(strings.Repeat("x,", 20)+"x", ",")})
	bigBody := pushBody(rec("h-1", "stock", "big", "insert", `{"store_ID":"a","pad":"`+strings.Repeat("x", 70<<10)+`"}`))
	bomb := gzipped(bytes.Repeat([]byte(" "), 10<<20))
	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)

	cases := []struct {
		name   string
		c      call
		status int
		code   string
	}{
		{"oversized body", call{method: "POST", path: "/sync/v5/queued_records", body: bigBody}, 413, syncapi.CodeBodyTooLarge},
		{"gzip bomb", call{method: "POST", path: "/sync/v5/queued_records", rawBody: bomb, header: map[string]string{"Content-Encoding": "gzip"}}, 413, syncapi.CodeBodyTooLarge},
		{"says gzip, is not", call{method: "POST", path: "/sync/v5/queued_records", body: pushBody(good), header: map[string]string{"Content-Encoding": "gzip"}}, 400, syncapi.CodeBadRequest},
		{"unknown content encoding", call{method: "POST", path: "/sync/v5/queued_records", body: pushBody(good), header: map[string]string{"Content-Encoding": "br"}}, 415, syncapi.CodeBadRequest},
		{"malformed JSON", call{method: "POST", path: "/sync/v5/queued_records", body: `{"queueLength":0,"data":[{`}, 400, syncapi.CodeBadRequest},
		{"trailing data", call{method: "POST", path: "/sync/v5/queued_records", body: pushBody(good) + ` {"again":1}`}, 400, syncapi.CodeBadRequest},
		{"empty push", call{method: "POST", path: "/sync/v5/queued_records"}, 400, syncapi.CodeBadRequest},
		{"nested 5000 deep", call{method: "POST", path: "/sync/v5/queued_records", body: deep}, 400, syncapi.CodeBadRequest},
		{"queueLength a string", call{method: "POST", path: "/sync/v5/queued_records", body: `{"queueLength":"0","data":[]}`}, 400, syncapi.CodeBadRequest},
		{"data an object", call{method: "POST", path: "/sync/v5/queued_records", body: `{"queueLength":0,"data":{"a":1}}`}, 400, syncapi.CodeBadRequest},
		{"recordId a number", call{method: "POST", path: "/sync/v5/queued_records", body: pushBody(`{"syncOutId":"h","tableName":"stock","recordId":7,"action":"insert"}`)}, 400, syncapi.CodeBadRequest},
		{"recordData a string", call{method: "POST", path: "/sync/v5/queued_records", body: pushBody(rec("h-1", "stock", "r", "insert", `"text"`))}, 400, syncapi.CodeInvalidRecord},
		{"unknown action", call{method: "POST", path: "/sync/v5/queued_records", body: pushBody(rec("h-1", "stock", "r", "explode", `{"store_ID":"a"}`))}, 400, syncapi.CodeInvalidRecord},
		{"no syncOutId", call{method: "POST", path: "/sync/v5/queued_records", body: pushBody(rec("", "stock", "r", "insert", `{"store_ID":"a"}`))}, 400, syncapi.CodeInvalidRecord},
		{"syncOutId with a control character", call{method: "POST", path: "/sync/v5/queued_records", body: pushBody(`{"syncOutId":"a\u007f","tableName":"stock","recordId":"r","action":"insert","recordData":{"store_ID":"a"}}`)}, 400, syncapi.CodeInvalidRecord},
		{"table with a colon", call{method: "POST", path: "/sync/v5/queued_records", body: pushBody(rec("h-1", "st:ock", "r", "insert", `{"store_ID":"a"}`))}, 400, syncapi.CodeInvalidRecord},
		{"merge without ids", call{method: "POST", path: "/sync/v5/queued_records", body: pushBody(rec("h-1", "stock", "r", "merge", `{}`))}, 400, syncapi.CodeInvalidRecord},
		{"huge batch", call{method: "POST", path: "/sync/v5/queued_records", body: pushBody(batch21...)}, 413, syncapi.CodeBatchTooLarge},
		{"acknowledge: wrong type", call{method: "POST", path: "/sync/v5/acknowledged_records", body: `{"syncIDs":[1,2]}`}, 400, syncapi.CodeBadRequest},
		{"acknowledge: not an object", call{method: "POST", path: "/sync/v5/acknowledged_records", body: `["a"]`}, 400, syncapi.CodeBadRequest},
		{"acknowledge: too many ids", call{method: "POST", path: "/sync/v5/acknowledged_records", body: string(ids21)}, 413, syncapi.CodeBatchTooLarge},
		{"acknowledge: empty", call{method: "POST", path: "/sync/v5/acknowledged_records"}, 400, syncapi.CodeBadRequest},
		{"initialise: wrong type", call{method: "POST", path: "/sync/v5/initialise", body: `[1]`}, 400, syncapi.CodeBadRequest},
		{"cursor not a number", call{method: "GET", path: "/sync/v5/central_records?cursor=abc"}, 400, syncapi.CodeBadRequest},
		{"cursor negative", call{method: "GET", path: "/sync/v5/central_records?cursor=-1"}, 400, syncapi.CodeBadRequest},
		{"limit zero", call{method: "GET", path: "/sync/v5/queued_records?limit=0"}, 400, syncapi.CodeBadRequest},
		{"limit overflows", call{method: "GET", path: "/sync/v5/queued_records?limit=99999999999999999999999"}, 400, syncapi.CodeBadRequest},
		{"unknown endpoint", call{method: "GET", path: "/sync/v5/everything"}, 404, syncapi.CodeNotFound},
		{"outside the API", call{method: "GET", path: "/admin"}, 404, syncapi.CodeNotFound},
		{"wrong method", call{method: "DELETE", path: "/sync/v5/queued_records"}, 405, syncapi.CodeMethodNotAllowed},
		{"version from the future", call{method: "GET", path: "/sync/v5/site", header: map[string]string{syncapi.HeaderVersion: "999"}}, 409, syncapi.CodeAPIVersion},
		{"version not a number", call{method: "GET", path: "/sync/v5/site", header: map[string]string{syncapi.HeaderVersion: "v5"}}, 409, syncapi.CodeAPIVersion},
	}
	before := p.fingerprint(t)
	for _, tc := range cases {
		tc.c.site = 2
		status, body := tc.c.do(t, base)
		checkV5Error(t, tc.name, status, body, tc.status, tc.code)
		if after := p.fingerprint(t); after != before {
			t.Errorf("%s changed the primary:\n before %s\n after  %s", tc.name, before, after)
			before = after
		}
		if status, body := (call{method: "GET", path: "/sync/v5/queued_records?limit=5", site: 3}).do(t, base); status != 200 {
			t.Fatalf("after %s, site 3 is refused: %d %s", tc.name, status, body)
		}
	}
}

// TestHostile_identity protects who may do what: a site presenting another
// site's hardware ID, no hardware ID, a hardware ID that is no ID, no
// credentials or an unknown user are refused and change nothing.
func TestHostile_identity(t *testing.T) {
	p, base := hostileSetup(t)
	before := p.fingerprint(t)
	cases := []struct {
		name   string
		c      call
		status int
		code   string
	}{
		{"site 3 with site 2's hardware ID", call{method: "GET", path: "/sync/v5/queued_records", site: 3, hwid: "hw-2"}, 401, syncapi.CodeSiteIncorrectHWID},
		{"site 3 pushing with site 2's hardware ID", call{method: "POST", path: "/sync/v5/queued_records", site: 3, hwid: "hw-2",
			body: pushBody(rec("i-1", "stock", "x", "insert", `{"store_ID":"b"}`))}, 401, syncapi.CodeSiteIncorrectHWID},
		{"no hardware ID", call{method: "GET", path: "/sync/v5/site", site: 3, hwid: " "}, 401, syncapi.CodeSiteIncorrectHWID},
		{"a hardware ID of 300 characters", call{method: "GET", path: "/sync/v5/site", site: 3, hwid: strings.Repeat("h", 300)}, 401, syncapi.CodeSiteIncorrectHWID},
		{"a hardware ID with a tab", call{method: "GET", path: "/sync/v5/site", site: 3, hwid: "hw\t3"}, 401, syncapi.CodeSiteIncorrectHWID},
		{"no credentials", call{method: "GET", path: "/sync/v5/site"}, 401, syncapi.CodeSiteNameNotFound},
		{"unknown user", call{method: "GET", path: "/sync/v5/site", header: map[string]string{"Authorization": "Basic " + basic("site-99", password(99))}}, 401, syncapi.CodeSiteNameNotFound},
	}
	for _, tc := range cases {
		status, body := tc.c.do(t, base)
		checkV5Error(t, tc.name, status, body, tc.status, tc.code)
		if after := p.fingerprint(t); after != before {
			t.Errorf("%s changed the primary:\n before %s\n after  %s", tc.name, before, after)
			before = after
		}
	}
	// A hardware ID that is no ID is refused even on first contact (site 4
	// is unpinned here) and pins nothing.
	if err := p.prim.ClearPin(4); err != nil {
		t.Fatal(err)
	}
	before = p.fingerprint(t)
	status, body := (call{method: "GET", path: "/sync/v5/site", site: 4, hwid: strings.Repeat("h", 300)}).do(t, base)
	checkV5Error(t, "unpinned site with a 300-character hardware ID", status, body, 401, syncapi.CodeSiteIncorrectHWID)
	if after := p.fingerprint(t); after != before {
		t.Errorf("a bad hardware ID changed the primary:\n before %s\n after  %s", before, after)
	}
	for _, id := range []int{2, 3, 4} {
		if status, body := (call{method: "GET", path: "/sync/v5/site", site: id}).do(t, base); status != 200 {
			t.Errorf("site %d refused after the others' bad requests: %d %s", id, status, body)
		}
	}
}

func basic(user, pass string) string {
	req, _ := http.NewRequest("GET", "http://x", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// TestHostile_passwordGuessing protects the lockout through HTTP: five
// wrong passwords for a site from one address lock that address out for
// that site (doubling), never the real box — not from another address, and
// not even from the guesser's own address when it presents the right
// password with the pinned hardware ID; other sites and unknown users are
// unaffected, and nothing changes. The addresses come from X-Forwarded-For,
// as behind a trusted load balancer.
func TestHostile_passwordGuessing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "central.db")
	c, err := queue.OpenCentral(path, queue.CentralOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var rows []primary.SiteRow
	for _, id := range []int{2, 3} {
		h, _ := passwd.Hash(password(id))
		rows = append(rows, primary.SiteRow{SyncID: id, User: fmt.Sprintf("site-%d", id), PasswordHash: h, Stores: []string{"a"}})
	}
	now := time.Now() // the lockout's clock, moved by the test
	lb := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	prim, err := primary.New(c, primary.Config{Sites: rows, TrustedProxies: lb}, quiet, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(prim.Handler())
	t.Cleanup(hs.Close)
	srv := hs.URL
	for _, id := range []int{2, 3} {
		if status, b := (call{method: "GET", path: "/sync/v5/site", site: id}).do(t, srv); status != 200 {
			t.Fatalf("site %d: %d %s", id, status, b)
		}
	}
	login := func(pw, from, hwid string) (int, []byte) {
		return call{method: "GET", path: "/sync/v5/site", header: map[string]string{
			"Authorization": "Basic " + basic("site-2", pw), syncapi.HeaderSiteUUID: hwid, "X-Forwarded-For": from}}.do(t, srv)
	}
	const guesser, box = "192.0.2.66", "198.51.100.2"
	before := fingerprint(t, path, c, rows)
	for i := 0; i < 5; i++ {
		status, body := login(fmt.Sprintf("%064x", i), guesser, "hw-guess")
		checkV5Error(t, fmt.Sprintf("guess %d", i+1), status, body, 401, syncapi.CodeSiteIncorrectPassword)
	}
	status, body := login(password(2), guesser, "hw-guess")
	checkV5Error(t, "right password from the locked address, wrong hardware ID", status, body, 429, syncapi.CodeSiteAuthTimeout)
	if !strings.Contains(string(body), "try again after") {
		t.Errorf("lockout without a time: %s", body)
	}
	if status, body := login(password(2), box, "hw-2"); status != 200 {
		t.Errorf("the real box from its own address is locked out: %d %s", status, body)
	}
	if status, body := login(password(2), guesser, "hw-2"); status != 200 {
		t.Errorf("the real box behind the guesser's address is locked out: %d %s", status, body)
	}
	if status, body := login(fmt.Sprintf("%064x", 9), box, "hw-2"); status != 401 {
		t.Errorf("a wrong password from an address that never guessed: %d %s, want 401", status, body)
	}
	if status, body := (call{method: "GET", path: "/sync/v5/site", site: 3}).do(t, srv); status != 200 {
		t.Errorf("site 3 refused while site 2 is guessed at: %d %s", status, body)
	}
	for i := 0; i < 20; i++ { // unknown users cost nothing and lock nobody
		status, body := call{method: "GET", path: "/sync/v5/site", header: map[string]string{
			"Authorization": "Basic " + basic(fmt.Sprintf("nobody-%d", i), "x")}}.do(t, srv)
		checkV5Error(t, "unknown user", status, body, 401, syncapi.CodeSiteNameNotFound)
	}
	if after := fingerprint(t, path, c, rows); after != before {
		t.Errorf("guessing changed the primary:\n before %s\n after  %s", before, after)
	}
	now = now.Add(31 * time.Second)
	if status, body := login(password(2), guesser, "hw-guess"); status != 401 && status != 200 {
		t.Fatalf("after the lockout: %d %s", status, body)
	}
	for i := 0; i < 5; i++ {
		login(fmt.Sprintf("%064x", i), guesser, "hw-guess")
	}
	now = now.Add(31 * time.Second)
	status, body = login(password(2), guesser, "hw-guess")
	checkV5Error(t, "second lockout after 31s", status, body, 429, syncapi.CodeSiteAuthTimeout)
	now = now.Add(30 * time.Second)
	if status, body := login(password(2), guesser, "hw-guess"); status == 429 {
		t.Errorf("after the second lockout: %d %s", status, body)
	}
}

// TestHostile_pushFloodBounded protects the primary's memory: forty
// concurrent 15 MB pushes from one authenticated site cost the primary a
// few of them (the rest are answered 503 with Retry-After before their
// bodies are read), and the other sites are served meanwhile. It took the
// primary to 2.3 GB, linearly, with no bound on requests in flight.
// heldBody reads the first 64 KiB of rest at once and the remainder once
// held is closed.
type heldBody struct {
	rest string
	sent int
	held <-chan struct{}
}

func (b *heldBody) Read(p []byte) (int, error) {
	if b.sent >= 64<<10 {
		<-b.held
	}
	if len(b.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.rest)
	if b.sent < 64<<10 {
		n = min(n, 64<<10-b.sent)
	}
	b.rest, b.sent = b.rest[n:], b.sent+n
	return n, nil
}

func TestHostile_pushFloodBounded(t *testing.T) {
	p, base := hostileSetup(t)
	if err := p.prim.Configure(primary.Config{Sites: p.rows}); err != nil { // the default 16 MB body limit
		t.Fatal(err)
	}
	body := pushBody(rec("big-1", "stock", "big", "insert", `{"store_ID":"b","pad":"`+strings.Repeat("x", 15<<20)+`"}`))
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	var runtimeBase runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&runtimeBase)
	// Each push sends its first 64 KiB and holds the rest until release,
	// so the pushes admitted stay in flight (whatever the machine's load)
	// while the others are answered.
	var wg sync.WaitGroup
	statuses := make([]int, 40)
	release := make(chan struct{})
	var answered atomic.Int32
	for i := range statuses {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", base+"/sync/v5/queued_records", &heldBody{rest: body, held: release})
			req.ContentLength = int64(len(body))
			req.SetBasicAuth("site-2", password(2))
			req.Header.Set(syncapi.HeaderSiteUUID, "hw-2")
			req.Header.Set(syncapi.HeaderVersion, "14")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return // the primary may close a connection whose body it did not read
			}
			answered.Add(1)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
			if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After")
			}
		})
	}
	if status, b := (call{method: "GET", path: "/sync/v5/queued_records?limit=5", site: 3}).do(t, base); status != 200 {
		t.Errorf("site 3 during the flood: %d %s", status, b)
	}
	for deadline := time.Now().Add(30 * time.Second); answered.Load() < 30 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(stop)
	busy := 0
	for _, s := range statuses {
		if s == http.StatusServiceUnavailable {
			busy++
		}
	}
	grew := (peak.Load() - min(peak.Load(), runtimeBase.HeapInuse)) >> 20
	t.Logf("40 pushes of 15 MB: %d answered 503 before their body was read; the heap grew %d MiB at most", busy, grew)
	if busy < 30 {
		t.Errorf("only %d of 40 pushes were refused up front", busy)
	}
	if grew > 400 {
		t.Errorf("the heap grew %d MiB; the flood is not bounded", grew)
	}
}
