package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/passwd"
	"syncagent/agent/prefs"
	"syncagent/agent/unlock"
)

func init() {
	passwd.Iterations = 1000
	firstCycleDelay = time.Hour // tests run cycles when they ask for them
	commitWait = 5 * time.Second
	heartbeatEvery = 100 * time.Millisecond
}

const testHWID = "test-box-0001"

// box is an agent under test with its own prefs file, state and log.
type box struct {
	t      *testing.T
	dir    string
	prefs  string
	state  string
	socket string
	keys   string // vendor keyring file
	priv   []byte // the vendor's private key for that keyring
	cancel context.CancelFunc
	wait   func() error
	client *control.Client

	logMu sync.Mutex
	log   bytes.Buffer
}

// newBox prepares a state dir and a vendor keyring.
func newBox(t *testing.T) *box {
	t.Helper()
	t.Setenv("STATE_DIRECTORY", "")
	t.Setenv("RUNTIME_DIRECTORY", "")
	// Unix socket paths are short; t.TempDir() can be long.
	dir, err := os.MkdirTemp("", "sa-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b := &box{t: t, dir: dir, prefs: filepath.Join(dir, "prefs.toml"), state: filepath.Join(dir, "state"), socket: filepath.Join(dir, "ctl.sock"), keys: filepath.Join(dir, "vendor.pub")}
	pub, priv, err := unlock.Keygen(3)
	if err != nil {
		t.Fatal(err)
	}
	b.priv = priv
	if err := os.WriteFile(b.keys, []byte(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	b.client = control.NewClient(b.socket)
	t.Cleanup(func() {
		b.stop()
		if t.Failed() {
			t.Logf("agent log:\n%s", b.logged())
		}
	})
	return b
}

func (b *box) Write(p []byte) (int, error) {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	return b.log.Write(p)
}

func (b *box) logged() string {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	return b.log.String()
}

// spec is the one prefs builder of these tests: a field per setting.
type spec struct {
	version     int // 0: 1
	syncID      int
	interval    int
	requestSize string // "" for the default
	stores      []string
	stateDir    string // "": the box's
	socket      string // "": the box's
	vendorKeys  string // "": the box's; "-": none
	listen      string // the primary's address; "" on a satellite
	tlsCert     string
	tlsKey      string
	omsupplyURL string // listen.omsupply_central_server_url
	outboxMax   int
	rows        []row
	code        string
	admin       adminSpec // [admin], when user is set (prefskeys_fleet_test.go)
	textfileDir string    // [metrics] textfile_dir
	proxies     []string  // [listen] trusted_proxies (prefskeys_central_test.go)
	central     centralSpec
}

// row is one [[sync_with]] row.
type row struct {
	syncID       int
	user         string
	passwordSHA  string
	passwordHash string
	url          string
	stores       []string
	hardwareID   string
}

// render writes s through prefs.Encode, the one prefs writer, filling in
// the box's paths where s leaves them out.
func (b *box) render(s spec) string {
	p := prefs.Prefs{
		Site:    prefs.Site{SyncID: s.syncID, IntervalMinutes: s.interval, Stores: s.stores},
		Paths:   prefs.Paths{StateDir: orStr(s.stateDir, b.state), ControlSocket: orStr(s.socket, b.socket), VendorKeys: orStr(s.vendorKeys, b.keys)},
		Listen:  prefs.Listen{Address: s.listen, TLSCert: s.tlsCert, TLSKey: s.tlsKey, OmSupplyCentralServerURL: s.omsupplyURL, TrustedProxies: s.proxies},
		Central: prefs.Central{Database: s.central.database, DatabasePasswordFile: s.central.passwordFile, MaxConnections: s.central.maxConns, AuthKeyFile: s.central.authKeyFile},
		Limits:  prefs.Limits{OutboxMaxRecords: s.outboxMax},
		Admin:   prefs.Admin{Address: s.admin.address, User: s.admin.user, PasswordHash: s.admin.passwordHash, TLSCert: s.admin.tlsCert, TLSKey: s.admin.tlsKey},
		Metrics: prefs.Metrics{TextfileDir: s.textfileDir},
		Unlock:  prefs.Unlock{Code: s.code},
	}
	if p.Paths.VendorKeys == "-" {
		p.Paths.VendorKeys = ""
	}
	if s.requestSize != "" && s.requestSize != "auto" {
		n, err := strconv.Atoi(s.requestSize)
		if err != nil {
			panic("spec.requestSize: " + s.requestSize)
		}
		p.Site.RequestSize.Fixed = n
	}
	for _, r := range s.rows {
		p.SyncWith = append(p.SyncWith, prefs.Peer{SyncID: r.syncID, User: r.user, PasswordSHA256: r.passwordSHA,
			PasswordHash: r.passwordHash, URL: r.url, Stores: r.stores, HardwareID: r.hardwareID})
	}
	text := string(prefs.Encode(&p))
	if s.version > 1 { // a file from a later syncagent
		text = strings.Replace(text, fmt.Sprintf("version = %d\n", prefs.CurrentVersion), fmt.Sprintf("version = %d\n", s.version), 1)
	}
	return text
}

func orStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// satellite is a satellite's spec pointing at url.
func satellite12(url string) spec {
	return spec{syncID: 12, interval: 60, stores: []string{"a"}, rows: []row{{syncID: 1, user: "clinic", passwordSHA: passwd.SHA256Hex("pw"), url: url}}}
}

// satellitePrefs is a satellite pointing at a primary that is not there.
func (b *box) satellitePrefs(syncID, interval int, stores, extra string) string {
	s := satellite12("http://127.0.0.1:9")
	s.syncID, s.interval = syncID, interval
	text := b.render(s)
	text = strings.Replace(text, `stores = ["a"]`, "stores = ["+stores+"]", 1)
	return text + extra
}

func (b *box) write(text string) {
	b.t.Helper()
	if err := os.WriteFile(b.prefs, []byte(text), 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *box) options() Options {
	return Options{PrefsPath: b.prefs, Log: slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})),
		HardwareID: func() (string, error) { return testHWID, nil }}
}

// start runs the agent until the test ends or stop is called.
func (b *box) start() {
	b.t.Helper()
	if err := b.tryStart(); err != nil {
		b.t.Fatal(err)
	}
}

// tryStart starts the agent and returns why it did not start.
func (b *box) tryStart() error {
	b.t.Helper()
	if os.Geteuid() != 0 {
		b.t.Skip("vendor_keys must be root-owned: run the tests as root")
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := Start(ctx, b.options(), 20*time.Second)
	if err != nil {
		cancel()
		return err
	}
	b.cancel, b.wait = cancel, wait
	return nil
}

func (b *box) stop() {
	if b.cancel == nil {
		return
	}
	b.cancel()
	b.wait()
	b.cancel = nil
}

func (b *box) status() control.Status {
	b.t.Helper()
	st, err := b.client.Status(context.Background())
	if err != nil {
		b.t.Fatal(err)
	}
	return st
}

func (b *box) reload() control.Reload {
	b.t.Helper()
	r, err := b.client.Reload(context.Background())
	if err != nil {
		b.t.Fatal(err)
	}
	return r
}

func (b *box) sync() control.Cycle {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := b.client.Sync(ctx, false)
	if err != nil {
		b.t.Fatal(err)
	}
	return c
}

// code issues an unlock code from the test vendor key: bound to digest, or
// a maintenance window when digest is "".
func (b *box) code(seq uint32, digest string, expiry time.Duration) string {
	b.t.Helper()
	c := unlock.Claims{KeyNumber: 3, HardwareID: testHWID, Expiry: time.Now().Add(expiry), Seq: seq, Scope: unlock.ScopeWindow}
	if digest != "" {
		c.Scope, c.ChangeDigest = unlock.ScopeChange, digest
	}
	code, err := unlock.Issue(b.priv, c)
	if err != nil {
		b.t.Fatal(err)
	}
	return code
}

// openWindow opens a maintenance window on the running, provisioned box,
// so that the test can make locked changes without a code each.
func (b *box) openWindow(s spec) {
	b.t.Helper()
	s.code = b.code(1, "", 2*time.Hour)
	b.write(b.render(s))
	if r := b.reload(); r.State != "ok" {
		b.t.Fatalf("window code refused: %s", r.State)
	}
	if b.status().Prefs.WindowUntil.IsZero() {
		b.t.Fatal("no window open")
	}
}

// eventually polls cond until it holds or 10s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func unlockSection(code string) string { return "[unlock]\ncode = \"" + code + "\"\n" }

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// fakePrimary is a sync API v5 primary with no data that records what each
// request carried: who called (user, password), where, with what limit. It
// accepts one user and password; anything else is refused as the real
// primary refuses it.
type fakePrimary struct {
	srv *httptest.Server

	mu       sync.Mutex
	user, pw string
	calls    []fakeCall
	status   int // when set, every request gets this status with a v5 error body
}

type fakeCall struct {
	user, pw, path, limit string
}

func newFakePrimary(t *testing.T) *fakePrimary {
	f := &fakePrimary{user: "clinic", pw: passwd.SHA256Hex("pw")}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakePrimary) url() string { return f.srv.URL }

func (f *fakePrimary) serve(w http.ResponseWriter, r *http.Request) {
	user, pw, _ := r.BasicAuth()
	io.Copy(io.Discard, r.Body)
	f.mu.Lock()
	f.calls = append(f.calls, fakeCall{user: user, pw: pw, path: r.URL.Path, limit: r.URL.Query().Get("limit")})
	wantUser, wantPW, status := f.user, f.pw, f.status
	f.mu.Unlock()
	fail := func(status int, code string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"code":%q,"message":"fake primary","data":null}}`, code)
	}
	switch {
	case status != 0:
		fail(status, "storage_error") // a v5 error, not "busy" (which a satellite waits out)
		return
	case user != wantUser:
		fail(http.StatusUnauthorized, "site_name_not_found")
		return
	case pw != wantPW:
		fail(http.StatusUnauthorized, "site_incorrect_password")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	var body any
	switch endpoint := strings.TrimPrefix(r.URL.Path, "/sync/v5/"); {
	case endpoint == "site":
		body = map[string]any{"id": "s12", "siteId": 12, "initialisationStatus": "completed", "isOmSupplyCentralServer": false, "omSupplyCentralServerUrl": "", "mSupplyCentralSiteId": 1}
	case endpoint == "site_status":
		body = map[string]any{"code": "idle", "message": "", "data": nil}
	case endpoint == "initialise":
		body = map[string]any{"queueLength": 0}
	case endpoint == "central_records":
		body = map[string]any{"maxCursor": 0, "data": []any{}}
	case endpoint == "queued_records" && r.Method == http.MethodGet:
		body = map[string]any{"queueLength": 0, "data": []any{}}
	case endpoint == "queued_records":
		body = map[string]any{"integrationStarted": true}
	case endpoint == "acknowledged_records":
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		fail(http.StatusNotFound, "not_found")
		return
	}
	json.NewEncoder(w).Encode(body)
}

// since returns the calls after the first n, and the total.
func (f *fakePrimary) since(n int) ([]fakeCall, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeCall(nil), f.calls[min(n, len(f.calls)):]...), len(f.calls)
}

func (f *fakePrimary) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakePrimary) accept(user, pw string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.user, f.pw = user, pw
}

func (f *fakePrimary) answer(status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = status
}

// notifySocket is a NOTIFY_SOCKET that keeps the STATUS= lines sent to it.
type notifySocket struct {
	mu    sync.Mutex
	lines []string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "sa-notify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	n := &notifySocket{}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(buf[:k]), "\n") {
				if s, ok := strings.CutPrefix(line, "STATUS="); ok {
					n.mu.Lock()
					n.lines = append(n.lines, s)
					n.mu.Unlock()
				}
			}
		}
	}()
	return n
}

func (n *notifySocket) last() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.lines) == 0 {
		return ""
	}
	return n.lines[len(n.lines)-1]
}

// TestStart_reportsFailure protects Start's other side: an agent that cannot
// start returns its reason at once instead of leaving the caller waiting.
func TestStart_reportsFailure(t *testing.T) {
	wait, err := Start(context.Background(), Options{PrefsPath: filepath.Join(t.TempDir(), "none.toml"),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), HardwareID: func() (string, error) { return testHWID, nil }}, 20*time.Second)
	if err == nil || !strings.Contains(err.Error(), "no prefs file") {
		t.Fatalf("err = %v, want the missing prefs file", err)
	}
	if werr := wait(); werr == nil {
		t.Error("wait reported success for an agent that never started")
	}
}
