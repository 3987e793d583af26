package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"

	"syncagent/agent/cli"
	"syncagent/agent/control"
	"syncagent/agent/daemon"
	"syncagent/agent/passwd"
	"syncagent/agent/prefs"
	"syncagent/agent/version"
	"syncagent/testtools/linkbench"
)

// The fleet view end to end, through the daemon's own wiring: a satellite
// on an emulated 2G link (toxiproxy: the linkbench 2g profile's round trip
// and bandwidth) reports its health and answers a diagnostics request; the
// primary lists every configured site with a true verdict (one that never
// connected included), shows one site's cycles, keeps the bundle, and
// serves its metrics on the admin listener.
func TestFleet_endToEndOver2G(t *testing.T) {
	var g2 linkbench.Profile
	for _, p := range linkbench.Builtin() {
		if p.Name == "2g" {
			g2 = p
		}
	}
	adminAddr := freeLoopback(t)
	var proxy *toxiproxy.Proxy
	set := newAgentsWith(t, nil, nil, func(s *agentSet, a *agent) {
		switch a.name {
		case "primary":
			h, _ := passwd.Hash(passwd.SHA256Hex("adminpw"))
			ghost, _ := passwd.Hash(password(14))
			a.tweak = func(p *prefs.Prefs) {
				p.SyncWith = append(p.SyncWith, prefs.Peer{SyncID: 14, User: "ghost", PasswordHash: ghost, Stores: []string{"c"}})
				p.Admin = prefs.Admin{Address: adminAddr, User: "admin", PasswordHash: h}
			}
		case "sat-a":
			proxy = newProxy(t, s.addr)
			for _, dir := range []string{"upstream", "downstream"} {
				addToxic(t, proxy, "latency-"+dir, "latency", dir, map[string]any{"latency": g2.Latency.Milliseconds() / 2, "jitter": g2.Jitter.Milliseconds() / 2})
				addToxic(t, proxy, "bandwidth-"+dir, "bandwidth", dir, map[string]any{"rate": g2.KBps})
			}
			a.url = "http://" + proxy.Listen
		}
	})
	pri, sat := set.get("primary"), set.get("sat-a")
	for i := range 20 {
		sat.mustPut(t, "transact", "t"+string(rune('a'+i)), `{"store_ID":"a","note":"`+strings.Repeat("x", 200)+`"}`)
	}
	sat.mustSync(t)
	ctx := context.Background()

	// Every configured site, with a true verdict.
	sites, err := pri.client.Sites(ctx)
	if err != nil {
		t.Fatal(err)
	}
	verdicts := map[string]control.Site{}
	for _, s := range sites {
		verdicts[s.User] = s
	}
	if a := verdicts["sat-a"]; a.Verdict != "ok" || a.Version != version.Release || a.Outbox == nil || *a.Outbox != 0 || a.ClockSkew == nil ||
		*a.ClockSkew < -2 || *a.ClockSkew > 2 || a.LastSuccess.IsZero() {
		t.Errorf("sat-a in the site list: %+v (outbox %v, skew %v)", a, deref(a.Outbox), deref(a.ClockSkew))
	}
	if g := verdicts["ghost"]; g.Verdict != "never connected" || len(sites) != 3 {
		t.Errorf("the site that never connected: %+v (%d sites)", g, len(sites))
	}

	// Diagnostics: asked, answered on the next cycle over 2G.
	d, err := pri.client.Diagnose(ctx, 12)
	if err != nil {
		t.Fatal(err)
	}
	start, cycles := time.Now(), 0
	var got control.Diagnostics
	for cycles < 2 {
		sat.mustSync(t)
		cycles++
		if got, err = pri.client.Diagnostics(ctx, 12); err != nil {
			t.Fatal(err)
		}
		if got.BundleRequest == d.Request {
			break
		}
	}
	if got.BundleRequest != d.Request {
		t.Fatalf("the bundle did not arrive within two cycles: %+v", got)
	}
	metrics := string(must(pri.client.Metrics(ctx)))
	pieces := "?"
	if m := regexp.MustCompile(`syncagent_requests_total\{method="POST",endpoint="syncagent_diagnostics",status="200"\} (\d+)`).FindStringSubmatch(metrics); m != nil {
		pieces = m[1]
	}
	t.Logf("2G: diagnostics bundle of %d bytes (gzip) arrived in %d cycle(s), %s including the cycle, in %s piece(s)", len(got.Bundle), cycles,
		time.Since(start).Round(100*time.Millisecond), pieces)
	b, err := daemon.DecodeBundle(got.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	raw := must(io.ReadAll(must(gzipReader(got.Bundle))))
	if b.Request != d.Request || b.HardwareID != "hw-sat-a" || !b.Integrity.OK || b.Integrity.Read == 0 || len(b.History) == 0 ||
		!strings.Contains(strings.Join(b.Log, "\n"), "sync cycle done") || b.Status.Role != "satellite" {
		t.Errorf("bundle: request %q hwid %q integrity %+v history %d log %d lines", b.Request, b.HardwareID, b.Integrity, len(b.History), len(b.Log))
	}
	if bytes.Contains(raw, []byte(sat.password())) {
		t.Error("the bundle holds the site's password SHA-256")
	}

	// The CLI on the primary and on the satellite.
	run := func(socket string, args ...string) string {
		var out, errOut bytes.Buffer
		if code := cli.Main(append([]string{"--socket", socket}, args...), strings.NewReader(""), &out, &errOut); code != 0 {
			t.Errorf("syncagent %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
		}
		return out.String()
	}
	if out := run(pri.socket, "sites", "--filter", "never"); !strings.Contains(out, "ghost") || strings.Contains(out, "sat-a") {
		t.Errorf("sites --filter never:\n%s", out)
	}
	if out := run(pri.socket, "sites"); !strings.Contains(out, "LAST SUCCESS") || !strings.Contains(out, version.Release) {
		t.Errorf("sites:\n%s", out)
	}
	if out := run(pri.socket, "sites", "show", "12"); !strings.Contains(out, "recent cycles") || !strings.Contains(out, "clock skew") {
		t.Errorf("sites show 12:\n%s", out)
	}
	if out := run(pri.socket, "sites", "diagnose", "12", "--show"); !strings.Contains(out, "integrity  ok") || !strings.Contains(out, "(set)") {
		t.Errorf("sites diagnose 12 --show:\n%s", out)
	}
	if out := run(sat.socket, "metrics"); !strings.Contains(out, "syncagent_outbox_records 0") ||
		!strings.Contains(out, `syncagent_requests_total{method="POST",endpoint="syncagent_diagnostics",status="200"}`) || !strings.Contains(out, `syncagent_cycles_total{result="ok"}`) {
		t.Errorf("metrics on the satellite:\n%.3000s", out)
	}

	// The admin listener: the page, its JSON and the metrics, behind the
	// admin's credentials.
	get := func(path, user, pw string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+adminAddr+path, nil)
		req.SetBasicAuth(user, pw)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, string(must(io.ReadAll(resp.Body)))
	}
	if code, _ := get("/metrics", "admin", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("admin /metrics with a wrong password: %d", code)
	}
	code, body := get("/metrics", "admin", "adminpw")
	for _, want := range []string{`syncagent_sites{verdict="never connected"} 1`, `syncagent_site_queue_records{site="13"}`, `syncagent_site_outbox_records{site="12"} 0`,
		`syncagent_records_total{what="accepted"} 20`, `syncagent_datafile_bytes`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("admin /metrics lacks %s (%d)", want, code)
		}
	}
	if code, body := get("/api/sites/12", "admin", "adminpw"); code != 200 || !strings.Contains(body, `"bundleBytes":`) {
		t.Errorf("admin /api/sites/12: %d %.300s", code, body)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// freeLoopback is a loopback address nobody listens on.
func freeLoopback(t *testing.T) string {
	t.Helper()
	l, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func gzipReader(b []byte) (io.Reader, error) { return gzip.NewReader(bytes.NewReader(b)) }

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
