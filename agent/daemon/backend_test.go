package daemon

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"

	"syncagent/agent/control"
	"syncagent/agent/prefs"
	"syncagent/queue"
)

// TestWrite_deleteNeedsActiveStore protects apps on a satellite from deleting
// what the primary would refuse: central data, or another store's record.
func TestWrite_deleteNeedsActiveStore(t *testing.T) {
	l, err := queue.OpenLocal(filepath.Join(t.TempDir(), "s.db"), queue.LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Pulled from the primary: central data and a record of store a.
	if _, err := l.Apply([]queue.Record{
		{Table: "item", ID: "i1", Action: queue.Insert, Data: json.RawMessage(`{"name":"x"}`)},
		{Table: "stock", ID: "s1", Action: queue.Insert, Data: json.RawMessage(`{"store_ID":"a"}`)},
	}); err != nil {
		t.Fatal(err)
	}
	p, err := prefs.Parse("p.toml", []byte("version = 1\n[site]\nsync_id = 12\nstores = [\"a\"]\n[[sync_with]]\nsync_id = 1\nuser = \"u\"\npassword_sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nurl = \"http://h\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := &localRecords{local: l, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a.stores.Store(&p.Site.Stores)
	var ce *control.Error
	if err := a.del("item", "i1"); !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
		t.Errorf("deleting central data on a satellite: %v", err)
	}
	if _, found, _ := l.Get("item", "i1"); !found {
		t.Error("the central record was deleted")
	}
	if err := a.del("stock", "s1"); err != nil {
		t.Errorf("deleting a record of an active store: %v", err)
	}
}
