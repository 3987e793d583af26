package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"syncagent/agent/control"
)

// TestReload_editors protects hot reload with the real file watcher, for the
// ways editors and tools write files: in place, rename-and-replace (vim,
// sed -i), and a symlink swapped to a new target (config management).
func TestReload_editors(t *testing.T) {
	cases := []struct {
		name  string
		write func(b *box, text string)
	}{
		{"in place", func(b *box, text string) {
			f, err := os.OpenFile(b.prefs, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(text)
			f.Close()
		}},
		{"rename and replace", func(b *box, text string) {
			tmp := b.prefs + ".swp"
			os.WriteFile(tmp, []byte(text), 0o644)
			os.Rename(tmp, b.prefs)
		}},
		{"symlink swap", func(b *box, text string) {
			target := filepath.Join(b.dir, "prefs-v2.toml")
			os.WriteFile(target, []byte(text), 0o644)
			link := b.prefs + ".new"
			os.Symlink(target, link)
			os.Rename(link, b.prefs)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBox(t)
			first := filepath.Join(b.dir, "prefs-v1.toml")
			os.WriteFile(first, []byte(b.satellitePrefs(12, 60, `"a"`, "")), 0o644)
			if err := os.Symlink(first, b.prefs); err != nil {
				t.Fatal(err)
			}
			b.start()
			c.write(b, b.satellitePrefs(12, 7, `"a"`, ""))
			eventually(t, "the interval edit to apply", func() bool { return b.status().Interval == "7m0s" })
			// A broken file is refused and the running prefs stay.
			c.write(b, "version = 1\n[site\n")
			eventually(t, "the broken file to be refused", func() bool { return b.status().Prefs.State == "rejected" })
			if b.status().Interval != "7m0s" {
				t.Error("a broken file changed the running prefs")
			}
		})
	}
}

// TestRecords_localAPI protects the apps' access: writes go to the datafile
// and outbox, a store not active here is refused at write time, and a full
// outbox refuses writes with a clear error instead of dropping them.
func TestRecords_localAPI(t *testing.T) {
	b := newBox(t)
	b.write(b.satellitePrefs(12, 0, `"a"`, "[limits]\noutbox_max_records = 2\n"))
	b.start()
	ctx := context.Background()
	put := func(id, data string) error {
		_, err := b.client.PutRecord(ctx, "stock", id, json.RawMessage(data))
		return err
	}
	if err := put("1", `{"store_ID":"a","qty":1}`); err != nil {
		t.Fatal(err)
	}
	got, err := b.client.GetRecord(ctx, "stock", "1")
	if err != nil || got.Action != "insert" || string(got.Data) != `{"store_ID":"a","qty":1}` {
		t.Fatalf("get = %+v, %v", got, err)
	}
	var ce *control.Error
	if err := put("2", `{"store_ID":"zzz"}`); !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
		t.Errorf("foreign store: %v", err)
	}
	if err := put("3", `{"qty":1}`); !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
		t.Errorf("no store on a satellite: %v", err)
	}
	if err := put("4", `{"store_ID":"a"}`); err != nil {
		t.Fatal(err)
	}
	if err := put("5", `{"store_ID":"a"}`); !errors.As(err, &ce) || ce.Status != http.StatusInsufficientStorage {
		t.Errorf("third write with outbox_max_records = 2: %v", err)
	}
	if _, err := b.client.GetRecord(ctx, "stock", "5"); err == nil {
		t.Error("a refused write was stored")
	}
	recs, err := b.client.ListRecords(ctx, "stock", "", 10)
	if err != nil || len(recs) != 2 {
		t.Errorf("list = %d records, %v", len(recs), err)
	}
	if st := b.status(); st.OutboxLength != 2 || st.Records != 2 {
		t.Errorf("status outbox %d records %d, want 2 and 2", st.OutboxLength, st.Records)
	}
	if list, err := b.client.Aside(ctx); err != nil || len(list) != 0 {
		t.Errorf("aside = %v, %v; want empty", list, err)
	}
	if err := b.client.RetryAside(ctx, "stock", "4"); !errors.As(err, &ce) || ce.Status != http.StatusNotFound {
		t.Errorf("retry of a record not set aside: %v", err)
	}
	if err := b.client.DeleteRecord(ctx, "stock", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.GetRecord(ctx, "stock", "1"); !errors.As(err, &ce) || ce.Status != http.StatusNotFound {
		t.Errorf("deleted record: %v", err)
	}
}

// TestLoop_intervalZeroPauses protects the pause: no cycle is planned, status
// says why, and a technician can still sync by hand.
func TestLoop_intervalZeroPauses(t *testing.T) {
	b := newBox(t)
	b.write(b.satellitePrefs(12, 0, `"a"`, ""))
	b.start()
	st := b.status()
	if !st.NextSync.IsZero() || st.SyncEnabled || !contains(st.DisabledReason, "paused") {
		t.Fatalf("paused agent plans %v, enabled %v, reason %q", st.NextSync, st.SyncEnabled, st.DisabledReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := b.client.Sync(ctx, false)
	if err != nil {
		t.Fatalf("manual sync while paused was refused: %v", err)
	}
	if c.Error == "" {
		t.Error("a sync against no primary reported success")
	}
	b.write(b.satellitePrefs(12, 5, `"a"`, ""))
	b.reload()
	eventually(t, "a cycle to be planned after unpausing", func() bool { return !b.status().NextSync.IsZero() })
}
