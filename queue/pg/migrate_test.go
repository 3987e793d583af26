package pg

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"syncagent/testtools/pgtest"
)

func testPool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// steps are migrations that fail if any runs twice (no IF NOT EXISTS, and a
// counter row per run).
var steps = []migration{
	{1, "one", `CREATE TABLE runs (version integer PRIMARY KEY); INSERT INTO runs VALUES (1); CREATE TABLE a (i int)`},
	{2, "two", `INSERT INTO runs VALUES (2); CREATE TABLE b (i int); SELECT pg_sleep(0.05)`},
	{3, "three", `INSERT INTO runs VALUES (3); ALTER TABLE a ADD COLUMN j int`},
}

// TestMigrate_Idempotent protects a restart: migrations already applied are
// not run again.
func TestMigrate_Idempotent(t *testing.T) {
	pool := testPool(t, pgtest.DSN(t))
	ctx := ctxFor(t)
	if n, err := migrate(ctx, pool, steps[:2]); err != nil || n != 2 {
		t.Fatalf("first migrate = %d, %v", n, err)
	}
	if n, err := migrate(ctx, pool, steps[:2]); err != nil || n != 0 {
		t.Fatalf("second migrate = %d, %v", n, err)
	}
	if n, err := migrate(ctx, pool, steps); err != nil || n != 1 {
		t.Fatalf("migrate with a new step = %d, %v", n, err)
	}
	var runs int
	pool.QueryRow(ctx, "SELECT count(*) FROM runs").Scan(&runs)
	if runs != 3 {
		t.Fatalf("%d runs recorded, want 3", runs)
	}
}

// TestMigrate_Concurrent protects several nodes starting at once: each
// migration runs exactly once, and every node starts.
func TestMigrate_Concurrent(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := ctxFor(t)
	const nodes = 6
	var wg sync.WaitGroup
	applied := make([]int, nodes)
	errs := make([]error, nodes)
	for i := range nodes {
		pool := testPool(t, dsn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied[i], errs[i] = migrate(ctx, pool, steps)
		}()
	}
	wg.Wait()
	total := 0
	for i := range nodes {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		total += applied[i]
	}
	var runs int
	testPool(t, dsn).QueryRow(ctx, "SELECT count(*) FROM runs").Scan(&runs)
	if total != len(steps) || runs != len(steps) {
		t.Fatalf("applied %d in total, %d runs recorded; want %d", total, runs, len(steps))
	}
}

// TestMigrate_FailedStepLeavesNothing protects the one-transaction rule: a
// failing migration leaves neither its changes nor its row.
func TestMigrate_FailedStepLeavesNothing(t *testing.T) {
	pool := testPool(t, pgtest.DSN(t))
	ctx := ctxFor(t)
	bad := append(steps[:1:1], migration{2, "bad", `CREATE TABLE half (i int); SELECT 1/0`})
	if _, err := migrate(ctx, pool, bad); err == nil || !strings.Contains(err.Error(), "migration 2 (bad)") {
		t.Fatalf("migrate = %v, want migration 2's error", err)
	}
	var have int
	var half bool
	pool.QueryRow(ctx, "SELECT max(version) FROM schema_migrations").Scan(&have)
	pool.QueryRow(ctx, "SELECT to_regclass('half') IS NOT NULL").Scan(&half)
	if have != 1 || half {
		t.Fatalf("schema at %d, half table %v; want 1 and none", have, half)
	}
	if n, err := migrate(ctx, pool, steps); err != nil || n != 2 {
		t.Fatalf("fixed migrate = %d, %v", n, err)
	}
}

// TestMigrate_NewerSchemaRefused protects a rolled-back binary from running
// on a schema it does not know.
func TestMigrate_NewerSchemaRefused(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := ctxFor(t)
	s := openStore(t, dsn, Options{})
	if _, err := s.pool.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES (999, 'future')"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dsn, Options{}); err == nil || !strings.Contains(err.Error(), "newer than this syncagent knows") {
		t.Fatalf("Open on a newer schema = %v", err)
	}
}

// TestLoadMigrations protects the numbering rule of the embedded files.
func TestLoadMigrations(t *testing.T) {
	ms, err := loadMigrations(migrationFiles)
	if err != nil || len(ms) == 0 || ms[0].Version != 1 {
		t.Fatalf("embedded migrations = %d, %v", len(ms), err)
	}
	for _, fsys := range []fstest.MapFS{
		{"migrations/0001_a.sql": {}, "migrations/0003_c.sql": {}},
		{"migrations/a.sql": {}},
		{"migrations/0000_zero.sql": {}},
	} {
		if _, err := loadMigrations(fsys); err == nil {
			t.Errorf("loadMigrations(%v) accepted", fsys)
		}
	}
}
