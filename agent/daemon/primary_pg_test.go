package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"syncagent/agent/passwd"
	"syncagent/agent/syncapi"
	"syncagent/testtools/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// pgNode is a primary box whose state is in the PostgreSQL database dsn,
// listening at a known address, signing password tokens with keyFile.
func pgNode(t *testing.T, dsn, keyFile string, rows []row) (*box, string) {
	b := newBox(t)
	addr := freeAddr(t)
	s := spec{syncID: 1, interval: 10, stores: []string{"central"}, listen: addr, rows: rows,
		central: centralSpec{database: dsn, authKeyFile: keyFile, maxConns: 4}}
	b.write(b.render(s))
	return b, addr
}

func authKeyFile(t *testing.T) string {
	f := filepath.Join(t.TempDir(), "auth.key")
	if err := os.WriteFile(f, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestPrimary_postgresTwoNodes protects the daemon's wiring of [central]
// database: two primary processes' worth of agents on one database serve
// the same state — a record pushed through one node is queued for the
// other site and pulled and acknowledged through the other node, central
// data written on one is read by cursor through the other — and neither
// keeps a central.db.
func TestPrimary_postgresTwoNodes(t *testing.T) {
	dsn, key := pgtest.DSN(t), authKeyFile(t)
	rows := []row{
		{syncID: 12, user: "clinic-12", passwordHash: mustHash(t, "pw"), stores: []string{"a"}},
		{syncID: 14, user: "clinic-14", passwordHash: mustHash(t, "pw"), stores: []string{"a"}},
	}
	a, addrA := pgNode(t, dsn, key, rows)
	b, addrB := pgNode(t, dsn, key, rows)
	a.start()
	b.start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	site := func(addr string, id int) *syncapi.Client {
		return &syncapi.Client{BaseURL: "http://" + addr, User: fmt.Sprintf("clinic-%d", id), PasswordSHA256: passwd.SHA256Hex("pw"), HardwareID: fmt.Sprintf("hw-%d", id)}
	}
	push := syncapi.Push{Data: []syncapi.QueuedRecord{{SyncOutID: "1", TableName: "stock", RecordID: "s1", Action: "insert", RecordData: json.RawMessage(`{"store_ID":"a","qty":3}`)}}}
	if _, err := site(addrA, 12).Push(ctx, push); err != nil {
		t.Fatalf("push through node A: %v", err)
	}
	q, err := site(addrB, 14).QueuedRecords(ctx, 100)
	if err != nil || len(q.Data) != 1 || q.Data[0].RecordID != "s1" {
		t.Fatalf("site 14's queue through node B: %+v, %v; want s1", q, err)
	}
	if err := site(addrB, 14).Acknowledge(ctx, []string{q.Data[0].SyncOutID}); err != nil {
		t.Fatal(err)
	}
	if q, err := site(addrA, 14).QueuedRecords(ctx, 100); err != nil || len(q.Data) != 0 {
		t.Errorf("site 14's queue through node A after node B took the acknowledgement: %+v, %v", q, err)
	}
	if _, err := a.client.PutRecord(ctx, "item", "I1", json.RawMessage(`{"name":"aspirin"}`)); err != nil {
		t.Fatalf("central write on node A: %v", err)
	}
	c, err := site(addrB, 12).CentralRecords(ctx, 0, 100)
	if err != nil || !strings.Contains(fmt.Sprint(c.Data), "I1") {
		t.Errorf("central data through node B: %+v, %v; want I1", c, err)
	}
	if r, err := b.client.GetRecord(ctx, "item", "I1"); err != nil || !strings.Contains(string(r.Data), "aspirin") {
		t.Errorf("node B's local API reads %+v, %v", r, err)
	}
	for _, n := range []*box{a, b} {
		if st := n.status(); st.Storage != dsn {
			t.Errorf("status shows storage %q, want the database %s", st.Storage, dsn)
		}
		if _, err := os.Stat(filepath.Join(n.state, "central.db")); !os.IsNotExist(err) {
			t.Errorf("a node on PostgreSQL made %s/central.db (%v)", n.state, err)
		}
	}
	// A node restarted on the database: its sites are let in by the
	// shared key's token, and the lock sees the database's sites.
	a.stop()
	a.start()
	if _, err := site(addrA, 12).Site(ctx); err != nil {
		t.Errorf("after node A restarted: %v", err)
	}
}

// TestPrimary_postgresUnreachable protects the start's error: a database
// nobody listens at fails the start, saying what to check, and never falls
// back to a datafile.
func TestPrimary_postgresUnreachable(t *testing.T) {
	b, _ := pgNode(t, "postgres://syncagent@"+freeAddr(t)+"/syncagent?sslmode=disable&connect_timeout=2", "", nil)
	err := b.tryStart()
	if err == nil {
		t.Fatal("started without its database")
	}
	for _, want := range []string{"cannot serve from the database", "pg_hba.conf", "database_password_file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("start error lacks %q: %v", want, err)
		}
	}
	if _, err := os.Stat(filepath.Join(b.state, "central.db")); !os.IsNotExist(err) {
		t.Errorf("fell back to a datafile: %v", err)
	}
}

// TestPrimary_authKeyFile protects [central] auth_key_file: a missing or
// short key fails the start saying how to make one; a good one is used.
func TestPrimary_authKeyFile(t *testing.T) {
	short := filepath.Join(t.TempDir(), "short.key")
	os.WriteFile(short, []byte("too short"), 0o600)
	for _, f := range []string{filepath.Join(t.TempDir(), "missing.key"), short} {
		b := newBox(t)
		s := spec{syncID: 1, interval: 10, stores: []string{"central"}, listen: freeAddr(t), central: centralSpec{authKeyFile: f}}
		b.write(b.render(s))
		if err := b.tryStart(); err == nil || !strings.Contains(err.Error(), "head -c 32 /dev/urandom") {
			t.Errorf("auth_key_file %s: start error %v", filepath.Base(f), err)
		}
	}
}
