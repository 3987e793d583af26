package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"syncagent/agent/primary"
)

// slowServer serves p's handler with the primary's real HTTP server,
// its header and body timeouts shortened so the test runs in seconds.
func slowServer(t *testing.T, p *livePrimary, header, body time.Duration) string {
	t.Helper()
	srv := primary.NewHTTPServer("127.0.0.1:0", p.prim.Handler(), quiet)
	// The bounds the daemon serves with: every one set.
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Fatalf("NewHTTPServer leaves a bound unset: %+v", srv)
	}
	if srv.ReadHeaderTimeout > srv.ReadTimeout {
		t.Errorf("header timeout %s beyond the read timeout %s", srv.ReadHeaderTimeout, srv.ReadTimeout)
	}
	srv.ReadHeaderTimeout, srv.ReadTimeout = header, body
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// dribble writes s one byte every gap until the server closes the
// connection; it returns what the server sent and how long it took.
func dribble(conn net.Conn, s string, gap time.Duration) (string, time.Duration) {
	start := time.Now()
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(conn)
		got <- string(b)
	}()
	for i := 0; i < len(s); i++ {
		if _, err := conn.Write([]byte{s[i]}); err != nil {
			break
		}
		select {
		case answer := <-got:
			return answer, time.Since(start)
		case <-time.After(gap):
		}
	}
	select {
	case answer := <-got:
		return answer, time.Since(start)
	case <-time.After(5 * time.Second):
		return "(still open)", time.Since(start)
	}
}

// TestHostile_slowClients protects the primary's connections: clients that
// send their headers or their body too slowly are cut off after the
// header and body timeouts (or refused at once, past the site's requests in
// flight), their requests change nothing, and the other sites are served
// meanwhile.
func TestHostile_slowClients(t *testing.T) {
	p, _ := hostileSetup(t)
	addr := slowServer(t, p, 300*time.Millisecond, time.Second)
	base := "http://" + addr
	before := p.fingerprint(t)

	auth := "Basic " + basic("site-2", password(2))
	push := pushBody(rec("slow-1", "stock", "slow", "insert", `{"store_ID":"a"}`))
	headers := "POST /sync/v5/queued_records HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth +
		"\r\nmsupply-site-uuid: hw-2\r\nContent-Type: application/json\r\n"

	var wg sync.WaitGroup
	results := make([]string, 20)
	took := make([]time.Duration, 20)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				results[i] = err.Error()
				return
			}
			defer conn.Close()
			if i%2 == 0 { // headers that never end
				results[i], took[i] = dribble(conn, headers+strings.Repeat("X-Pad: y\r\n", 100), 50*time.Millisecond)
				return
			}
			// headers at once, then a body that trickles
			fmt.Fprintf(conn, "%sContent-Length: %d\r\n\r\n", headers, len(push)+1000)
			results[i], took[i] = dribble(conn, push+strings.Repeat(" ", 1000), 50*time.Millisecond)
		}()
	}
	// Meanwhile the other sites are served, promptly.
	for i := 0; i < 10; i++ {
		start := time.Now()
		status, body := (call{method: "GET", path: "/sync/v5/queued_records?limit=5", site: 3}).do(t, base)
		if status != 200 || time.Since(start) > time.Second {
			t.Errorf("site 3 during the slow clients: %d in %s: %s", status, time.Since(start), body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	for i, r := range results {
		if took[i] > 3*time.Second || r == "(still open)" {
			t.Errorf("slow client %d held its connection for %s", i, took[i])
		}
		if i%2 == 1 {
			// A body cut by the read timeout is answered with a v5 error.
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(r)), nil)
			if err != nil {
				t.Errorf("slow body %d: unreadable answer %q", i, r)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			// Cut by the read timeout, or refused before its body was read:
			// the site already had as many requests in flight as it may.
			if resp.StatusCode == http.StatusServiceUnavailable {
				checkV5Error(t, fmt.Sprintf("slow body %d", i), resp.StatusCode, b, 503, "sync_is_running")
			} else {
				checkV5Error(t, fmt.Sprintf("slow body %d", i), resp.StatusCode, b, 400, "bad_request")
			}
		}
	}
	if after := p.fingerprint(t); after != before {
		t.Errorf("slow clients changed the primary:\n before %s\n after  %s", before, after)
	}
	t.Logf("slow headers cut after %s, slow bodies after %s; a slow body was answered %.60q", took[0].Round(10*time.Millisecond), took[1].Round(10*time.Millisecond), results[1])

	// Headers over the limit get 431 from net/http itself (before any
	// handler runs, so no v5 body): the connection is not held either.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /sync/v5/site HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("b", 64<<10))
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB of headers: %v %v", resp, err)
	}
}
