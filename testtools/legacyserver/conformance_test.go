package legacyserver_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"syncagent/agent/satellite"
	"syncagent/agent/version"
	"syncagent/testtools/legacyserver"
)

// gappy interleaves this site's central rows with rows for another site
// (skipped in this site's pages: gaps) and ends with some.
func gappy(srv *legacyserver.Server, rows []legacyserver.Row, other int) {
	for i, r := range rows {
		for j := range 1 + i%4 {
			srv.AddCentralFor(other, legacyserver.Row{TableName: "store", RecordID: fmt.Sprintf("OTHER-%d-%d", i, j), Action: "insert", RecordData: []byte(`{"ID":"x"}`)})
		}
		srv.AddCentral(r)
	}
	for j := range 5 {
		srv.AddCentralFor(other, legacyserver.Row{TableName: "store", RecordID: fmt.Sprintf("OTHER-tail-%d", j), Action: "insert", RecordData: []byte(`{"ID":"y"}`)})
	}
}

// TestConformance_fullCycle drives our satellite through a whole cycle
// against the legacy server: a slow initialisation (its POST cut by the
// proxy, waited for and never POSTed again), the push in the reference
// client's shape, integration waited for, central data with gaps, the
// queue. Every record arrives exactly once, as the server sent it, and
// nothing is refused.
func TestConformance_fullCycle(t *testing.T) {
	for _, size := range []int{0, 2} {
		t.Run(fmt.Sprintf("request_size=%d", size), func(t *testing.T) {
			r := newRig(t, legacyserver.Options{InitTakes: 2 * time.Minute, IntegrationTakes: 5 * time.Second},
				satellite.Config{Stores: []string{"ST-CLINIC-12"}, RequestSize: size, SyncID: siteID})
			gappy(r.srv, legacyserver.Central(), 3)
			r.srv.SetSiteData(legacyserver.SiteData()...)
			local := legacyserver.LocalWrites()
			r.write(local...)

			res := r.mustCycle()
			if res.Initialisation != "completed" || res.Pushed != len(local) || res.SetAside != 0 {
				t.Errorf("result: initialisation %q pushed %d set aside %d; want completed, %d, 0", res.Initialisation, res.Pushed, res.SetAside, len(local))
			}
			if n := r.srv.InitPosts(); n != 1 {
				t.Errorf("POST initialise %d times, want 1 (the run the proxy cut is waited for)", n)
			}
			r.holds(final(legacyserver.Central(), legacyserver.SiteData(), local))
			if _, ok, _ := r.store.Get("store", "OTHER-0-0"); ok {
				t.Error("the satellite holds another site's central row")
			}
			for id, n := range r.srv.CentralSent() {
				if n != 1 {
					t.Errorf("central cursor %d sent %d times, want 1", id, n)
				}
			}
			if len(r.srv.Acks()) != len(legacyserver.SiteData()) || r.srv.QueueLen() != 0 {
				t.Errorf("acknowledged %d of %d queued records, queue %d left", len(r.srv.Acks()), len(legacyserver.SiteData()), r.srv.QueueLen())
			}
			for id, n := range r.srv.Acks() {
				if n != 1 {
					t.Errorf("queued record %s acknowledged %d times", id, n)
				}
			}
			checkPushShape(t, r, local)
			checkIdentity(t, r)
			r.noneAside()

			// The next cycle starts with GET site, does not initialise,
			// and still ends its (empty) push with the empty batch.
			before := len(r.srv.Requests())
			res = r.mustCycle()
			reqs := r.srv.Requests()[before:]
			if reqs[0].Endpoint != "site" || r.srv.InitPosts() != 1 || res.Pulled != 0 || res.Initialisation != "" {
				t.Errorf("second cycle: first request %s, POSTs %d, pulled %d, initialisation %q", reqs[0].Endpoint, r.srv.InitPosts(), res.Pulled, res.Initialisation)
			}
			if p := r.srv.Pushes(); len(p[len(p)-1].Data) != 0 || len(p) != pushesAfterFirst(t, r)+1 {
				t.Errorf("second cycle pushed %+v, want one empty batch", p[len(p)-1])
			}
		})
	}
}

func pushesAfterFirst(t *testing.T, r *rig) int {
	n := 0
	for _, p := range r.srv.Pushes() {
		n++
		if p.QueueLength == 0 {
			return n
		}
	}
	return n
}

// checkPushShape checks the push against the reference client
// (remote_data_synchroniser.rs, push): every local change once, in the
// order written (children before their parent); each batch's queueLength
// counts the changes still to push including that batch; an empty batch
// {"queueLength":0,"data":[]} ends it; then site_status is polled until
// idle before central data is pulled.
func checkPushShape(t *testing.T, r *rig, local []legacyserver.Row) {
	t.Helper()
	pushes := r.srv.Pushes()
	var got []string
	remaining := len(local)
	for i, p := range pushes {
		if p.QueueLength == 0 {
			if len(p.Data) != 0 || i != len(pushes)-1 {
				t.Errorf("push %d has queueLength 0 but %d records, or is not the last", i, len(p.Data))
			}
			break
		}
		if p.QueueLength != remaining {
			t.Errorf("push %d: queueLength %d, want %d (the changes still to push, this batch included)", i, p.QueueLength, remaining)
		}
		remaining -= len(p.Data)
		for _, o := range p.Data {
			got = append(got, o.TableName+"/"+o.RecordID)
		}
	}
	var want []string
	for _, l := range local {
		want = append(want, l.TableName+"/"+l.RecordID)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("pushed %v, want %v in that order", got, want)
	}
	posts := r.requests(http.MethodPost, "queued_records")
	if last := posts[len(posts)-1]; string(last.Body) != `{"queueLength":0,"data":[]}` {
		t.Errorf("closing push body = %s", last.Body)
	}
	// After the closing batch: site_status polls (integration takes 5 s)
	// come before the first central_records request.
	reqs := r.srv.Requests()
	closing, firstCentral, polls, idle := -1, -1, 0, false
	for i, q := range reqs {
		switch {
		case q.Method == http.MethodPost && q.Endpoint == "queued_records" && string(q.Body) == `{"queueLength":0,"data":[]}` && closing < 0:
			closing = i
		case closing >= 0 && firstCentral < 0 && q.Endpoint == "site_status":
			polls++
			idle = true
		case closing >= 0 && q.Endpoint == "central_records" && firstCentral < 0:
			firstCentral = i
		}
	}
	if closing < 0 || firstCentral < closing || polls < 2 || !idle {
		t.Errorf("closing push at %d, first central pull at %d, %d site_status polls between; want polls until idle before the pull", closing, firstCentral, polls)
	}
	for _, q := range reqs[closing:firstCentral] {
		if q.Endpoint != "site_status" && q.Endpoint != "queued_records" {
			t.Errorf("between the closing push and the pull: %s %s", q.Method, q.Endpoint)
		}
	}
}

// checkIdentity checks what every request carried (api/core.rs).
func checkIdentity(t *testing.T, r *rig) {
	t.Helper()
	for _, q := range r.srv.Requests() {
		h := q.Header
		if h.Get("app-version") != version.Release || h.Get("app-name") != "syncagent" || h.Get("version") != "14" || h.Get("msupply-site-uuid") != hwid {
			t.Fatalf("%s %s headers: app-name %q app-version %q version %q site %q", q.Method, q.Endpoint, h.Get("app-name"), h.Get("app-version"), h.Get("version"), h.Get("msupply-site-uuid"))
		}
		if q.Status == 0 {
			t.Fatalf("%s %s not answered", q.Method, q.Endpoint)
		}
	}
}

// TestConformance_gapsSteppedOver protects the central pull's end: an
// empty page below maxCursor moves the cursor on by one, exactly as the
// reference client does (central_data_synchroniser.rs), and the pull ends
// at maxCursor with every row of this site.
func TestConformance_gapsSteppedOver(t *testing.T) {
	r := newRig(t, legacyserver.Options{}, satellite.Config{Stores: []string{"ST-CLINIC-12"}, RequestSize: 2})
	units := legacyserver.Central()[:2]
	other := legacyserver.Row{TableName: "store", RecordID: "OTHER", Action: "insert", RecordData: []byte(`{"ID":"OTHER"}`)}
	r.srv.AddCentral(units[0])                         // 1
	r.srv.AddCentralFor(3, other, other, other, other) // 2..5: a gap of 4, more than a page of 2
	r.srv.AddCentral(units[1])                         // 6
	r.srv.AddCentralFor(3, other, other, other)        // 7..9: a gap at the end
	r.mustCycle()
	var cursors []string
	for _, q := range r.requests("GET", "central_records") {
		cursors = append(cursors, q.Query.Get("cursor"))
	}
	// 0 → [1]; 1 → [] (2, 3 skipped), step to 2 → [] → 3 → [] → 4 → [6];
	// 6 → [] → 7 → [] → 8 → [] → 9 = maxCursor → [], the end.
	if got, want := strings.Join(cursors, ","), "0,1,2,3,4,6,7,8,9"; got != want {
		t.Errorf("central_records cursors %s, want %s", got, want)
	}
	r.holds(final(units))
	if c, _ := r.store.Cursor("central"); c != r.srv.MaxCursor() {
		t.Errorf("cursor %d after the pull, want maxCursor %d", c, r.srv.MaxCursor())
	}
}

// TestConformance_busy protects busy answers: 503 sync_is_running in the
// middle of a push, a central pull, a queue pull and an acknowledgement is
// waited out (site_status polled until idle) and the same request size is
// asked for again; nothing shrinks, nothing is set aside, everything
// arrives. A primary busy for longer than the cycle waits ends it as busy.
func TestConformance_busy(t *testing.T) {
	const size = 2
	r := newRig(t, legacyserver.Options{}, satellite.Config{Stores: []string{"ST-CLINIC-12"}, RequestSize: size})
	r.srv.AddCentral(legacyserver.Central()...)
	r.srv.SetSiteData(legacyserver.SiteData()...)
	r.mustCycle() // initialised

	for i := range 5 {
		r.srv.Enqueue(legacyserver.SiteData()[1:]...)
		r.write(legacyserver.Row{TableName: "transact", RecordID: fmt.Sprintf("TR-B-%d", i), Action: "update", RecordData: []byte(`{"ID":"x","store_ID":"ST-CLINIC-12"}`)})
	}
	r.srv.AddCentral(legacyserver.Central()[:5]...)
	for _, ep := range []string{"queued_records", "central_records", "acknowledged_records"} {
		r.srv.BusyOn(ep, 20*time.Second)
	}
	before := len(r.srv.Requests())
	res := r.mustCycle()
	if res.Busy || res.Pushed != 5 || res.SetAside != 0 {
		t.Fatalf("busy waited out: busy %v pushed %d set aside %d", res.Busy, res.Pushed, res.SetAside)
	}
	busy := 0
	for _, q := range r.srv.Requests()[before:] {
		if q.Status == http.StatusServiceUnavailable {
			busy++
		}
		if n := q.Query.Get("limit"); n != "" && n != fmt.Sprint(size) {
			t.Errorf("%s asked for limit=%s after busy answers, want %d", q.Endpoint, n, size)
		}
	}
	if busy < 3 {
		t.Fatalf("%d busy answers, want at least 3", busy)
	}
	for _, p := range r.srv.Pushes() {
		if len(p.Data) > size || (len(p.Data) < size && p.QueueLength > len(p.Data)) {
			t.Errorf("push of %d records (queueLength %d) with request_size %d", len(p.Data), p.QueueLength, size)
		}
	}
	if r.srv.QueueLen() != 0 || r.store.OutboxLen() != 0 {
		t.Errorf("queue %d, outbox %d left", r.srv.QueueLen(), r.store.OutboxLen())
	}

	// Busy for ten minutes: the cycle ends as busy, having pushed nothing.
	r.write(legacyserver.LocalWrites()...)
	r.srv.BusyFor(10 * time.Minute)
	res = r.cycle()
	if !res.Busy || !errors.Is(res.Err, satellite.ErrBusy) || res.Pushed != 0 || r.store.OutboxLen() != 3 {
		t.Fatalf("long busy: busy %v err %v pushed %d outbox %d", res.Busy, res.Err, res.Pushed, r.store.OutboxLen())
	}
	r.noneAside()
	r.clock.Advance(10 * time.Minute)
	if res := r.mustCycle(); res.Pushed != 3 {
		t.Errorf("after the busy spell pushed %d, want 3", res.Pushed)
	}
}

// TestConformance_proxyErrorsAreTheLink protects records from the link:
// a lone record whose pushes get a reverse proxy's 502 and 504 pages (the
// legacy server restarting behind nginx) is retried, never set aside, and
// arrives once the server is back.
func TestConformance_proxyErrorsAreTheLink(t *testing.T) {
	r := newRig(t, legacyserver.Options{}, satellite.Config{Stores: []string{"ST-CLINIC-12"}, RequestSize: 0})
	r.mustCycle()
	r.write(legacyserver.LocalWrites()[2])
	r.srv.FailNext("queued_records", 6, http.StatusBadGateway)
	r.srv.FailNext("queued_records", 6, http.StatusGatewayTimeout)
	for i := 0; i < 6 && r.store.OutboxLen() > 0; i++ {
		r.cycle()
	}
	r.noneAside()
	var got int
	for _, p := range r.srv.Pushes() {
		got += len(p.Data)
	}
	if r.store.OutboxLen() != 0 || got != 1 {
		t.Fatalf("outbox %d, the server got %d records; want 0 and 1", r.store.OutboxLen(), got)
	}
}

// TestConformance_restoredServer protects a site against a central server
// restored from a backup: its maxCursor falls below the site's cursor; the
// site reads central data again from 0 (saying so) and gets what was
// written after the restore.
func TestConformance_restoredServer(t *testing.T) {
	r := newRig(t, legacyserver.Options{}, satellite.Config{Stores: []string{"ST-CLINIC-12"}})
	central := legacyserver.Central()
	r.srv.AddCentral(central...)
	r.mustCycle()
	r.srv.RestoreCentral(4)
	newer := legacyserver.Row{TableName: "unit", RecordID: "U-VIAL-01", Action: "insert", RecordData: []byte(`{"ID":"U-VIAL-01","units":"Vial","comment":"","order_number":3}`)}
	r.srv.AddCentral(newer)
	res := r.mustCycle()
	if !res.CentralReread || len(res.Notes) == 0 || r.sat.Status().CentralReread.IsZero() {
		t.Fatalf("reread %v notes %v status %v; want the re-read reported", res.CentralReread, res.Notes, r.sat.Status().CentralReread)
	}
	// What the restored server sends again wins (its older copy of an
	// item included); what it lost stays as the site had it.
	want := final(central, []legacyserver.Row{newer})
	for k, v := range final(central[:4]) {
		want[k] = v
	}
	r.holds(want)
	if c, _ := r.store.Cursor("central"); c != 5 {
		t.Errorf("cursor %d, want 5", c)
	}
	if res := r.mustCycle(); res.CentralReread || res.Pulled != 0 {
		t.Errorf("the cycle after: reread %v pulled %d", res.CentralReread, res.Pulled)
	}
}
