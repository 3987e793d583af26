package e2e

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestCheck protects "check connection": each failure says which step failed
// and what to do.
func TestCheck(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"a"}})
	tlsSrv := httptest.NewTLSServer(w.prim.Handler())
	t.Cleanup(tlsSrv.Close)
	cases := []struct {
		name                          string
		url, password, hwid           string
		reachable, authed, hwAccepted bool
		tls, advice                   string
	}{
		{name: "ok", reachable: true, authed: true, hwAccepted: true, tls: "none (http)"},
		{name: "wrong password", password: strings.Repeat("0", 64), reachable: true, advice: "syncagent passwd"},
		{name: "pinned elsewhere", hwid: "another-box", reachable: true, authed: true, advice: "clear-hwid"},
		{name: "nobody there", url: "http://127.0.0.1:1", advice: "cannot connect"},
		{name: "untrusted certificate", url: tlsSrv.URL, reachable: true, tls: "certificate not trusted", advice: "certificate"},
		{name: "https to plain http", url: strings.Replace(w.srv.URL, "http:", "https:", 1), reachable: true, tls: "the server does not speak TLS", advice: "scheme"},
	}
	w.sats[2].sync(t) // pins hw-2
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := w.newSite(2, []string{"a"}, w.srv.URL)
			if c.url != "" {
				s.client.BaseURL = c.url
			}
			if c.password != "" {
				s.client.PasswordSHA256 = c.password
			}
			if c.hwid != "" {
				s.client.HardwareID = c.hwid
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r := s.sat.Check(ctx)
			if r.Reachable != c.reachable || r.Authenticated != c.authed || r.HardwareAccepted != c.hwAccepted {
				t.Errorf("reachable %v auth %v hw %v, want %v %v %v (%s)", r.Reachable, r.Authenticated, r.HardwareAccepted, c.reachable, c.authed, c.hwAccepted, r.Err)
			}
			if c.tls != "" && r.TLS != c.tls {
				t.Errorf("tls = %q, want %q", r.TLS, c.tls)
			}
			if !strings.Contains(r.Advice, c.advice) {
				t.Errorf("advice = %q, want it to mention %q", r.Advice, c.advice)
			}
			if r.OK() != (c.name == "ok") {
				t.Errorf("OK() = %v (%s)", r.OK(), r.Err)
			}
		})
	}
}

// TestGenerate protects "generate sync records" on both roles.
func TestGenerate(t *testing.T) {
	w := newWorld(t, map[int][]string{2: {"a", "s"}, 3: {"s"}})
	a, b := w.sats[2], w.sats[3]
	a.sync(t)
	b.sync(t)
	a.put(t, "stock", "1", "s", nil)
	a.put(t, "stock", "2", "a", nil)
	a.sync(t)
	b.sync(t)
	if n, err := a.sat.Generate(context.Background(), false); err != nil || n != 2 {
		t.Fatalf("satellite --existing re-queued %d, %v; want 2", n, err)
	}
	if res := a.sync(t); res.Pushed != 2 {
		t.Errorf("re-queued records pushed %d, want 2", res.Pushed)
	}
	b.sync(t)
	// The primary refills every site's queue with what it should hold.
	n, err := w.prim.Generate(context.Background())
	if err != nil || n != 3 { // site 2: both records; site 3: the record of store s
		t.Fatalf("primary generate queued %d, %v; want 3", n, err)
	}
	if w.central.QueueLen(3) != 1 {
		t.Errorf("site 3 queue = %d, want 1", w.central.QueueLen(3))
	}
	// --new on a satellite also starts over from the primary.
	if _, err := b.sat.Generate(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if res := b.sync(t); res.Pulled == 0 {
		t.Error("after --new the site pulled nothing")
	}
}
