package legacyserver_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"syncagent/agent/satellite"
	"syncagent/testtools/legacyserver"
)

// TestConformance_initialisationStarted protects the rule of the reference
// client (remote_data_synchroniser.rs, request_initialisation): a site the
// legacy server is already initialising (GET site "started") is waited for
// by polling site_status every 15 s, never POSTed again; the queue is then
// pulled.
func TestConformance_initialisationStarted(t *testing.T) {
	r := newRig(t, legacyserver.Options{InitTakes: 10 * time.Minute}, satellite.Config{Stores: []string{"ST-CLINIC-12"}})
	r.srv.SetSiteData(legacyserver.SiteData()...)
	r.srv.SetInitialisationStatus("started")
	res := r.mustCycle()
	if r.srv.InitPosts() != 0 || res.Initialisation != "completed" {
		t.Fatalf("POST initialise %d times, initialisation %q; want 0 and completed", r.srv.InitPosts(), res.Initialisation)
	}
	r.holds(final(legacyserver.SiteData()))
	polls := r.requests("GET", "site_status")
	if slept := r.clock.Slept(); slept < 10*time.Minute || slept > 10*time.Minute+time.Minute {
		t.Errorf("waited %v for a 10 min initialisation", slept)
	}
	if len(polls) < 40 || len(polls) > 45 {
		t.Errorf("%d site_status polls for a 10 min initialisation, want about 41 (every 15 s)", len(polls))
	}
}

// TestConformance_initialisationResumes protects a long initialisation cut
// by the cycle's 30 min bound and by a restart: the next cycle (after the
// agent restarted) sees "started", waits again, never POSTs again, and
// completes.
func TestConformance_initialisationResumes(t *testing.T) {
	r := newRig(t, legacyserver.Options{InitTakes: 45 * time.Minute}, satellite.Config{Stores: []string{"ST-CLINIC-12"}})
	r.srv.SetSiteData(legacyserver.SiteData()...)
	res := r.cycle()
	if res.Err == nil || r.srv.InitPosts() != 1 || r.srv.InitialisationStatus() != "started" {
		t.Fatalf("first cycle: err %v, %d POSTs, status %q; want a timeout after one POST, still started", res.Err, r.srv.InitPosts(), r.srv.InitialisationStatus())
	}
	if st := r.sat.Status(); !strings.Contains(st.Initialisation, "in progress") {
		t.Errorf("status says %q during the initialisation", st.Initialisation)
	}
	r.restart()
	res = r.mustCycle()
	if r.srv.InitPosts() != 1 || res.Initialisation != "completed" {
		t.Fatalf("after restart: %d POSTs, initialisation %q; want 1 and completed", r.srv.InitPosts(), res.Initialisation)
	}
	r.holds(final(legacyserver.SiteData()))
	if st := r.sat.Status(); st.Initialisation != "completed" {
		t.Errorf("status says %q after the initialisation", st.Initialisation)
	}
}

// TestConformance_reinitialiseClean protects a clean re-initialisation
// when the server says "new" for an initialised datafile (the site's row
// removed and added again): it is POSTed once, central data is read again,
// what the server no longer sends is removed, and a local change waiting
// to be pushed survives and is pushed. A link cut in the middle of the
// queue pull and a restart resume it without a second POST.
func TestConformance_reinitialiseClean(t *testing.T) {
	r := newRig(t, legacyserver.Options{}, satellite.Config{Stores: []string{"ST-CLINIC-12"}, RequestSize: 1, SyncID: siteID})
	r.srv.AddCentral(legacyserver.Central()...)
	site := legacyserver.SiteData()
	r.srv.SetSiteData(site...)
	r.mustCycle()
	r.holds(final(site))

	// On the server: the row re-added; the site data now lacks the
	// name_store_join and has a new line. On the box: a pending change.
	newLine := legacyserver.Row{TableName: "trans_line", RecordID: "TL-IN-0003", Action: "insert", RecordData: []byte(`{"ID":"TL-IN-0003","transaction_ID":"TR-IN-0001","quantity":5}`)}
	r.srv.SetSiteData(append(site[1:], newLine)...)
	r.srv.SetInitialisationStatus("new")
	local := legacyserver.LocalWrites()[2]
	r.write(local)
	// The push, its closing batch and two queue pages get through, then
	// the link fails for the rest of the cycle's tries.
	r.srv.FailAfter("queued_records", 4, 4, http.StatusBadGateway)

	res := r.cycle()
	if res.Err == nil || res.Initialisation != "requested" || r.srv.InitPosts() != 2 {
		t.Fatalf("cut cycle: err %v initialisation %q posts %d", res.Err, res.Initialisation, r.srv.InitPosts())
	}
	if _, ok, _ := r.store.Get("name_store_join", "NSJ-0001"); !ok {
		t.Fatal("a record was removed before the re-initialisation was pulled completely")
	}
	r.restart()
	res = r.mustCycle()
	if r.srv.InitPosts() != 2 || res.Initialisation != "completed" || res.Removed != 1 {
		t.Fatalf("resumed: posts %d initialisation %q removed %d; want 2, completed, 1", r.srv.InitPosts(), res.Initialisation, res.Removed)
	}
	want := final(legacyserver.Central(), site[1:], []legacyserver.Row{newLine, local})
	want[[2]string{"name_store_join", "NSJ-0001"}] = nil
	r.holds(want)
	for id, n := range r.srv.CentralSent() {
		if n != 2 {
			t.Errorf("central cursor %d sent %d times, want 2 (once per initialisation)", id, n)
		}
	}
	var pushed int
	for _, p := range r.srv.Pushes() {
		for _, o := range p.Data {
			if o.RecordID == local.RecordID {
				pushed++
			}
		}
	}
	if pushed != 1 {
		t.Errorf("the pending change was pushed %d times, want 1", pushed)
	}
	r.noneAside()
}

// TestConformance_syncIDChanged protects a box given another sync_id: it
// re-initialises, and what the previous site held and the new one is not
// sent is removed.
func TestConformance_syncIDChanged(t *testing.T) {
	r := newRig(t, legacyserver.Options{}, satellite.Config{Stores: []string{"ST-CLINIC-12"}, SyncID: 7})
	r.srv.SetSiteData(legacyserver.SiteData()...)
	r.mustCycle()
	r.srv.SetSiteData(legacyserver.SiteData()[:1]...)
	r.cfg.SyncID = siteID
	r.restart()
	res := r.mustCycle()
	if r.srv.InitPosts() != 2 || res.Removed != 3 || res.Initialisation != "completed" {
		t.Fatalf("posts %d removed %d initialisation %q; want 2, 3, completed", r.srv.InitPosts(), res.Removed, res.Initialisation)
	}
	if n := r.store.Count(); n != 1 {
		t.Errorf("the datafile holds %d records, want 1", n)
	}
	if res := r.mustCycle(); r.srv.InitPosts() != 2 || res.Initialisation != "" {
		t.Errorf("the next cycle initialised again: posts %d, %q", r.srv.InitPosts(), res.Initialisation)
	}
}

// TestConformance_initialiseBusy protects a POST initialise answered 503
// sync_is_running: the server is busy, not initialising; the POST is sent
// again once site_status says idle, and the site is initialised.
func TestConformance_initialiseBusy(t *testing.T) {
	r := newRig(t, legacyserver.Options{}, satellite.Config{Stores: []string{"ST-CLINIC-12"}, RequestSize: 3})
	r.srv.SetSiteData(legacyserver.SiteData()...)
	r.srv.BusyOn("initialise", 10*time.Second)
	res := r.mustCycle()
	if r.srv.InitPosts() != 1 || res.Initialisation != "completed" {
		t.Fatalf("initialisation %q after %d answered POSTs; want completed after 1", res.Initialisation, r.srv.InitPosts())
	}
	if n := len(r.requests(http.MethodPost, "initialise")); n != 2 {
		t.Errorf("%d POST initialise requests, want 2 (one answered busy)", n)
	}
	r.holds(final(legacyserver.SiteData()))
}

// TestConformance_staleStarted protects the rule "never POST while started"
// against a server whose initialisation died (GET site says "started",
// site_status idle): the satellite does not POST, pulls nothing, and says
// what to do.
func TestConformance_staleStarted(t *testing.T) {
	r := newRig(t, legacyserver.Options{}, satellite.Config{Stores: []string{"ST-CLINIC-12"}})
	r.srv.SetSiteData(legacyserver.SiteData()...)
	r.srv.StaleInitialisation()
	for range 2 {
		res := r.cycle()
		if res.Err == nil || !strings.Contains(res.Err.Error(), "central team") || r.srv.InitPosts() != 0 {
			t.Fatalf("err %v, %d POSTs; want an error saying what to do and no POST", res.Err, r.srv.InitPosts())
		}
	}
	if len(r.requests("", "queued_records")) != 0 || r.store.Count() != 0 {
		t.Error("pulled from a site whose initialisation never finished")
	}
}
