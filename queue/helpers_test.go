package queue

import (
	"encoding/json"
	"fmt"
	"github.com/tidwall/buntdb"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// testLogger shows the queue's log lines in verbose test output.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func rec(table, id string, data map[string]any) Record {
	b, err := json.Marshal(data)
	if err != nil {
		panic(err)
	}
	return Record{Table: table, ID: id, Action: Update, Data: b}
}

func storeRec(table, id, store string, n int) Record {
	return rec(table, id, map[string]any{StoreField: store, "n": n})
}

func del(table, id string) Record { return Record{Table: table, ID: id, Action: Delete} }

func openLocal(t testing.TB, path string, opts LocalOptions) *Local {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	l, err := OpenLocal(path, opts)
	if err != nil {
		t.Fatalf("OpenLocal: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func tempPath(t testing.TB, name string) string { return filepath.Join(t.TempDir(), name) }

func mustWrite(t testing.TB, l *Local, r Record) OutboxEntry {
	t.Helper()
	e, err := l.Write(r)
	if err != nil {
		t.Fatalf("Write(%s/%s): %v", r.Table, r.ID, err)
	}
	return e
}

func dataN(t testing.TB, r Record) int {
	t.Helper()
	var m struct{ N int }
	if err := json.Unmarshal(r.Data, &m); err != nil {
		t.Fatalf("data of %s/%s: %v", r.Table, r.ID, err)
	}
	return m.N
}

func ids(es []OutboxEntry) string {
	s := ""
	for _, e := range es {
		s += fmt.Sprintf("%s/%s ", e.Record.Table, e.Record.ID)
	}
	return s
}

type buntTx = buntdb.Tx

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
