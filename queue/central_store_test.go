package queue_test

import (
	"path/filepath"
	"sync"
	"testing"

	"syncagent/queue"
	"syncagent/queue/storetest"
)

// buntBackend opens BuntDB primaries in each test's temporary directory.
type buntBackend struct {
	mu   sync.Mutex
	dirs map[string]string // test name → its directory
}

func (b *buntBackend) Open(t *testing.T, name string) queue.PrimaryStore {
	t.Helper()
	b.mu.Lock()
	dir, ok := b.dirs[t.Name()]
	if !ok {
		dir = t.TempDir()
		b.dirs[t.Name()] = dir
	}
	b.mu.Unlock()
	c, err := queue.OpenCentral(filepath.Join(dir, name+".db"), queue.CentralOptions{})
	if err != nil {
		t.Fatalf("OpenCentral: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestCentral_Contract runs the storage contract's suite on BuntDB.
func TestCentral_Contract(t *testing.T) {
	storetest.Run(t, &buntBackend{dirs: map[string]string{}})
}
