package queue

import (
	"errors"
	"strings"
	"testing"
)

func TestLocal_WriteGet(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	e := mustWrite(t, l, storeRec("item", "a", "s1", 1))
	if e.Seq != 1 || !strings.HasSuffix(e.SyncOutID, "-00000000000000000001") || e.Size <= 0 {
		t.Fatalf("entry = %+v", e)
	}
	got, ok, err := l.Get("item", "a")
	if err != nil || !ok || dataN(t, got) != 1 || got.StoreID() != "s1" {
		t.Fatalf("Get = %+v, %v, %v", got, ok, err)
	}
	if _, ok, _ := l.Get("item", "zz"); ok {
		t.Fatal("Get of a missing record found it")
	}
	if got, want := l.Count(), 1; got != want {
		t.Fatalf("Count = %d, want %d", got, want)
	}
}

// Canonical form: "Insert" as the reference client sends it is stored as insert.
func TestLocal_WriteNormalizesAction(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	r := storeRec("item", "a", "s1", 1)
	r.Action = "Insert"
	e := mustWrite(t, l, r)
	if e.Record.Action != Insert {
		t.Fatalf("action = %q, want insert", e.Record.Action)
	}
}

func TestLocal_WriteRefusesInvalid(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	for _, r := range []Record{
		{Table: "", ID: "a", Action: Insert},
		{Table: "t", ID: "a", Action: "upsert"},
		{Table: "t", ID: "a\r\nb", Action: Insert},
		{Table: "t", ID: "a", Action: Insert, Data: []byte(`[1,2]`)},
		{Table: "t", ID: "a", Action: Merge, Data: []byte(`{}`)},
	} {
		if _, err := l.Write(r); err == nil {
			t.Errorf("Write(%+v) succeeded", r)
		}
	}
	if l.Count() != 0 || l.OutboxLen() != 0 {
		t.Fatalf("refused writes changed state: count %d outbox %d", l.Count(), l.OutboxLen())
	}
}

func TestLocal_ListAndTables(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	for _, id := range []string{"c", "a", "b", "d"} {
		mustWrite(t, l, storeRec("item", id, "s1", 1))
	}
	mustWrite(t, l, storeRec("name", "x", "s1", 1))
	mustWrite(t, l, storeRec("gone", "x", "s1", 1))
	mustWrite(t, l, del("gone", "x"))
	mustWrite(t, l, del("item", "b"))
	page, err := l.List("item", "", 2)
	if err != nil || len(page) != 2 || page[0].ID != "a" || page[1].ID != "c" {
		t.Fatalf("List page 1 = %+v, %v", page, err)
	}
	page, err = l.List("item", "c", 0)
	if err != nil || len(page) != 1 || page[0].ID != "d" {
		t.Fatalf("List page 2 = %+v, %v", page, err)
	}
	tables, err := l.Tables()
	if err != nil || strings.Join(tables, ",") != "item,name" {
		t.Fatalf("Tables = %v, %v", tables, err)
	}
	if got, want := l.Count(), 4; got != want {
		t.Fatalf("Count = %d, want %d", got, want)
	}
}

func TestLocal_CursorMeta(t *testing.T) {
	path := tempPath(t, "sat.db")
	l := openLocal(t, path, LocalOptions{})
	if v, err := l.Cursor("central"); err != nil || v != 0 {
		t.Fatalf("Cursor = %d, %v", v, err)
	}
	if err := l.SetCursor("central", 42); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := l.Meta("sizer"); ok || err != nil {
		t.Fatalf("Meta of unset key = %v, %v", ok, err)
	}
	blob := []byte("*3\r\n$3\r\nset\r\n\x00binary")
	if err := l.SetMeta("sizer", blob); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = openLocal(t, path, LocalOptions{})
	if v, err := l.Cursor("central"); err != nil || v != 42 {
		t.Fatalf("Cursor after reopen = %d, %v", v, err)
	}
	if v, ok, err := l.Meta("sizer"); err != nil || !ok || string(v) != string(blob) {
		t.Fatalf("Meta after reopen = %q, %v, %v", v, ok, err)
	}
	if err := l.SetCursor("bad\nname", 1); err == nil {
		t.Fatal("SetCursor accepted a name with a newline")
	}
}

func TestLocal_Closed(t *testing.T) {
	l := openLocal(t, tempPath(t, "sat.db"), LocalOptions{})
	l.Close()
	if _, err := l.Write(storeRec("t", "a", "s", 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

// A second process (here: a second open) cannot append to the same datafile.
func TestLocal_OneOpenerAtATime(t *testing.T) {
	path := tempPath(t, "sat.db")
	l := openLocal(t, path, LocalOptions{})
	if _, err := OpenLocal(path, LocalOptions{}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second open: %v", err)
	}
	l.Close()
	openLocal(t, path, LocalOptions{}).Close()
}
