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
