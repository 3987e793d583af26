package queue

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tidwall/buntdb"

	"syncagent/jsonscan"
)

// store owns one BuntDB file. It is not safe for concurrent use on its own:
// the owning Local or Central serialises access with its mutex, because
// compaction swaps the underlying *buntdb.DB.
type store struct {
	path    string
	log     *slog.Logger
	db      *buntdb.DB // nil once closed or after a failed compaction
	indexes func(*buntdb.DB) error
	lock    *os.File  // held until close: one process per datafile
	fsync   *fileSync // set when the owner syncs apart from BuntDB (storesync.go)

	err         error       // why db is nil (closed, or the reopen that failed)
	liveBytes   int64       // size of the live data at the last open or compaction
	grown       int64       // what keys new since then added to it (new records are not garbage)
	txGrown     int64       // the update in progress's share of grown, counted once it commits
	minCompact  int64       // never compact a file smaller than this
	commits     int         // commits since the last size check
	updates     int         // commits (fsyncs) since open, for tests
	compactions int         // for tests and logs
	retryAfter  time.Time   // after a failed compaction, do not retry before this
	online      bool        // compact without holding the owner's lock (compact_online.go)
	pending     *compaction // the online compaction on its way, if any
}

const (
	compactSuffix     = ".compact"
	defaultMinCompact = 8 << 20
	compactCheckEvery = 128
	compactRetry      = 10 * time.Minute
)

// openDB opens path with buntdb, every commit fsynced and buntdb's own
// shrink off (it renames an unsynced temp file over the datafile; ours in
// compact syncs it first).
func openDB(path string, indexes func(*buntdb.DB) error) (*buntdb.DB, error) {
	db, err := buntdb.Open(path)
	if err != nil {
		return nil, err
	}
	if err := db.SetConfig(buntdb.Config{SyncPolicy: buntdb.Always, AutoShrinkDisabled: true}); err != nil {
		db.Close()
		return nil, err
	}
	if indexes != nil {
		if err := indexes(db); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// openStore repairs the file at path if needed and opens it. When the file
// is corrupt in the middle it is not opened: the store is nil and
// repair.salvage holds what could be read.
func openStore(path string, log *slog.Logger, indexes func(*buntdb.DB) error) (*store, repair, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, repair{}, fmt.Errorf("cannot create state directory: %w", err)
	}
	lock, err := lockFile(path)
	if err != nil {
		return nil, repair{}, err
	}
	rep, err := prepareFile(path, log)
	if err == nil && rep.salvage == nil {
		var f *os.File // buntdb would create it 0666
		if f, err = os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600); err == nil {
			f.Close()
		}
	}
	if err != nil || rep.salvage != nil {
		unlock(lock)
		return nil, rep, err
	}
	db, err := openDB(path, indexes)
	if err != nil {
		unlock(lock)
		return nil, rep, fmt.Errorf("cannot open datafile %s: %w", path, err)
	}
	return &store{path: path, log: log, db: db, indexes: indexes, lock: lock, minCompact: defaultMinCompact}, rep, nil
}

func unlock(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// usable reports why the store cannot be used, or nil.
func (s *store) usable() error {
	if s.db == nil {
		return s.err
	}
	if s.fsync != nil {
		return s.fsync.err()
	}
	return nil
}

// view runs fn in a read transaction.
func (s *store) view(fn func(tx *buntdb.Tx) error) error {
	if err := s.usable(); err != nil {
		return err
	}
	return s.db.View(fn)
}

// update runs fn in a write transaction and commits it (fsynced). An error
// returned by fn is returned as is; a commit error is wrapped with what and
// ErrDiskFull when the disk is full. buntdb rolls memory back on a failed
// commit and cuts any partial write from the file, so a failed update
// changes nothing.
func (s *store) update(what string, fn func(tx *buntdb.Tx) error) error {
	if err := s.usable(); err != nil {
		return err
	}
	if s.pending != nil {
		s.finishCompaction(false)
	}
	var fnErr error
	s.txGrown = 0
	err := s.db.Update(func(tx *buntdb.Tx) error {
		fnErr = fn(tx)
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		if s.pending != nil {
			s.pending.spoiled = true
		}
		return storageError("cannot "+what, err)
	}
	if err := s.sync(); err != nil {
		return err
	}
	s.grown += s.txGrown
	s.commits++
	s.updates++
	if s.commits >= compactCheckEvery {
		s.commits = 0
		s.maybeCompact()
	}
	return nil
}

// close closes the file; later calls fail with ErrClosed.
func (s *store) close() error {
	s.abortCompaction()
	if s.fsync != nil {
		s.fsync.close()
	}
	if s.db == nil {
		if errors.Is(s.err, ErrClosed) {
			return ErrClosed
		}
		unlock(s.lock)
		s.lock, s.err = nil, ErrClosed
		return nil
	}
	err := s.db.Close()
	unlock(s.lock)
	s.db, s.lock, s.err = nil, nil, ErrClosed
	return err
}

// verify walks every key, returning the keys whose value is not JSON (a
// byte flipped inside a value) and the size of the live data.
func (s *store) verify(tx *buntdb.Tx) (bad []string, live int64, err error) {
	var buf []byte // reused: a copy per value would be the open's garbage
	err = tx.Ascend("", func(k, v string) bool {
		live += int64(len(k) + len(v) + 32)
		buf = append(buf[:0], v...)
		if valid, _ := jsonscan.Check(buf); !valid {
			bad = append(bad, k)
		}
		return true
	})
	return bad, live, err
}

// maybeCompact rewrites the file when it has grown to more than twice the
// live data (BuntDB appends every change; the outbox churns). New keys
// count as live: a first sync or a burst of inserts is not rewritten at
// every doubling.
func (s *store) maybeCompact() {
	fi, err := os.Stat(s.path)
	if err != nil || s.pending != nil || fi.Size() < s.minCompact || fi.Size() < 2*(s.liveBytes+s.grown) || time.Now().Before(s.retryAfter) {
		return
	}
	if s.online {
		if err := s.startCompaction(); err != nil {
			s.retryAfter = time.Now().Add(compactRetry)
			s.log.Error("cannot start compacting datafile; will retry", "path", s.path, "retry_in", compactRetry, "err", err)
		}
		return
	}
	if err := s.compact(); err != nil {
		// Typically a full disk: say it once, try again later.
		s.retryAfter = time.Now().Add(compactRetry)
		s.log.Error("cannot compact datafile; will retry", "path", s.path, "size", fi.Size(), "retry_in", compactRetry, "err", err)
	}
}

// compact writes the live items to a temp file, fsyncs it, renames it over
// the datafile, fsyncs the directory and reopens. At every instant the name
// points to a complete file. The caller holds the owner's write lock.
func (s *store) compact() error {
	s.abortCompaction()
	fi, err := os.Stat(s.path)
	if err != nil {
		return err
	}
	tmp := s.path + compactSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, fi.Mode().Perm())
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = s.db.Save(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return storageError("cannot write compacted datafile", err)
	}
	nfi, err := os.Stat(tmp)
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := s.db.Close(); err != nil {
		s.log.Warn("closing datafile before compaction", "err", err)
	}
	s.db = nil
	renameErr := os.Rename(tmp, s.path)
	if renameErr == nil {
		renameErr = syncDir(filepath.Dir(s.path))
	} else {
		os.Remove(tmp)
	}
	db, err := openDB(s.path, s.indexes)
	if err != nil {
		s.err = fmt.Errorf("cannot reopen datafile after compaction (restart the agent): %w", err)
		return s.err
	}
	if s.fsync != nil {
		if err := s.fsync.reopen(db, s.path); err != nil {
			db.Close()
			s.err = fmt.Errorf("cannot reopen datafile after compaction (restart the agent): %w", err)
			return s.err
		}
	}
	s.db = db
	if renameErr != nil {
		return renameErr
	}
	s.log.Info("compacted datafile", "path", s.path, "before", fi.Size(), "after", nfi.Size())
	s.liveBytes, s.grown = nfi.Size(), 0
	s.compactions++
	return nil
}

// listTable returns up to limit live records of table with an id greater
// than after, in id order: the one scan behind Local.List and Central.List.
// decode reads a stored value and says whether it is live (not a tombstone).
func (s *store) listTable(table, after string, limit int, decode func(v string) (Action, json.RawMessage, bool, error)) ([]Record, error) {
	if !validTable(table) {
		return nil, fmt.Errorf("invalid table name %q", table)
	}
	if limit <= 0 {
		limit = DefaultListLimit
	}
	prefix := recKey(table, "")
	pivot := prefix
	if after != "" {
		pivot = recKey(table, after) + "\x00"
	}
	var out []Record
	var derr error
	err := s.view(func(tx *buntdb.Tx) error {
		return tx.AscendGreaterOrEqual("", pivot, func(k, v string) bool {
			if !strings.HasPrefix(k, prefix) {
				return false
			}
			action, data, live, err := decode(v)
			if err != nil {
				derr = fmt.Errorf("datafile value of %s is unreadable: %w", k, err)
				return false
			}
			if live {
				out = append(out, Record{Table: table, ID: k[len(prefix):], Action: action, Data: data})
			}
			return len(out) < limit
		})
	})
	return out, errors.Join(err, derr)
}
