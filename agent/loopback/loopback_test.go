package loopback

import (
	"testing"

	"syncagent/agent/passwd"
	"syncagent/agent/prefs"
)

func init() { passwd.Iterations = 1000 }

// TestWrite protects the layout: every prefs file is valid, the satellites
// point at the primary, and each satellite's password matches its row.
func TestWrite(t *testing.T) {
	l, err := Write(t.TempDir(), 1,
		&Site{Name: "primary", SyncID: 1},
		&Site{Name: "a", SyncID: 12, Stores: []string{"s1"}},
		&Site{Name: "b", SyncID: 13, Stores: []string{"s2"}})
	if err != nil {
		t.Fatal(err)
	}
	primary, err := prefs.Load(l.Sites[0].Prefs)
	if err != nil {
		t.Fatal(err)
	}
	if primary.Role() != prefs.RolePrimary || len(primary.SyncWith) != 2 || primary.Listen.Address != l.Addr {
		t.Fatalf("primary prefs: %+v", primary)
	}
	for i, s := range l.Sites[1:] {
		p, err := prefs.Load(s.Prefs)
		if err != nil {
			t.Fatal(err)
		}
		peer := p.Primary()
		if peer == nil || peer.URL != "http://"+l.Addr || p.Paths.ControlSocket != s.Socket {
			t.Fatalf("%s: %+v", s.Name, p)
		}
		if ok, _ := passwd.Verify(primary.SyncWith[i].PasswordHash, peer.PasswordSHA256); !ok {
			t.Errorf("%s: password does not match its row on the primary", s.Name)
		}
	}
	if _, err := Write(t.TempDir(), 1, &Site{Name: "a", SyncID: 12}); err == nil {
		t.Error("a layout without a primary first was accepted")
	}
}
