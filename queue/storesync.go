package queue

import (
	"os"
	"sync"
	"sync/atomic"

	"github.com/tidwall/buntdb"
)

// Fsync apart from BuntDB, for the satellite's datafile. BuntDB with
// SyncPolicy Always drops an fsync's error (buntdb.go, Tx.Commit:
// `_ = tx.db.file.Sync()`), so a write the disk failed to keep was
// answered as durable. A store that syncs apart has BuntDB only write, and
// fsyncs the file itself, through a second descriptor (fsync flushes the
// file, whichever descriptor asks), still inside update: nothing is
// answered, and no reader sees a commit, before its fsync returned.
type fileSync struct {
	mu     sync.Mutex // held across an fsync, so compaction cannot swap f under it
	f      *os.File
	failed atomic.Pointer[error]
	syncs  atomic.Int64 // fsyncs done, for tests and benchmarks

	hook func() error // set by tests (under mu): runs after each fsync, can fail or hold it
}

// syncApart switches s to fsyncing apart from BuntDB.
func (s *store) syncApart() error {
	fs := &fileSync{}
	if err := fs.reopen(s.db, s.path); err != nil {
		return storageError("cannot open datafile "+s.path+" for fsync", err)
	}
	s.fsync = fs
	return nil
}

// reopen points fs at db's file (again, after a compaction renamed a new
// one over it).
func (fs *fileSync) reopen(db *buntdb.DB, path string) error {
	if err := db.SetConfig(buntdb.Config{SyncPolicy: buntdb.Never, AutoShrinkDisabled: true}); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	fs.mu.Lock()
	old := fs.f
	fs.f = f
	fs.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func (fs *fileSync) close() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.f != nil {
		fs.f.Close()
		fs.f = nil
	}
}

// err is the failed fsync that ended the store, or nil.
func (fs *fileSync) err() error {
	if e := fs.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// sync makes everything written so far durable. A failure is for good:
// the kernel may have dropped the pages it could not write and says so
// only once, so what memory holds can no longer be taken to be on disk;
// the store refuses everything after it, and a restart rereads what the
// file really holds.
func (s *store) sync() error {
	fs := s.fsync
	if fs == nil {
		return nil
	}
	if err := fs.err(); err != nil {
		return err
	}
	fs.mu.Lock()
	var err error
	if fs.f == nil {
		err = ErrClosed
	} else if err = fs.f.Sync(); err == nil && fs.hook != nil {
		err = fs.hook()
	}
	fs.syncs.Add(1)
	fs.mu.Unlock()
	if err == nil || err == ErrClosed {
		return err
	}
	e := storageError("cannot fsync datafile "+s.path+" (restart the agent: it rereads what the disk holds)", err)
	fs.failed.CompareAndSwap(nil, &e)
	return fs.err()
}
