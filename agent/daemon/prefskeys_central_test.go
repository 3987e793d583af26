package daemon

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"syncagent/agent/passwd"
	"syncagent/agent/syncapi"
)

// centralSpec is the [central] table of a spec.
type centralSpec struct {
	database, passwordFile, authKeyFile string
	maxConns                            int
}

// centralKeyCases edit [central], which no running agent applies: where
// the primary's state lives, and the key its nodes share, are chosen at
// start (want: "restart needed", or "rejected" on a satellite). With
// listen set, trusted_proxies too (written in a [listen] at that address).
func centralKeyCases(want, listen string) []keyCase {
	const db = "postgres://syncagent@db.example.org/syncagent"
	cases := []keyCase{
		{"central.database", func(s *spec) { s.central.database = db }, want, nil},
		{"central.database_password_file", func(s *spec) { s.central = centralSpec{database: db, passwordFile: "/etc/syncagent/db-password"} }, want, nil},
		{"central.max_connections", func(s *spec) { s.central = centralSpec{database: db, maxConns: 4} }, want, nil},
		{"central.auth_key_file", func(s *spec) { s.central.authKeyFile = "/etc/syncagent/auth.key" }, want, nil},
	}
	if listen != "" {
		cases = append(cases, keyCase{"listen.trusted_proxies", func(s *spec) { s.listen, s.proxies = listen, []string{"10.0.0.0/8"} }, want, nil})
	}
	return cases
}

// trustedProxiesCase: on the primary trusted_proxies applies at once. Once
// loopback is a trusted proxy, the lockout counts by the X-Forwarded-For
// address, so guesses forwarded for one address leave the site's logins
// forwarded for another alone.
func trustedProxiesCase(t *testing.T, addr string) keyCase {
	call := func(pw, forwardedFor string) int {
		req, _ := http.NewRequest("GET", "http://"+addr+syncapi.PathPrefix+syncapi.EndpointSite, nil)
		req.SetBasicAuth("clinic-12", passwd.SHA256Hex(pw))
		req.Header.Set(syncapi.HeaderSiteUUID, "hw-caller")
		req.Header.Set(syncapi.HeaderVersion, fmt.Sprint(syncapi.APIVersion))
		req.Header.Set("X-Forwarded-For", forwardedFor)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	return keyCase{"listen.trusted_proxies", func(s *spec) { s.proxies = []string{"127.0.0.1"} }, "ok", func(t *testing.T) {
		for range 6 {
			call("wrong", "203.0.113.9")
		}
		if got := call("pw", "203.0.113.9"); got != http.StatusTooManyRequests {
			t.Errorf("the guessing address, right password: %d, want 429 (locked out)", got)
		}
		if got := call("pw", "198.51.100.4"); got != http.StatusOK {
			t.Errorf("another forwarded address, right password: %d, want 200 (the lockout is per forwarded address)", got)
		}
	}}
}
