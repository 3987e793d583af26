package admin

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"syncagent/agent/passwd"
	"syncagent/agent/primary"
)

func init() { passwd.Iterations = 1000 }

// fakeFleet is a fixed site list.
type fakeFleet []primary.SiteView

func (f fakeFleet) Sites() []primary.SiteView { return f }
func (f fakeFleet) SiteDetail(id int) (primary.SiteView, bool) {
	for _, s := range f {
		if s.SyncID == id {
			s.Cycles = []primary.CycleView{{Requests: 4}}
			return s, true
		}
	}
	return primary.SiteView{}, false
}

func testServer(t *testing.T) *httptest.Server {
	t.Helper()
	h, err := passwd.Hash(passwd.SHA256Hex("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	f := fakeFleet{{SyncID: 2, User: "clinic-2", Verdict: primary.VerdictOK}, {SyncID: 3, User: "clinic-3", Verdict: primary.VerdictNever}}
	srv := httptest.NewServer(Handler(f, Config{User: "admin", PasswordHash: h, Metrics: func(w io.Writer) { io.WriteString(w, "m 1\n") }},
		slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url, user, pass string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Every admin route needs the admin credentials.
func TestAdmin_auth(t *testing.T) {
	srv := testServer(t)
	for _, path := range []string{"/", "/api/sites", "/api/sites/2", "/metrics"} {
		for _, c := range []struct{ user, pass string }{{"", ""}, {"admin", "wrong"}, {"clinic-2", "s3cret"}} {
			if status, _ := get(t, srv.URL+path, c.user, c.pass); status != http.StatusUnauthorized {
				t.Errorf("%s as %q/%q: %d, want 401", path, c.user, c.pass, status)
			}
		}
		if status, _ := get(t, srv.URL+path, "admin", "s3cret"); status != http.StatusOK {
			t.Errorf("%s as admin: %d", path, status)
		}
	}
}

func TestAdmin_routes(t *testing.T) {
	srv := testServer(t)
	_, body := get(t, srv.URL+"/api/sites", "admin", "s3cret")
	var list []primary.SiteView
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list) != 2 || list[1].Verdict != primary.VerdictNever {
		t.Fatalf("sites = %s (%v)", body, err)
	}
	_, body = get(t, srv.URL+"/api/sites/2", "admin", "s3cret")
	if !strings.Contains(body, `"requests":4`) {
		t.Errorf("detail = %s", body)
	}
	if status, _ := get(t, srv.URL+"/api/sites/99", "admin", "s3cret"); status != 404 {
		t.Errorf("unknown site: %d", status)
	}
	if _, body := get(t, srv.URL+"/", "admin", "s3cret"); !strings.Contains(body, "<table id=\"sites\">") {
		t.Error("the page is not served")
	}
	if _, body := get(t, srv.URL+"/metrics", "admin", "s3cret"); body != "m 1\n" {
		t.Errorf("metrics = %q", body)
	}
}
