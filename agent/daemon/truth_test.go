package daemon

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/passwd"
	"syncagent/agent/syncapi"
)

// TestStatus_heartbeatRefreshes protects what `systemctl status` shows:
// STATUS= was sent after a cycle and never again, so it read "last sync 0s
// ago" for the whole interval (forever when paused). The heartbeat keeps it
// true, and a failing link reads "offline since …".
func TestStatus_heartbeatRefreshes(t *testing.T) {
	n := listenNotify(t)
	b := newBox(t)
	f := newFakePrimary(t)
	s := satellite12(f.url())
	s.interval = 0 // paused: no cycle will send STATUS= again
	b.write(b.render(s))
	b.start()
	if c := b.sync(); c.Error != "" {
		t.Fatal(c.Error)
	}
	eventually(t, `STATUS= "last sync 0s ago ok"`, func() bool { return contains(n.last(), "last sync 0s ago ok") })
	statusSkew.Store(int64(4 * time.Minute))
	t.Cleanup(func() { statusSkew.Store(0) })
	eventually(t, `STATUS= "last sync 4m ago ok" from the heartbeat`, func() bool { return contains(n.last(), "last sync 4m ago ok") })
	statusSkew.Store(0)

	f.srv.Close() // the link goes
	if c := b.sync(); c.Error == "" || c.Refused {
		t.Fatalf("sync with the primary gone: %+v", c)
	}
	eventually(t, `STATUS= "offline since …"`, func() bool {
		return contains(n.last(), "offline since ") && contains(n.last(), "(last ok ")
	})
}

// TestStatus_survivesRestart protects how long a box has been offline:
// after a restart status said "last sync none yet". Last success, last
// failure and its reason, and the cycle history are kept in the datafile.
func TestStatus_survivesRestart(t *testing.T) {
	b := newBox(t)
	f := newFakePrimary(t)
	b.write(b.render(satellite12(f.url())))
	b.start()
	if c := b.sync(); c.Error != "" {
		t.Fatal(c.Error)
	}
	f.srv.Close()
	failed := b.sync()
	b.stop()
	b.start()
	st := b.status()
	if st.LastSuccess.IsZero() || st.LastFailure == nil || st.LastFailure.Error != failed.Error || st.LastSync == nil || st.LastSync.Error == "" ||
		st.FailingSince.IsZero() || st.LastContact.IsZero() {
		t.Errorf("after a restart: success %v, failure %+v, failing since %v, last contact %v", st.LastSuccess, st.LastFailure, st.FailingSince, st.LastContact)
	}
	h, err := b.client.History(context.Background())
	if err != nil || len(h) != 2 || h[0].Error == "" || h[1].Error != "" {
		t.Errorf("history after a restart: %+v, %v", h, err)
	}
}

// TestHistory_bounded protects the datafile: the history keeps the last
// maxHistory cycles, not all of them.
func TestHistory_bounded(t *testing.T) {
	b := newBox(t)
	b.write(b.render(satellite12("http://127.0.0.1:9")))
	b.start()
	for range maxHistory + 3 {
		b.sync()
	}
	if h, _ := b.client.History(context.Background()); len(h) != maxHistory {
		t.Errorf("history holds %d cycles, want %d", len(h), maxHistory)
	}
}

// TestCycle_refusalIsARefusal protects the difference between a link that
// is down and a primary that says no: a 401 was reported (and counted) as a
// link failure.
func TestCycle_refusalIsARefusal(t *testing.T) {
	b := newBox(t)
	f := newFakePrimary(t)
	f.accept("clinic", passwd.SHA256Hex("another password"))
	b.write(b.render(satellite12(f.url())))
	b.start()
	c := b.sync()
	if !c.Refused || !contains(c.Error, "site_incorrect_password") || c.Advice == "" {
		t.Errorf("cycle refused by the primary: %+v", c)
	}
	if line := StatusLine(b.status(), time.Now()); !contains(line, "refused since") {
		t.Errorf("STATUS= %q, want refused since", line)
	}
	f.answer(http.StatusServiceUnavailable) // the primary's storage failing: a v5 error
	if c := b.sync(); !c.Refused {
		t.Errorf("503 storage_error: %+v, want a refusal", c)
	}
	f.srv.Close()
	if c := b.sync(); c.Refused || c.Error == "" {
		t.Errorf("connection refused: %+v, want a link failure", c)
	}
}

// TestCycle_fixedPasswordWorksAtOnce protects a technician fixing a wrong
// password: the satellite kept using the old one (and so kept getting 401
// and 429) until a restart.
func TestCycle_fixedPasswordWorksAtOnce(t *testing.T) {
	b := newBox(t)
	f := newFakePrimary(t)
	wrong := satellite12(f.url())
	wrong.rows[0].passwordSHA = passwd.SHA256Hex("typo")
	b.write(b.render(wrong))
	b.start()
	if c := b.sync(); !c.Refused {
		t.Fatalf("wrong password: %+v", c)
	}
	b.openWindow(wrong)
	b.write(b.render(satellite12(f.url())))
	if r := b.reload(); r.State != "ok" {
		t.Fatal(r.State)
	}
	// The fixed password goes out at once: the failing box does not sleep out a backoff.
	eventually(t, "a cycle with the fixed password", func() bool {
		st := b.status()
		return st.LastSync != nil && st.LastSync.Error == "" && !st.LastSuccess.IsZero()
	})
}

// TestCheck_steps protects what `check` says: steps never reached read "not
// tried" (they read "no", as if they had failed), TLS on an http URL "not
// used", and the round trip only when the primary answered.
func TestCheck_steps(t *testing.T) {
	b := newBox(t)
	f := newFakePrimary(t)
	s := satellite12("http://127.0.0.1:9")
	b.write(b.render(s))
	b.start()
	b.openWindow(s)
	steps := func() (map[string]string, control.Check) {
		c, err := b.client.Check(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, s := range c.Steps {
			m[s.Name] = s.Result
		}
		return m, c
	}
	m, c := steps()
	if m["reachable"] != "failed" || m["tls"] != "not used" || m["authenticated"] != "not tried" || m["hardware_id"] != "not tried" || c.RoundTripMS != nil {
		t.Errorf("connection refused: %v, round trip %v", m, c.RoundTripMS)
	}
	s.rows[0].url = f.url()
	s.rows[0].passwordSHA = passwd.SHA256Hex("wrong")
	b.write(b.render(s))
	b.reload()
	m, c = steps()
	if m["reachable"] != "ok" || m["authenticated"] != "failed" || m["hardware_id"] != "not tried" || c.RoundTripMS == nil || !c.Refused {
		t.Errorf("wrong password: %v, round trip %v, refused %v", m, c.RoundTripMS, c.Refused)
	}
	s.rows[0].passwordSHA = passwd.SHA256Hex("pw")
	b.write(b.render(s))
	b.reload()
	m, c = steps()
	if m["reachable"] != "ok" || m["authenticated"] != "ok" || m["hardware_id"] != "ok" || m["stores"] != "ok" || c.Error != "" {
		t.Errorf("all good: %v (%s)", m, c.Error)
	}
	if sites, _ := b.client.Sites(context.Background()); len(sites) != 1 || sites[0].LastContact.IsZero() {
		t.Errorf("a satellite's sites after a check that reached the primary: %+v", sites)
	}
}

// TestSites_satelliteShowsLastContact protects a satellite's site list: it
// said "never" after dozens of syncs.
func TestSites_satelliteShowsLastContact(t *testing.T) {
	b := newBox(t)
	f := newFakePrimary(t)
	b.write(b.render(satellite12(f.url())))
	b.start()
	b.sync()
	sites, err := b.client.Sites(context.Background())
	if err != nil || len(sites) != 1 || sites[0].LastContact.IsZero() || sites[0].URL != f.url() || sites[0].User != "clinic" {
		t.Errorf("sites = %+v, %v", sites, err)
	}
}

// TestDisabled_refusesCycles protects a box with sync disabled: sync and
// check say why instead of pretending.
func TestDisabled_refusesCycles(t *testing.T) {
	b := newBox(t)
	b.write(b.render(spec{stores: []string{"a"}}))
	b.start()
	var ce *control.Error
	if _, err := b.client.Check(context.Background()); !errors.As(err, &ce) || ce.Status != http.StatusConflict || !contains(ce.Msg, "sync_id is 0") {
		t.Errorf("check on a disabled box: %v", err)
	}
	if _, err := b.client.Sync(context.Background(), false); !errors.As(err, &ce) || ce.Status != http.StatusConflict {
		t.Errorf("sync on a disabled box: %v", err)
	}
}

// TestSpecialFiles_prefsPath protects reload and stop from what may sit at
// the prefs path: a FIFO used to wedge the watcher and SIGTERM, a symlink to
// /dev/zero grew the agent to gigabytes. Both are refused at once.
func TestSpecialFiles_prefsPath(t *testing.T) {
	b := newBox(t)
	b.write(b.render(satellite12("http://127.0.0.1:9")))
	b.start()
	os.Remove(b.prefs)
	if err := syscall.Mkfifo(b.prefs, 0o644); err != nil {
		t.Fatal(err)
	}
	within(t, 5*time.Second, "a reload with a FIFO at the prefs path", func() {
		if r := b.reload(); !contains(r.State, "not a regular file") {
			t.Errorf("reload of a FIFO: %s", r.State)
		}
	})
	os.Remove(b.prefs)
	if err := os.Symlink("/dev/zero", b.prefs); err != nil {
		t.Fatal(err)
	}
	within(t, 5*time.Second, "a reload of /dev/zero", func() {
		if r := b.reload(); !contains(r.State, "not a regular file") {
			t.Errorf("reload of /dev/zero: %s", r.State)
		}
	})
	within(t, 10*time.Second, "the agent to stop", b.stop)
}

// TestSpecialFiles_keyring protects a reload from a FIFO named as the
// vendor keyring.
func TestSpecialFiles_keyring(t *testing.T) {
	b := newBox(t)
	base := satellite12("http://127.0.0.1:9")
	b.write(b.render(base))
	b.start()
	b.openWindow(base)
	fifo := filepath.Join(b.dir, "keys.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	edit := base
	edit.vendorKeys = fifo
	b.write(b.render(edit))
	within(t, 5*time.Second, "a reload naming a FIFO as keyring", func() {
		if r := b.reload(); !contains(r.State, "not a regular file") {
			t.Errorf("reload: %s", r.State)
		}
	})
}

// TestHardwareID_fifo protects the start from a FIFO at the hardware-ID
// file: refused at once, not waited on.
func TestHardwareID_fifo(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, HardwareIDFile), 0o644); err != nil {
		t.Fatal(err)
	}
	within(t, 5*time.Second, "reading a FIFO as the hardware ID", func() {
		if _, err := hardwareID(func(string) string { return dir }, func() (string, error) { return "probed", nil })(); err == nil {
			t.Error("a FIFO gave a hardware ID")
		}
	})
}

// TestDatafile_deletedUnderTheAgent protects apps' writes: a datafile
// deleted under the running agent took writes that vanished at the next
// start. Writes are refused and the agent exits for systemd to restart it.
func TestDatafile_deletedUnderTheAgent(t *testing.T) {
	for _, role := range []string{"satellite", "disabled"} {
		t.Run(role, func(t *testing.T) {
			b := newBox(t)
			s := satellite12("http://127.0.0.1:9")
			if role == "disabled" {
				s = spec{stores: []string{"a"}}
			}
			b.write(b.render(s))
			b.start()
			ctx := context.Background()
			if _, err := b.client.PutRecord(ctx, "stock", "1", []byte(`{"store_ID":"a"}`)); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(b.state, "satellite.db")); err != nil {
				t.Fatal(err)
			}
			var ce *control.Error
			if _, err := b.client.PutRecord(ctx, "stock", "2", []byte(`{"store_ID":"a"}`)); !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable || !contains(ce.Msg, "deleted") {
				t.Errorf("write after the datafile was deleted: %v", err)
			}
			done := make(chan error, 1)
			go func() { done <- b.wait() }()
			select {
			case err := <-done:
				var xe *ExitError
				if !errors.As(err, &xe) || xe.Code == 0 {
					t.Errorf("the agent ended with %v; want a failure exit for systemd to restart it", err)
				}
				b.cancel = nil
			case <-time.After(10 * time.Second):
				t.Fatal("the agent did not exit")
			}
		})
	}
}

// TestDatafile_compactionIsNotDeletion protects the guard from BuntDB's own
// compaction, which renames a rewritten file over the datafile.
func TestDatafile_compactionIsNotDeletion(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "satellite.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g := newDatafileGuard(path, nil)
	if err := g.check(); err != nil {
		t.Fatal(err)
	}
	// A rewritten file renamed over it, and opened (as BuntDB reopens it).
	os.WriteFile(path+".tmp", []byte("x"), 0o600)
	os.Rename(path+".tmp", path)
	f2, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if err := g.check(); err != nil {
		t.Errorf("after a compaction: %v", err)
	}
	// A file nobody has open put in its place (the datafile stays open, as
	// BuntDB keeps it).
	os.Remove(path)
	os.WriteFile(path, []byte("y"), 0o600)
	if err := g.check(); err == nil || !contains(err.Error(), "replaced") {
		t.Errorf("after a replacement: %v", err)
	}
}

// within runs f and fails the test if it takes longer than d.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s took longer than %s", what, d)
	}
}

// TestPrimary_lastContactSurvivesStop protects the primary's site list: last
// contact times written at most once a minute were lost on a clean stop.
func TestPrimary_lastContactSurvivesStop(t *testing.T) {
	b := newBox(t)
	addr := freeAddr(t)
	b.write(b.render(spec{syncID: 1, interval: 10, stores: []string{"central"}, listen: addr,
		rows: []row{{syncID: 12, user: "clinic-12", passwordHash: mustHash(t, "pw"), stores: []string{"a"}}}}))
	b.start()
	c := &syncapi.Client{BaseURL: "http://" + addr, User: "clinic-12", PasswordSHA256: passwd.SHA256Hex("pw"), HardwareID: "hw-12"}
	if _, err := c.Site(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := c.Site(context.Background()); err != nil { // within the minute: kept in memory only
		t.Fatal(err)
	}
	sites, _ := b.client.Sites(context.Background())
	last := sites[0].LastContact
	b.stop()
	b.start()
	sites, _ = b.client.Sites(context.Background())
	if !sites[0].LastContact.Equal(last) {
		t.Errorf("last contact after a restart %v, want %v", sites[0].LastContact, last)
	}
}
