package daemon

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// adminSpec is the [admin] table of a spec.
type adminSpec struct {
	address, user, passwordHash, tlsCert, tlsKey string
}

// adminGet calls the admin listener at addr as user with password pw.
func adminGet(t *testing.T, addr, path, user, pw string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.SetBasicAuth(user, pw)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitTextfile waits for dir/syncagent.prom to hold want.
func waitTextfile(t *testing.T, dir, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "syncagent.prom"))
		if err == nil && strings.Contains(string(b), want) {
			if strings.Contains(string(b), "go_goroutines") {
				t.Error("the textfile repeats node_exporter's own go_* figures")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/syncagent.prom lacks %q (%v):\n%.2000s", dir, want, err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// textfileCase is metrics.textfile_dir edited on any role: the next write
// goes to the new directory, with want in it.
func textfileCase(b *box, want string) keyCase {
	dir := filepath.Join(b.dir, "textfile")
	os.MkdirAll(dir, 0o755)
	return keyCase{"metrics.textfile_dir", func(s *spec) { s.textfileDir = dir }, "ok", func(t *testing.T) { waitTextfile(t, dir, want) }}
}

// A satellite has no admin listener: [admin] is refused there.
func satelliteFleetKeyCases(t *testing.T, b *box) []keyCase {
	with := func(f func(a *adminSpec)) func(s *spec) {
		return func(s *spec) {
			s.admin = adminSpec{address: "127.0.0.1:1", user: "admin", passwordHash: mustHash(t, "adminpw")}
			f(&s.admin)
		}
	}
	return []keyCase{
		{"admin.address", with(func(*adminSpec) {}), "rejected", nil},
		{"admin.user", with(func(a *adminSpec) { a.user = "other" }), "rejected", nil},
		{"admin.password_hash", with(func(*adminSpec) {}), "rejected", nil},
		{"admin.tls_cert", with(func(a *adminSpec) { a.tlsCert, a.tlsKey = "/c.pem", "/k.pem" }), "rejected", nil},
		{"admin.tls_key", with(func(a *adminSpec) { a.tlsCert, a.tlsKey = "/c.pem", "/k.pem" }), "rejected", nil},
		textfileCase(b, "syncagent_outbox_records"),
	}
}

// On the primary the admin credentials apply at once; its address and
// certificate at a restart (the listener keeps serving where it is).
func primaryFleetKeyCases(t *testing.T, b *box, base spec) []keyCase {
	addr := base.admin.address
	serves := func(user, pw string) func(t *testing.T) {
		return func(t *testing.T) {
			if code, body := adminGet(t, addr, "/api/sites", user, pw); code != 200 || !strings.Contains(body, `"syncId":12`) {
				t.Errorf("admin /api/sites as %s: %d %.200s", user, code, body)
			}
		}
	}
	return []keyCase{
		{"admin.address", func(s *spec) { s.admin.address = freeAddr(t) }, "restart needed", serves("admin", "adminpw")},
		{"admin.user", func(s *spec) { s.admin.user = "central" }, "ok", func(t *testing.T) {
			serves("central", "adminpw")(t)
			if code, _ := adminGet(t, addr, "/api/sites", "admin", "adminpw"); code != http.StatusUnauthorized {
				t.Errorf("the old admin user: %d, want 401", code)
			}
		}},
		{"admin.password_hash", func(s *spec) { s.admin.passwordHash = mustHash(t, "newpw") }, "ok", func(t *testing.T) {
			serves("admin", "newpw")(t)
			if code, _ := adminGet(t, addr, "/", "admin", "adminpw"); code != http.StatusUnauthorized {
				t.Errorf("the old admin password: %d, want 401", code)
			}
		}},
		{"admin.tls_cert", func(s *spec) { s.admin.tlsCert, s.admin.tlsKey = "/c.pem", "/k.pem" }, "restart needed", nil},
		{"admin.tls_key", func(s *spec) { s.admin.tlsCert, s.admin.tlsKey = "/c.pem", "/k.pem" }, "restart needed", nil},
		textfileCase(b, `syncagent_site_queue_records{site="12"}`),
	}
}

// A box with sync disabled uses none of [admin]: every change applies (to
// nothing) at once.
func disabledFleetKeyCases(t *testing.T, b *box) []keyCase {
	with := func(f func(a *adminSpec)) func(s *spec) {
		return func(s *spec) {
			s.admin = adminSpec{address: "127.0.0.1:1", user: "admin", passwordHash: mustHash(t, "adminpw")}
			f(&s.admin)
		}
	}
	return []keyCase{
		{"admin.address", with(func(*adminSpec) {}), "ok", nil},
		{"admin.user", with(func(a *adminSpec) { a.user = "other" }), "ok", nil},
		{"admin.password_hash", with(func(*adminSpec) {}), "ok", nil},
		{"admin.tls_cert", with(func(a *adminSpec) { a.tlsCert, a.tlsKey = "/c.pem", "/k.pem" }), "ok", nil},
		{"admin.tls_key", with(func(a *adminSpec) { a.tlsCert, a.tlsKey = "/c.pem", "/k.pem" }), "ok", nil},
		textfileCase(b, "syncagent_datafile_records"),
	}
}
