package pgtest

import (
	"os"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestDSN_FreshDatabases protects the one-database-per-test promise: two
// tests' databases are distinct and reachable.
func TestDSN_FreshDatabases(t *testing.T) {
	a, b := DSN(t), DSN(t)
	if a == b || !strings.Contains(a, "127.0.0.1") {
		t.Fatalf("DSNs %q %q", a, b)
	}
	c := Shared(t)
	db := a[strings.LastIndex(a, "/")+1 : strings.Index(a, "?")]
	if err := c.Exec(db, "CREATE TABLE x (i int); INSERT INTO x VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(c.Dir()); err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Fatalf("cluster dir %v %v: want private", st.Mode(), err)
	}
}

// TestCluster_QueryMemory protects what the benchmarks read from a
// cluster: a query's rows, and the server's memory and CPU.
func TestCluster_QueryMemory(t *testing.T) {
	c := Shared(t)
	dsn := DSN(t)
	db := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	got, err := c.Query(db, "SELECT 1, 'a' UNION ALL SELECT 2, 'b' ORDER BY 1")
	if want := "1|a\n2|b"; err != nil || got != want {
		t.Fatalf("Query = %q, %v; want %q", got, err, want)
	}
	if _, err := c.Query(db, "SELECT nonsense"); err == nil {
		t.Fatal("a failing query gave no error")
	}
	if m := c.Memory(); m < 1<<20 || m > 4<<30 {
		t.Fatalf("Memory = %d bytes: want the server's few MB", m)
	}
	if c.CPU() <= 0 {
		t.Fatal("CPU = 0 after initdb and queries")
	}
}
