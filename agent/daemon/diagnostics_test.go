package daemon

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"syncagent/agent/passwd"
	"syncagent/agent/prefs"
	"syncagent/agent/syncapi"
	"syncagent/agent/unlock"
)

// Nothing secret leaves the box: the bundle describes the prefs without
// the password's SHA-256, any password hash, the unlock code or the
// keyring, and blanks them even where a log line carries them.
func TestBundle_noSecrets(t *testing.T) {
	dir := t.TempDir()
	pub, _, err := unlock.Keygen(5)
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "vendor-5.pub")
	os.WriteFile(keys, []byte(pub), 0o644)
	sha := passwd.SHA256Hex("clinic secret")
	adminHash, _ := passwd.Hash(passwd.SHA256Hex("admin secret"))
	code := "ABCDE-FGHJK-MNPQR-STVWX-YZ012-34567"
	p := &prefs.Prefs{Version: 1, Site: prefs.Site{SyncID: 12, IntervalMinutes: 10, Stores: []string{"a"}},
		Paths:    prefs.Paths{StateDir: dir, ControlSocket: dir + "/s", VendorKeys: keys},
		SyncWith: []prefs.Peer{{SyncID: 1, User: "clinic-12", PasswordSHA256: sha, URL: "https://central.example.org"}},
		Unlock:   prefs.Unlock{Code: code}, Admin: prefs.Admin{PasswordHash: adminHash}}
	ring := newLogRing()
	for i := range logRingLines {
		fmt.Fprintf(ring, "time=2026-12-02T10:%02d:00Z level=INFO msg=\"sync cycle done\" component=satellite kind=sync pushed=%d pulled=%d took=%dms\n", i%60, i*7%13, i*11%17, 800+i%300)
	}
	fmt.Fprintf(ring, "level=WARN msg=oops password=%s code=%s hash=%s key=%s\n", sha, code, adminHash, strings.Fields(pub)[len(strings.Fields(pub))-1])
	b := Bundle{Format: 1, Prefs: prefsSettings(p), Log: ring.Lines()}
	out, err := encodeBundle(b, prefsSecrets(p))
	if err != nil {
		t.Fatal(err)
	}
	zr, _ := gzip.NewReader(bytes.NewReader(out))
	raw, _ := io.ReadAll(zr)
	for name, secret := range map[string]string{"password SHA-256": sha, "admin password hash": adminHash, "unlock code": code} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the bundle holds the %s", name)
		}
	}
	for _, f := range strings.Fields(pub) {
		if len(f) >= 20 && bytes.Contains(raw, []byte(f)) {
			t.Errorf("the bundle holds the keyring's %q", f)
		}
	}
	if !bytes.Contains(raw, []byte(`"sync_with[0].password_sha256","value":"(set)"`)) {
		t.Errorf("the prefs do not say the password is set:\n%.500s", raw)
	}
	t.Logf("a full log ring (%d lines) and the prefs: %d bytes of JSON, %d gzip", len(b.Log), len(raw), len(out))
}

// The health block stays within 1 KB whatever the box reports.
func TestHealth_bounded(t *testing.T) {
	h := syncapi.Health{Version: strings.Repeat("v", 100), Outbox: 1 << 30, OutboxAge: 1 << 40, Aside: 1 << 30, LastError: strings.Repeat("é error ", 400),
		LastErrorAt: 1 << 40, LastSuccess: 1 << 40, DataBytes: 1 << 50, FreeBytes: 1 << 50, Clock: 1 << 50, Uptime: 1 << 40,
		Link: strings.Repeat("link ", 100), Interval: 10080, OutboxSeq: strings.Repeat("9", 150), Acked: 1 << 60}
	if n := len(syncapi.EncodeHealth(h)); n > syncapi.MaxHealth {
		t.Fatalf("worst-case health block is %d bytes", n)
	}
	typical := syncapi.EncodeHealth(syncapi.Health{Version: "0.3.0", Outbox: 40, OutboxAge: 3600, Aside: 1, LastError: "push: POST queued_records: context deadline exceeded",
		LastErrorAt: 1796000000, LastSuccess: 1795990000, DataBytes: 2 << 20, FreeBytes: 3 << 30, Clock: 1796000000123, Uptime: 86400,
		Link: "auto: 420 records (about 125 kB) a request; link rtt 812ms, 9.8 kB/s, 0.002 failures/s", Interval: 10, OutboxSeq: "k3j2-10422", Acked: 99812})
	t.Logf("health block: worst case within %d bytes; a typical one %d bytes", syncapi.MaxHealth, len(typical))
}
