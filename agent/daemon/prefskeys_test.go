package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/passwd"
	"syncagent/agent/prefs"
	"syncagent/agent/syncapi"
	"syncagent/agent/unlock"
)

// keyCase is one prefs setting edited on a running agent: the reload must
// say want ("ok", "restart needed" or "rejected"), and for "ok" the agent
// must then behave by the new value (check).
type keyCase struct {
	setting string
	edit    func(s *spec)
	want    string
	check   func(t *testing.T)
}

// runKeyCases edits base by each case on the running box b (a window open
// when it is provisioned), checks, and goes back to base. It fails when the
// cases miss a setting of prefs.Settings: every setting must either apply
// live or say restart needed (or be refused for this role).
func runKeyCases(t *testing.T, b *box, base spec, cases []keyCase, restore func()) {
	t.Helper()
	var covered []string
	for _, c := range cases {
		covered = append(covered, c.setting)
		t.Run(c.setting, func(t *testing.T) {
			s := base
			s.rows = slices.Clone(base.rows)
			c.edit(&s)
			b.write(b.render(s))
			r := b.reload()
			if !strings.HasPrefix(r.State, c.want) {
				t.Fatalf("reload after editing %s: %q, want %q", c.setting, r.State, c.want)
			}
			if c.want == "restart needed" && !contains(r.State, "systemctl restart") {
				t.Errorf("restart needed without saying how: %q", r.State)
			}
			if c.want != "ok" && b.status().Prefs.Digest != b.digest(base) {
				t.Errorf("a %s change that was not applied changed the running prefs", c.want)
			}
			if c.check != nil {
				c.check(t)
			}
		})
		if restore != nil {
			restore()
		}
		b.write(b.render(base))
		if r := b.reload(); r.State != "ok" {
			t.Fatalf("back to the base prefs after %s: %s", c.setting, r.State)
		}
	}
	for _, s := range prefs.Settings {
		if !slices.Contains(covered, s) {
			t.Errorf("no case for setting %s", s)
		}
	}
}

func (b *box) digest(s spec) string {
	b.t.Helper()
	return digestOf(b.t, b.render(s))
}

// otherKeyring writes a keyring with vendor key 5 and returns its path and
// a code signer for it.
func otherKeyring(t *testing.T, dir string) (string, []byte) {
	pub, priv, err := unlock.Keygen(5)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "vendor-5.pub")
	if err := os.WriteFile(path, []byte(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, priv
}

// checkKeyringInForce asserts that codes are verified with key 5's keyring
// (named by vendor_keys), and no longer with key 3's.
func checkKeyringInForce(t *testing.T, b *box, priv5 []byte) {
	t.Helper()
	ctx := context.Background()
	onDisk, _ := prefs.Load(b.prefs)
	code5, err := unlock.Issue(priv5, unlock.Claims{KeyNumber: 5, HardwareID: testHWID, Expiry: time.Now().Add(time.Hour), Seq: 50, Scope: unlock.ScopeWindow})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.client.CheckCode(ctx, code5); err != nil {
		t.Errorf("a code of the newly named keyring: %v", err)
	}
	if err := b.client.CheckCode(ctx, b.code(60, "", time.Hour)); err == nil || !contains(err.Error(), "does not know") {
		t.Errorf("a code of the keyring no longer named: %v", err)
	}
	_ = onDisk
}

// TestPrefsKeys_satellite protects "every accepted change applies" on a
// satellite: for each prefs setting, after a reload the running agent
// behaves by the new value, or says restart needed. The primary's URL, user
// and password used to be accepted and shown but not used until a restart.
func TestPrefsKeys_satellite(t *testing.T) {
	b := newBox(t)
	a, other := newFakePrimary(t), newFakePrimary(t)
	base := satellite12(a.url())
	b.write(b.render(base))
	b.start()
	b.openWindow(base)
	keys5, priv5 := otherKeyring(t, b.dir)
	ctx := context.Background()
	callsAfterSync := func(f *fakePrimary) []fakeCall {
		n := f.count()
		if c := b.sync(); c.Error != "" {
			t.Fatalf("sync: %s", c.Error)
		}
		calls, _ := f.since(n)
		return calls
	}
	cases := []keyCase{
		{"version", func(s *spec) { s.version = 2 }, "rejected", nil},
		{"site.sync_id", func(s *spec) { s.syncID = 13 }, "restart needed", func(t *testing.T) {
			if b.status().SyncID != 12 {
				t.Error("sync_id changed while running")
			}
		}},
		{"site.interval_minutes", func(s *spec) { s.interval = 7 }, "ok", func(t *testing.T) {
			st := b.status()
			if st.Interval != "7m0s" || st.NextSync.After(time.Now().Add(7*time.Minute)) || st.NextSync.IsZero() {
				t.Errorf("interval %s, next sync %v; want 7m and within 7m", st.Interval, st.NextSync)
			}
		}},
		{"site.request_size", func(s *spec) { s.requestSize = "7" }, "ok", func(t *testing.T) {
			for _, c := range callsAfterSync(a) {
				if strings.HasSuffix(c.path, "central_records") && c.limit != "7" {
					t.Errorf("pulled with limit %s, want the fixed request_size 7", c.limit)
				}
			}
		}},
		{"site.stores", func(s *spec) { s.stores = []string{"a", "b"} }, "ok", func(t *testing.T) {
			if _, err := b.client.PutRecord(ctx, "stock", "in-b", json.RawMessage(`{"store_ID":"b"}`)); err != nil {
				t.Errorf("write to the added store: %v", err)
			}
		}},
		{"paths.state_dir", func(s *spec) { s.stateDir = filepath.Join(b.dir, "other-state") }, "restart needed", nil},
		{"paths.control_socket", func(s *spec) { s.socket = filepath.Join(b.dir, "other.sock") }, "restart needed", nil},
		{"paths.vendor_keys", func(s *spec) { s.vendorKeys = keys5 }, "ok", func(t *testing.T) { checkKeyringInForce(t, b, priv5) }},
		{"listen.address", func(s *spec) { s.listen = "127.0.0.1:2048" }, "rejected", nil},
		{"listen.tls_cert", func(s *spec) { s.listen, s.tlsCert, s.tlsKey = "127.0.0.1:2048", "/c.pem", "/k.pem" }, "rejected", nil},
		{"listen.tls_key", func(s *spec) { s.listen, s.tlsCert, s.tlsKey = "127.0.0.1:2048", "/c.pem", "/k.pem" }, "rejected", nil},
		{"listen.omsupply_central_server_url", func(s *spec) { s.listen, s.omsupplyURL = "127.0.0.1:2048", "https://om.example" }, "rejected", nil},
		{"limits.outbox_max_records", func(s *spec) { s.outboxMax = 1 }, "ok", func(t *testing.T) {
			callsAfterSync(a) // the outbox is empty now
			var ce *control.Error
			if _, err := b.client.PutRecord(ctx, "stock", "l1", json.RawMessage(`{"store_ID":"a"}`)); err != nil {
				t.Fatal(err)
			}
			if _, err := b.client.PutRecord(ctx, "stock", "l2", json.RawMessage(`{"store_ID":"a"}`)); !errors.As(err, &ce) || ce.Status != http.StatusInsufficientStorage {
				t.Errorf("second write with outbox_max_records = 1: %v", err)
			}
			callsAfterSync(a)
		}},
		{"sync_with", func(s *spec) {
			s.rows = append(s.rows, row{syncID: 2, user: "x", passwordSHA: passwd.SHA256Hex("x"), url: "http://x"})
		}, "rejected", nil},
		{"sync_with.user", func(s *spec) { s.rows[0].user = "clinic-renamed"; a.accept("clinic-renamed", passwd.SHA256Hex("pw")) }, "ok", func(t *testing.T) {
			for _, c := range callsAfterSync(a) {
				if c.user != "clinic-renamed" {
					t.Errorf("%s called as %q, want the new user", c.path, c.user)
				}
			}
			if st := b.status(); st.PrimaryUser != "clinic-renamed" {
				t.Errorf("status shows user %q", st.PrimaryUser)
			}
			if chk, _ := b.client.Check(ctx); chk.User != "clinic-renamed" || chk.Error != "" {
				t.Errorf("check as %q: %s", chk.User, chk.Error)
			}
		}},
		{"sync_with.password_sha256", func(s *spec) {
			s.rows[0].passwordSHA = passwd.SHA256Hex("pw2")
			a.accept("clinic", passwd.SHA256Hex("pw2"))
		}, "ok", func(t *testing.T) {
			for _, c := range callsAfterSync(a) {
				if c.pw != passwd.SHA256Hex("pw2") {
					t.Errorf("%s called with the old password", c.path)
				}
			}
		}},
		{"sync_with.url", func(s *spec) { s.rows[0].url = other.url() }, "ok", func(t *testing.T) {
			before := a.count()
			if len(callsAfterSync(other)) == 0 {
				t.Error("the new primary URL got no request")
			}
			if a.count() != before {
				t.Error("the old primary URL still got requests")
			}
			st := b.status()
			sites, _ := b.client.Sites(ctx)
			chk, _ := b.client.Check(ctx)
			if st.PrimaryURL != other.url() || len(sites) != 1 || sites[0].URL != other.url() || chk.URL != other.url() {
				t.Errorf("status %q, sites %+v, check %q; want %q everywhere", st.PrimaryURL, sites, chk.URL, other.url())
			}
		}},
		{"sync_with.password_hash", func(s *spec) { s.rows[0].passwordHash = mustHash(t, "pw") }, "rejected", nil},
		{"sync_with.stores", func(s *spec) { s.rows[0].stores = []string{"a"} }, "rejected", nil},
		{"sync_with.hardware_id", func(s *spec) { s.rows[0].hardwareID = "hw" }, "rejected", nil},
		{"unlock.code", func(s *spec) { s.code = b.code(2, "", time.Hour) }, "ok", func(t *testing.T) {
			if st := b.status(); st.Prefs.State != "ok" || st.Prefs.WindowUntil.IsZero() {
				t.Errorf("prefs %+v", st.Prefs)
			}
		}},
	}
	cases = append(cases, satelliteFleetKeyCases(t, b)...)
	cases = append(cases, centralKeyCases("rejected", "127.0.0.1:2048")...)
	runKeyCases(t, b, base, cases, func() { a.accept("clinic", passwd.SHA256Hex("pw")) })
}

func mustHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := passwd.Hash(passwd.SHA256Hex(pw))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// freeAddr is a loopback address nobody listens on (the primary's listener
// needs a known port for the test to call it).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestPrefsKeys_primary protects "every accepted change applies" on the
// primary: site rows change what it accepts at once; its listener needs a
// restart.
func TestPrefsKeys_primary(t *testing.T) {
	b := newBox(t)
	addr := freeAddr(t)
	base := spec{syncID: 1, interval: 10, stores: []string{"central"}, listen: addr, rows: []row{
		{syncID: 12, user: "clinic-12", passwordHash: mustHash(t, "pw"), stores: []string{"a"}},
		{syncID: 14, user: "clinic-14", passwordHash: mustHash(t, "pw"), stores: []string{"b"}},
	}, admin: adminSpec{address: freeAddr(t), user: "admin", passwordHash: mustHash(t, "adminpw")}}
	b.write(b.render(base))
	b.start()
	b.openWindow(base)
	keys5, priv5 := otherKeyring(t, b.dir)
	ctx := context.Background()
	site := func(user, pw string) error {
		c := &syncapi.Client{BaseURL: "http://" + addr, User: user, PasswordSHA256: passwd.SHA256Hex(pw), HardwareID: "hw-caller"}
		_, err := c.Site(ctx)
		return err
	}
	siteRow := func(id int) (control.Site, bool) {
		sites, err := b.client.Sites(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sites {
			if s.SyncID == id {
				return s, true
			}
		}
		return control.Site{}, false
	}
	if err := site("clinic-12", "pw"); err != nil {
		t.Fatalf("the base site row does not authenticate: %v", err)
	}
	digestIs := func(s spec) func(*testing.T) {
		return func(t *testing.T) {
			if st := b.status(); st.Prefs.Digest != b.digest(s) {
				t.Error("the running prefs are not the edited ones")
			}
		}
	}
	edited := func(f func(*spec)) spec {
		s := base
		s.rows = slices.Clone(base.rows)
		f(&s)
		return s
	}
	storesEdit := func(s *spec) { s.stores = []string{"central", "more"} }
	outboxEdit := func(s *spec) { s.outboxMax = 5 }
	cases := []keyCase{
		{"version", func(s *spec) { s.version = 2 }, "rejected", nil},
		{"site.sync_id", func(s *spec) { s.syncID = 0 }, "restart needed", nil},
		{"site.interval_minutes", func(s *spec) { s.interval = 3 }, "ok", func(t *testing.T) {
			if b.status().Interval != "3m0s" {
				t.Error("interval not applied")
			}
		}},
		{"site.request_size", func(s *spec) { s.requestSize = "9" }, "ok", func(t *testing.T) {
			if b.status().RequestSize != "9" {
				t.Error("request size not shown")
			}
		}},
		{"site.stores", storesEdit, "ok", digestIs(edited(storesEdit))},
		{"paths.state_dir", func(s *spec) { s.stateDir = filepath.Join(b.dir, "other") }, "restart needed", nil},
		{"paths.control_socket", func(s *spec) { s.socket = filepath.Join(b.dir, "o.sock") }, "restart needed", nil},
		{"paths.vendor_keys", func(s *spec) { s.vendorKeys = keys5 }, "ok", func(t *testing.T) { checkKeyringInForce(t, b, priv5) }},
		{"listen.address", func(s *spec) { s.listen = freeAddr(t) }, "restart needed", func(t *testing.T) {
			if err := site("clinic-12", "pw"); err != nil {
				t.Errorf("the primary stopped serving where it listens: %v", err)
			}
		}},
		{"listen.tls_cert", func(s *spec) { s.tlsCert, s.tlsKey = "/c.pem", "/k.pem" }, "restart needed", nil},
		{"listen.tls_key", func(s *spec) { s.tlsCert, s.tlsKey = "/c.pem", "/k.pem" }, "restart needed", nil},
		{"listen.omsupply_central_server_url", func(s *spec) { s.omsupplyURL = "https://om.example:8000" }, "ok", func(t *testing.T) {
			c := &syncapi.Client{BaseURL: "http://" + addr, User: "clinic-12", PasswordSHA256: passwd.SHA256Hex("pw"), HardwareID: "hw-caller"}
			if info, err := c.Site(ctx); err != nil || info.OmSupplyCentralServerURL != "https://om.example:8000" {
				t.Errorf("GET site: %+v, %v; want omSupplyCentralServerUrl https://om.example:8000", info, err)
			}
		}},
		{"limits.outbox_max_records", outboxEdit, "ok", digestIs(edited(outboxEdit))},
		{"sync_with", func(s *spec) {
			s.rows = append(s.rows[:1], row{syncID: 13, user: "clinic-13", passwordHash: mustHash(t, "pw13"), stores: []string{"c"}})
		}, "ok", func(t *testing.T) {
			if err := site("clinic-13", "pw13"); err != nil {
				t.Errorf("the added site is refused: %v", err)
			}
			if _, ok := siteRow(14); ok {
				t.Error("the removed site is still listed")
			}
			if err := site("clinic-14", "pw"); err == nil {
				t.Error("the removed site is still served")
			}
		}},
		{"sync_with.user", func(s *spec) { s.rows[0].user = "Clinic-Twelve" }, "ok", func(t *testing.T) {
			if err := site("Clinic-Twelve", "pw"); err != nil {
				t.Errorf("the new user name is refused: %v", err)
			}
			if err := site("clinic-12", "pw"); err == nil {
				t.Error("the old user name is still accepted")
			}
		}},
		{"sync_with.password_hash", func(s *spec) { s.rows[0].passwordHash = mustHash(t, "new") }, "ok", func(t *testing.T) {
			if err := site("clinic-12", "new"); err != nil {
				t.Errorf("the new password is refused: %v", err)
			}
		}},
		{"sync_with.password_sha256", func(s *spec) { s.rows[0].passwordSHA = passwd.SHA256Hex("pw") }, "rejected", nil},
		{"sync_with.url", func(s *spec) { s.rows[0].url = "https://old-central.example.org" }, "ok", func(t *testing.T) {
			st := b.status()
			s, _ := siteRow(12)
			if !contains(st.DisabledReason, "url") || s.URL != "https://old-central.example.org" {
				t.Errorf("disabled %q, sites URL %q", st.DisabledReason, s.URL)
			}
			if err := site("clinic-14", "pw"); err == nil {
				t.Error("sync still served with a URL row")
			}
		}},
		{"sync_with.stores", func(s *spec) { s.rows[0].stores = []string{"a", "z"} }, "ok", func(t *testing.T) {
			if s, _ := siteRow(12); !slices.Equal(s.Stores, []string{"a", "z"}) {
				t.Errorf("stores %v", s.Stores)
			}
		}},
		{"sync_with.hardware_id", func(s *spec) { s.rows[1].hardwareID = "pre-pinned-14" }, "ok", func(t *testing.T) {
			if s, _ := siteRow(14); s.HardwareID != "pre-pinned-14" {
				t.Errorf("site 14 pinned to %q", s.HardwareID)
			}
			if err := site("clinic-14", "pw"); err == nil {
				t.Error("another box is accepted as the pre-pinned site")
			}
		}},
		{"unlock.code", func(s *spec) { s.code = b.code(2, "", time.Hour) }, "ok", nil},
	}
	cases = append(cases, primaryFleetKeyCases(t, b, base)...)
	cases = append(cases, centralKeyCases("restart needed", "")...)
	cases = append(cases, trustedProxiesCase(t, addr))
	runKeyCases(t, b, base, cases, nil)
}

// TestPrefsKeys_disabled protects the same on a box with sync disabled:
// everything but its identity, paths and listener applies at once.
func TestPrefsKeys_disabled(t *testing.T) {
	b := newBox(t)
	base := spec{syncID: 0, interval: 10, stores: []string{"a"}}
	b.write(b.render(base))
	b.start()
	keys5, priv5 := otherKeyring(t, b.dir)
	ctx := context.Background()
	rowEdit := func(f func(r *row)) func(s *spec) {
		return func(s *spec) {
			r := row{syncID: 1, user: "u", passwordSHA: passwd.SHA256Hex("pw"), url: "http://central"}
			f(&r)
			s.rows = []row{r}
		}
	}
	sitesShow := func(want func(control.Site) bool) func(t *testing.T) {
		return func(t *testing.T) {
			sites, err := b.client.Sites(ctx)
			if err != nil || len(sites) != 1 || !want(sites[0]) {
				t.Errorf("sites %+v, %v", sites, err)
			}
		}
	}
	cases := []keyCase{
		{"version", func(s *spec) { s.version = 2 }, "rejected", nil},
		{"site.sync_id", func(s *spec) {
			s.syncID = 12
			s.rows = []row{{syncID: 1, user: "u", passwordSHA: passwd.SHA256Hex("pw"), url: "http://c"}}
		}, "restart needed", nil},
		{"site.interval_minutes", func(s *spec) { s.interval = 4 }, "ok", func(t *testing.T) {
			if b.status().Interval != "4m0s" {
				t.Error("interval not shown")
			}
		}},
		{"site.request_size", func(s *spec) { s.requestSize = "3" }, "ok", func(t *testing.T) {
			if b.status().RequestSize != "3" {
				t.Error("request size not shown")
			}
		}},
		{"site.stores", func(s *spec) { s.stores = []string{"a", "b"} }, "ok", nil},
		{"paths.state_dir", func(s *spec) { s.stateDir = filepath.Join(b.dir, "o") }, "restart needed", nil},
		{"paths.control_socket", func(s *spec) { s.socket = filepath.Join(b.dir, "o.sock") }, "restart needed", nil},
		{"paths.vendor_keys", func(s *spec) { s.vendorKeys = keys5 }, "ok", nil},
		{"listen.address", func(s *spec) { s.listen = "127.0.0.1:1" }, "restart needed", nil},
		{"listen.tls_cert", func(s *spec) { s.listen, s.tlsCert, s.tlsKey = "127.0.0.1:1", "/c.pem", "/k.pem" }, "restart needed", nil},
		{"listen.tls_key", func(s *spec) { s.listen, s.tlsCert, s.tlsKey = "127.0.0.1:1", "/c.pem", "/k.pem" }, "restart needed", nil},
		{"listen.omsupply_central_server_url", func(s *spec) { s.listen, s.omsupplyURL = "127.0.0.1:1", "https://om.example" }, "restart needed", nil},
		{"limits.outbox_max_records", func(s *spec) { s.outboxMax = 1 }, "ok", func(t *testing.T) {
			var ce *control.Error
			_, err1 := b.client.PutRecord(ctx, "t", "r1", json.RawMessage(`{"x":1}`))
			_, err2 := b.client.PutRecord(ctx, "t", "r2", json.RawMessage(`{"x":1}`))
			if err1 == nil && !errors.As(err2, &ce) {
				t.Errorf("two writes with outbox_max_records = 1: %v, %v", err1, err2)
			}
		}},
		{"sync_with", rowEdit(func(*row) {}), "ok", sitesShow(func(s control.Site) bool { return s.User == "u" })},
		{"sync_with.user", rowEdit(func(r *row) { r.user = "v" }), "ok", sitesShow(func(s control.Site) bool { return s.User == "v" })},
		{"sync_with.password_sha256", rowEdit(func(r *row) { r.passwordSHA = passwd.SHA256Hex("x") }), "ok", nil},
		{"sync_with.password_hash", rowEdit(func(r *row) { r.passwordSHA, r.passwordHash = "", mustHash(t, "x") }), "ok", nil},
		{"sync_with.url", rowEdit(func(r *row) { r.url = "http://elsewhere" }), "ok", sitesShow(func(s control.Site) bool { return s.URL == "http://elsewhere" })},
		{"sync_with.stores", rowEdit(func(r *row) { r.stores = []string{"q"} }), "ok", sitesShow(func(s control.Site) bool { return slices.Equal(s.Stores, []string{"q"}) })},
		{"sync_with.hardware_id", rowEdit(func(r *row) { r.hardwareID = "hw-x" }), "ok", nil},
		{"unlock.code", func(s *spec) { s.code = b.code(2, "", time.Hour) }, "ok", nil},
	}
	_ = priv5
	cases = append(cases, disabledFleetKeyCases(t, b)...)
	cases = append(cases, centralKeyCases("restart needed", "127.0.0.1:1")...)
	runKeyCases(t, b, base, cases, nil)
}
