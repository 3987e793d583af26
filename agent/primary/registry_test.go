package primary

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"syncagent/agent/passwd"
	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// registryServer is a primary on a real BuntDB file with one prefs row
// (site 2, store "a").
func registryServer(t *testing.T) (*Server, *queue.Central, string) {
	t.Helper()
	c, err := queue.OpenCentral(filepath.Join(t.TempDir(), "c.db"), queue.CentralOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h, err := passwd.Hash(passwd.SHA256Hex("pw"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(c, Config{Sites: []SiteRow{{SyncID: 2, User: "two", PasswordHash: h, Stores: []string{"a"}}}}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, c, h
}

func allow(by string) func(SitesPlan) (string, error) {
	return func(SitesPlan) (string, error) { return by, nil }
}

func row(id int, user, hash string, stores ...string) queue.SiteConfig {
	return queue.SiteConfig{SyncID: id, User: user, PasswordHash: hash, Stores: stores}
}

// The site table is the prefs rows and the registry's; a change is
// validated whole and names the lines of the file it came from.
func TestServer_ChangeSites(t *testing.T) {
	s, c, h := registryServer(t)
	var digest string
	note, err := s.ChangeSites(SitesEdit{Op: "import", Rows: []queue.SiteConfig{row(4, "four", h, "b"), row(3, "three", h, "a", "c")}, Lines: []int{2, 3}},
		func(p SitesPlan) (string, error) { digest = p.Digest; return "uid 0, key 9 seq 1", nil })
	if err != nil || note.Generation != 1 || note.What != "import 2 rows (2 added, 0 replaced)" {
		t.Fatalf("import = %+v, %v", note, err)
	}
	if got := fmt.Sprint(s.sites.Load().ids); got != "[2 3 4]" {
		t.Fatalf("site table %s, want the prefs row and the two imported", got)
	}
	if got := fmt.Sprint(s.sites.Load().byStore["a"]); got != "[2 3]" {
		t.Errorf("store a is active on %s, want [2 3]", got)
	}
	// The same rows in another order are the same change: one digest.
	p, err := s.PlanSites(SitesEdit{Op: "import", Rows: []queue.SiteConfig{row(3, "three", h, "a", "c"), row(4, "four", h, "b")}})
	if err != nil || p.Digest != digest {
		t.Errorf("the same rows reordered: digest %s, %v; want %s", p.Digest, err, digest)
	}
	log, err := s.SitesLog(5)
	if err != nil || len(log) != 1 || log[0].By != "uid 0, key 9 seq 1" || log[0].Digest != digest {
		t.Errorf("log = %+v, %v", log, err)
	}

	refused := []struct {
		name string
		edit SitesEdit
		want []string
	}{
		{"sync ID twice in the file", SitesEdit{Op: "import", Rows: []queue.SiteConfig{row(5, "five", h, "a"), row(5, "cinq", h, "a")}, Lines: []int{2, 7}},
			[]string{"line 7: sync_id 5 is already on line 2"}},
		{"a prefs row", SitesEdit{Op: "import", Rows: []queue.SiteConfig{row(2, "deux", h, "a")}, Lines: []int{4}}, []string{"line 4: site 2 is a [[sync_with]] row of the prefs"}},
		{"a prefs row's user", SitesEdit{Op: "add", Rows: []queue.SiteConfig{row(6, "two", h, "a")}, Lines: []int{3}}, []string{`line 3: user "two" is already used by site 2 (a [[sync_with]] row of the prefs)`}},
		{"sync ID 1", SitesEdit{Op: "add", Rows: []queue.SiteConfig{row(1, "one", h, "a")}}, []string{"above 1"}},
		{"plain SHA-256", SitesEdit{Op: "add", Rows: []queue.SiteConfig{row(6, "six", passwd.SHA256Hex("pw"), "a")}, Lines: []int{9}}, []string{"line 9: password_hash must be made by `syncagent passwd`"}},
		{"add over a registry site", SitesEdit{Op: "add", Rows: []queue.SiteConfig{row(3, "three", h, "a")}}, []string{"already in the registry"}},
		{"every bad line, not the first", SitesEdit{Op: "import", Rows: []queue.SiteConfig{row(7, "seven", "x", "a"), row(8, "eight", h)}, Lines: []int{2, 3}},
			[]string{"line 2: password_hash", "line 3: site 8 needs at least one store"}},
		{"remove a prefs row", SitesEdit{Op: "remove", Remove: []int{2}}, []string{"site 2 is a [[sync_with]] row of the prefs"}},
		{"remove an unknown site", SitesEdit{Op: "remove", Remove: []int{3, 99}}, []string{"no site 99 in the registry"}},
		{"edit a prefs row", SitesEdit{Op: "edit", Rows: []queue.SiteConfig{{SyncID: 2, Stores: []string{"z"}}}}, []string{"[[sync_with]] row of the prefs"}},
		{"bad url", SitesEdit{Op: "edit", Rows: []queue.SiteConfig{{SyncID: 3, URL: "ftp://x"}}}, []string{"http:// or https://"}},
	}
	for _, tc := range refused {
		authorised := false
		_, err := s.ChangeSites(tc.edit, func(SitesPlan) (string, error) { authorised = true; return "", nil })
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v, want an error containing %q", tc.name, err, w)
			}
		}
		if authorised {
			t.Errorf("%s: asked for a code for a change that is refused", tc.name)
		}
	}
	if g, _ := c.RegistryGeneration(); g != 1 {
		t.Fatalf("refused changes moved the registry to generation %d", g)
	}

	// A refused code writes nothing.
	if _, err := s.ChangeSites(SitesEdit{Op: "remove", Remove: []int{3}}, func(SitesPlan) (string, error) { return "", errors.New("no code") }); err == nil {
		t.Fatal("a change its authorisation refused went through")
	}
	// Edit keeps what it does not name, clears what it is told to.
	if _, err := s.ChangeSites(SitesEdit{Op: "edit", Rows: []queue.SiteConfig{{SyncID: 3, Stores: []string{"c"}, HardwareID: "hw-3"}}}, allow("t")); err != nil {
		t.Fatal(err)
	}
	if r := s.sites.Load().byID[3]; r.User != "three" || fmt.Sprint(r.Stores) != "[c]" || r.HardwareID != "hw-3" || !r.Registry {
		t.Errorf("after edit: %+v", *r)
	}
	if v, _ := s.SiteDetail(3); v.HardwareID != "hw-3" {
		t.Errorf("a hardware ID given in the registry is not shown as pre-pinned: %+v", v)
	}
	if _, err := s.ChangeSites(SitesEdit{Op: "edit", Rows: []queue.SiteConfig{{SyncID: 3}}, Clear: []string{"hardware_id"}}, allow("t")); err != nil {
		t.Fatal(err)
	}
	if r := s.sites.Load().byID[3]; r.HardwareID != "" {
		t.Errorf("--clear hardware_id kept %q", r.HardwareID)
	}
	if _, err := s.ChangeSites(SitesEdit{Op: "remove", Remove: []int{4}}, allow("t")); err != nil {
		t.Fatal(err)
	}
	if s.HasSite(4) || s.sites.Load().byStore["b"] != nil {
		t.Error("a removed site is still in the table")
	}
}

// A sync ID in both the prefs and the registry is refused, whichever came
// first.
func TestServer_prefsAndRegistryClash(t *testing.T) {
	s, _, h := registryServer(t)
	if _, err := s.ChangeSites(SitesEdit{Op: "add", Rows: []queue.SiteConfig{row(3, "three", h, "a")}}, allow("t")); err != nil {
		t.Fatal(err)
	}
	cfg := *s.cfg.Load()
	cfg.Sites = append(cfg.Sites, SiteRow{SyncID: 3, User: "trois", PasswordHash: h, Stores: []string{"a"}})
	for name, err := range map[string]error{"Verify": s.Verify(cfg), "Configure": s.Configure(cfg)} {
		if err == nil || !strings.Contains(err.Error(), "sync_id 3 is both a [[sync_with]] row of the prefs and a site of the registry") {
			t.Errorf("%s of prefs naming a registry site: %v", name, err)
		}
	}
	if !s.HasSite(3) || s.sites.Load().byID[3].User != "three" {
		t.Error("a refused prefs change altered the site table")
	}
}

// Nodes on one database agree once each has looked at the registry's
// generation: a change made on one reaches the other's table, and a node
// that validated against a generation another node has moved past writes
// nothing.
func TestServer_RefreshRegistry(t *testing.T) {
	a, c, h := registryServer(t)
	b, err := New(c, *a.cfg.Load(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ChangeSites(SitesEdit{Op: "add", Rows: []queue.SiteConfig{row(3, "three", h, "a")}}, allow("t")); err != nil {
		t.Fatal(err)
	}
	if b.HasSite(3) {
		t.Fatal("node b knew of the change before it looked")
	}
	if changed, err := b.RefreshRegistry(); !changed || err != nil || !b.HasSite(3) {
		t.Fatalf("refresh = %v, %v; b has site 3: %v", changed, err, b.HasSite(3))
	}
	if changed, err := b.RefreshRegistry(); changed || err != nil {
		t.Errorf("a refresh with nothing new = %v, %v; want false, nil", changed, err)
	}
	// a validates, then b changes the registry before a writes.
	_, err = a.ChangeSites(SitesEdit{Op: "add", Rows: []queue.SiteConfig{row(5, "five", h, "a")}}, func(SitesPlan) (string, error) {
		if _, err := b.ChangeSites(SitesEdit{Op: "add", Rows: []queue.SiteConfig{row(6, "six", h, "a")}}, allow("b")); err != nil {
			t.Fatal(err)
		}
		return "a", nil
	})
	if !errors.Is(err, queue.ErrRegistryChanged) {
		t.Fatalf("a change against a moved registry: %v, want ErrRegistryChanged", err)
	}
	if rows, gen, _ := c.Registry(); len(rows) != 2 || gen != 2 {
		t.Errorf("registry holds %d rows at generation %d, want sites 3 and 6 at 2", len(rows), gen)
	}
	// a has not looked since; its next change is made on the registry as it
	// is, and its table then has b's site too.
	if _, err := a.ChangeSites(SitesEdit{Op: "add", Rows: []queue.SiteConfig{row(7, "seven", h, "a")}}, allow("a")); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(a.sites.Load().ids); got != "[2 3 6 7]" {
		t.Errorf("a's table after its change: %s, want [2 3 6 7]", got)
	}
}

// The seed's rule in the registry's form: a URL on a site's row disables
// sync for that row, and only for it.
func TestServer_urlDisablesItsRow(t *testing.T) {
	s, _, h := registryServer(t)
	r := row(3, "three", h, "b")
	r.URL = "https://elsewhere.example.org"
	if _, err := s.ChangeSites(SitesEdit{Op: "add", Rows: []queue.SiteConfig{r}}, allow("t")); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	get := func(user string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+syncapi.PathPrefix+syncapi.EndpointSite, nil)
		req.SetBasicAuth(user, passwd.SHA256Hex("pw"))
		req.Header.Set(syncapi.HeaderSiteUUID, "hw-"+user)
		req.Header.Set(syncapi.HeaderVersion, "14")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("three"); code != http.StatusServiceUnavailable || !strings.Contains(body, syncapi.CodeSyncDisabled) {
		t.Errorf("site with a url: %d %s, want 503 %s", code, body, syncapi.CodeSyncDisabled)
	}
	if code, body := get("two"); code != http.StatusOK {
		t.Errorf("another site: %d %s, want 200", code, body)
	}
}

// The list and its filters over many sites (the bulk path) say what the
// one-by-one path says.
func TestServer_SitesMatching(t *testing.T) {
	s, _, h := registryServer(t)
	var rows []queue.SiteConfig
	for id := 3; id < 3+2*bulkViews; id++ {
		rows = append(rows, row(id, fmt.Sprintf("clinic-%d", id), h, fmt.Sprintf("s%d", id%3)))
	}
	if _, err := s.ChangeSites(SitesEdit{Op: "import", Rows: rows}, allow("t")); err != nil {
		t.Fatal(err)
	}
	ids := func(vs []SiteView) string {
		var out []string
		for _, v := range vs {
			out = append(out, fmt.Sprint(v.SyncID))
		}
		return strings.Join(out, " ")
	}
	if got := len(s.Sites()); got != 1+2*bulkViews {
		t.Fatalf("Sites lists %d, want %d", got, 1+2*bulkViews)
	}
	for _, tc := range []struct{ prefix, store, want string }{
		{"12", "", "12 120 121 122 123 124 125 126 127 128 129"},
		{"TWO", "", "2"},
		{"clinic-5", "", "5 50 51 52 53 54 55 56 57 58 59"},
		{"never", "s2", ids(s.SitesMatching("", "s2"))}, // every site is "never connected"
		{"zz", "", ""},
	} {
		if got := ids(s.SitesMatching(tc.prefix, tc.store)); got != tc.want {
			t.Errorf("SitesMatching(%q, %q) = %s, want %s", tc.prefix, tc.store, got, tc.want)
		}
	}
	want := 0
	for _, r := range rows {
		if r.Stores[0] == "s0" {
			want++
		}
	}
	if n := len(s.SitesMatching("", "s0")); n != want {
		t.Errorf("store s0 is on %d sites, want %d", n, want)
	}
	sum := s.QueueSummary(10, 5)
	if sum.Sites != 1+2*bulkViews || len(sum.Views) != 5 {
		t.Errorf("QueueSummary past 10 sites: %d sites, %d views; want %d and the 5 longest", sum.Sites, len(sum.Views), 1+2*bulkViews)
	}
}

// A registry change publishes the store rows of the stores it moves (and
// only reads those): a new store's row names its site, a store that left
// every site names the primary again, and transfers reach the new store.
func TestServer_registryPublishesStoreRows(t *testing.T) {
	s, c, h := registryServer(t)
	remote := func(store string) int {
		t.Helper()
		r, ok, err := c.Get("store", store)
		if err != nil || !ok {
			t.Fatalf("no store row for %s: %v", store, err)
		}
		return readStoreRow(r.Data).remote
	}
	if _, err := s.ChangeSites(SitesEdit{Op: "add", Rows: []queue.SiteConfig{row(3, "three", h, "new")}}, allow("t")); err != nil {
		t.Fatal(err)
	}
	if got := remote("new"); got != 3 {
		t.Errorf("store new names site %d, want 3", got)
	}
	if got := s.router.Load().names["new"]; got != "new" {
		t.Errorf("the router maps name new to %q, want the store new", got)
	}
	if got := remote("a"); got != 2 {
		t.Errorf("store a (untouched) names site %d, want 2", got)
	}
	if _, err := s.ChangeSites(SitesEdit{Op: "edit", Rows: []queue.SiteConfig{{SyncID: 3, Stores: []string{"a"}}}}, allow("t")); err != nil {
		t.Fatal(err)
	}
	if got := remote("new"); got != centralSiteID {
		t.Errorf("store new, on no site now, names site %d, want the primary (1)", got)
	}
	if got := remote("a"); got != 2 {
		t.Errorf("store a names site %d, want the lowest of its sites (2)", got)
	}
}

func TestChangedFields(t *testing.T) {
	a := queue.SiteConfig{SyncID: 3, User: "u", PasswordHash: "h", Stores: []string{"a"}}
	b := a
	b.Stores, b.URL = []string{"a", "b"}, "https://x.example.org"
	if got := strings.Join(changedFields(a, b), ","); got != "stores,url" {
		t.Errorf("changedFields = %s, want stores,url", got)
	}
	if got := changedFields(a, a); len(got) != 0 {
		t.Errorf("a row against itself: %v", got)
	}
}

// A registry row's hardware ID pre-pins the site: at first contact only
// that box is let in and pinned; once its pin is cleared, the next box is.
func TestServer_registryPrePin(t *testing.T) {
	s, c, h := registryServer(t)
	r := row(3, "three", h, "b")
	r.HardwareID = "hw-right"
	if _, err := s.ChangeSites(SitesEdit{Op: "add", Rows: []queue.SiteConfig{r}}, allow("t")); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	get := func(hwid string) int {
		req, _ := http.NewRequest("GET", srv.URL+syncapi.PathPrefix+syncapi.EndpointSite, nil)
		req.SetBasicAuth("three", passwd.SHA256Hex("pw"))
		req.Header.Set(syncapi.HeaderSiteUUID, hwid)
		req.Header.Set(syncapi.HeaderVersion, "14")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("hw-other"); code != http.StatusUnauthorized {
		t.Errorf("another box at first contact: %d, want 401", code)
	}
	if st, _ := c.Site(3); st.HardwareID != "" {
		t.Errorf("the refused box was pinned: %+v", st)
	}
	if code := get("hw-right"); code != http.StatusOK {
		t.Errorf("the pre-pinned box: %d, want 200", code)
	}
	if st, _ := c.Site(3); st.HardwareID != "hw-right" {
		t.Errorf("the pre-pinned box is not pinned: %+v", st)
	}
	if err := s.ClearPin(3); err != nil {
		t.Fatal(err)
	}
	if code := get("hw-replacement"); code != http.StatusOK {
		t.Errorf("a replacement box after clear-hwid: %d, want 200 (the pre-pin no longer holds)", code)
	}
}
