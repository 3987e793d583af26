package pg

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"syncagent/queue"
	"syncagent/queue/storetest"
	"syncagent/testtools/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// pgBackend gives each (test, name) its own database in the shared cluster.
type pgBackend struct {
	mu   sync.Mutex
	dsns map[string]string
	opts Options
}

func (b *pgBackend) Open(t *testing.T, name string) queue.PrimaryStore {
	t.Helper()
	b.mu.Lock()
	key := t.Name() + "/" + name
	dsn, ok := b.dsns[key]
	if !ok {
		dsn = pgtest.DSN(t)
		b.dsns[key] = dsn
	}
	b.mu.Unlock()
	return openStore(t, dsn, b.opts)
}

func openStore(t testing.TB, dsn string, opts Options) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, dsn, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestStore_Contract runs the storage contract's suite on PostgreSQL.
func TestStore_Contract(t *testing.T) {
	storetest.Run(t, &pgBackend{dsns: map[string]string{}})
}

// TestStore_ContractSmallPartitions runs it again with a central log
// partition every few cursors, so writes cross partitions.
func TestStore_ContractSmallPartitions(t *testing.T) {
	storetest.Run(t, &pgBackend{dsns: map[string]string{}, opts: Options{LogPartition: 2}})
}
