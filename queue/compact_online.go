package queue

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/tidwall/buntdb"
)

// Online compaction, for the primary's datafile: the rewrite that compact
// does under the owner's lock (write every live item, fsync, rename, load
// the new file again) takes about 11 ms per MB — seconds for a large primary,
// during which every request waits. Here the slow parts run on a goroutine
// while requests go on, and only the last step waits:
//
//  1. (owner's lock, in update) note the file's end, start the goroutine;
//  2. (goroutine) write the live items to <path>.compact in chunks of
//     compactChunk, each chunk one read transaction (writers go on between
//     chunks), then copy the complete commands appended to the datafile since
//     step 1, fsync, and load the new file as a second *buntdb.DB;
//     then replay onto it what was appended meanwhile, in rounds, until
//     little is left;
//  3. (owner's lock, the next update) replay onto the new DB the few commands
//     appended since step 2 (one commit, fsynced), rename it over the
//     datafile, fsync the directory and swap.
//
// Correct because a set or delete replayed over a copy that may already
// hold it gives the same result: every key the tail touches ends as the
// tail's last command left it, every other key as it was at step 1 — the
// argument of buntdb's own Shrink, which we do not use because it renames a
// file it has not synced. A commit that fails while the goroutine runs
// (buntdb cuts it from the file, but the goroutine may have copied it)
// spoils the copy: it is thrown away and tried again later. The price is a
// second copy of the data in memory while it runs; the satellite's small
// datafile keeps the blocking compact.
//
// The store writes no expiring keys, so the copy carries none.
const compactChunk = 1000

// compactHook, when set by a test, runs on the goroutine after the live
// items are written ("copied": writes made meanwhile are copied from the
// datafile's tail) and before the copy is loaded ("synced": writes made
// meanwhile are the last step's to replay).
var compactHook func(stage string)

// compaction is an online compaction on its way.
type compaction struct {
	from    *buntdb.DB // the store's DB when it started
	done    chan compacted
	stop    atomic.Bool
	spoiled bool // a commit failed since it started (owner's lock)
}

// compacted is what the goroutine made: the new DB, loaded from the temp
// file, and the datafile offset its copy reaches.
type compacted struct {
	db    *buntdb.DB
	upTo  int64
	took  time.Duration
	bytes int64
	err   error
}

// startCompaction begins an online compaction (owner's write lock held).
func (s *store) startCompaction() error {
	fi, err := os.Stat(s.path)
	if err != nil {
		return err
	}
	c := &compaction{from: s.db, done: make(chan compacted, 1)}
	s.pending = c
	path, indexes := s.path, s.indexes
	go func() { c.done <- copyLive(c, path, fi.Size(), indexes) }()
	return nil
}

// copyLive is step 2. It touches no store field: only its DB's read
// transactions, which buntdb runs alongside the owner's writes.
func copyLive(c *compaction, path string, from int64, indexes func(*buntdb.DB) error) (res compacted) {
	start := time.Now()
	tmp := path + compactSuffix
	fail := func(err error) compacted {
		os.Remove(tmp)
		return compacted{err: err}
	}
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fail(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = writeLive(c, bw)
	if err == nil && compactHook != nil {
		compactHook("copied")
	}
	var upTo int64
	if err == nil {
		upTo, err = copyCommands(bw, path, from)
	}
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
		return fail(err)
	}
	fi, err := os.Stat(tmp)
	if err != nil {
		return fail(err)
	}
	if c.stop.Load() {
		return fail(ErrClosed)
	}
	if compactHook != nil {
		compactHook("synced")
	}
	db, err := openDB(tmp, indexes)
	if err != nil {
		return fail(err)
	}
	// What was appended while the copy was written and loaded (under a heavy
	// ingest, seconds' worth: tens of MB) is replayed here, in rounds, so
	// that the last step replays under the owner's lock only what the last
	// round left.
	for range catchUpRounds {
		cur, err := os.Stat(path)
		if err == nil && cur.Size()-upTo <= catchUpSmall {
			break
		}
		if err == nil {
			upTo, err = replayCommands(db, path, upTo)
		}
		if err == nil && c.stop.Load() {
			err = ErrClosed
		}
		if err != nil {
			db.Close()
			return fail(err)
		}
		if compactHook != nil {
			compactHook("replayed")
		}
	}
	return compacted{db: db, upTo: upTo, took: time.Since(start), bytes: fi.Size()}
}

// Rounds of replay on the goroutine: until the tail left for the owner's
// lock is at most catchUpSmall bytes (about 10 ms of replay), at most
// catchUpRounds times (a tail that grows faster than it is replayed).
const catchUpRounds = 4

var catchUpSmall int64 = 1 << 20 // a variable for tests

// writeLive writes every live item of c.from as set commands, a chunk per
// read transaction.
func writeLive(c *compaction, w io.Writer) error {
	var buf []byte
	pivot, more := "", true
	for more {
		if c.stop.Load() {
			return ErrClosed
		}
		more = false
		n := 0
		err := c.from.View(func(tx *buntdb.Tx) error {
			return tx.AscendGreaterOrEqual("", pivot, func(k, v string) bool {
				if n == compactChunk {
					pivot, more = k, true
					return false
				}
				buf = appendSet(buf, k, v)
				n++
				return true
			})
		})
		if err != nil {
			return err
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
		buf = buf[:0]
	}
	return nil
}

// appendSet appends "set k v" as buntdb's file format has it.
func appendSet(b []byte, k, v string) []byte {
	b = append(b, "*3\r\n$3\r\nset\r\n$"...)
	b = strconv.AppendInt(b, int64(len(k)), 10)
	b = append(b, "\r\n"...)
	b = append(b, k...)
	b = append(b, "\r\n$"...)
	b = strconv.AppendInt(b, int64(len(v)), 10)
	b = append(b, "\r\n"...)
	b = append(b, v...)
	return append(b, "\r\n"...)
}

// copyCommands copies the complete commands of the file at path from offset
// from to w, and returns the offset after the last one (a commit being
// written as we read is left for the next step).
func copyCommands(w io.Writer, path string, from int64) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return from, err
	}
	defer f.Close()
	end, _, err := readCommands(f, from, nil)
	if err != nil {
		return from, err
	}
	_, err = io.Copy(w, io.NewSectionReader(f, from, end-from))
	return end, err
}

// readCommands parses the commands of f from offset from to the first torn
// one (or the end), handing each to fn when not nil; it returns the offset
// after the last complete command.
func readCommands(f *os.File, from int64, fn func(command)) (int64, int, error) {
	fi, err := f.Stat()
	if err != nil {
		return from, 0, err
	}
	w := newWindow(f, fi.Size())
	off, n := from, 0
	for off < fi.Size() {
		cmd, next, err := w.parse(off, fi.ModTime())
		if errors.Is(err, errTorn) {
			break
		}
		if err != nil {
			return off, n, fmt.Errorf("datafile %s at offset %d: %w", f.Name(), off, err)
		}
		if fn != nil {
			fn(cmd)
		}
		off, n = next, n+1
	}
	return off, n, nil
}

// finishCompaction is step 3, when the goroutine is done (owner's write
// lock held; update calls it before its commit). A compaction that failed,
// was spoiled, or started on a DB the store no longer uses is dropped.
func (s *store) finishCompaction(wait bool) {
	c := s.pending
	if c == nil {
		return
	}
	var res compacted
	if wait {
		res = <-c.done
	} else {
		select {
		case res = <-c.done:
		default:
			return
		}
	}
	s.pending = nil
	drop := func(why error) {
		if res.db != nil {
			res.db.Close()
		}
		os.Remove(s.path + compactSuffix)
		if why != nil && !errors.Is(why, ErrClosed) {
			s.retryAfter = time.Now().Add(compactRetry)
			s.log.Error("cannot compact datafile; will retry", "path", s.path, "retry_in", compactRetry, "err", why)
		}
	}
	switch {
	case res.err != nil:
		drop(res.err)
		return
	case c.spoiled || c.from != s.db || s.db == nil:
		drop(nil) // tried again at a later size check
		return
	}
	started := time.Now()
	before, _ := os.Stat(s.path)
	if err := s.catchUp(res.db, res.upTo); err != nil {
		drop(err)
		return
	}
	if err := os.Rename(s.path+compactSuffix, s.path); err != nil {
		drop(err)
		return
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		s.log.Warn("cannot fsync the state directory after compaction", "err", err)
	}
	old := s.db
	s.db = res.db
	go func() { // nobody uses it now; its close fsyncs the replaced file (~20 ms)
		if err := old.Close(); err != nil {
			s.log.Warn("closing datafile after compaction", "err", err)
		}
	}()
	after, _ := os.Stat(s.path)
	var was, now int64
	if before != nil {
		was = before.Size()
	}
	if after != nil {
		now = after.Size()
	}
	s.liveBytes, s.grown = now, 0 // what new keys added is in the new file
	s.compactions++
	s.log.Info("compacted datafile online", "path", s.path, "before", was, "after", now,
		"copy_took", res.took.Round(time.Millisecond), "paused", time.Since(started).Round(time.Microsecond))
}

// abortCompaction stops an online compaction and throws its work away
// (owner's write lock held).
func (s *store) abortCompaction() {
	c := s.pending
	if c == nil {
		return
	}
	c.stop.Store(true)
	res := <-c.done
	s.pending = nil
	if res.db != nil {
		res.db.Close()
	}
	os.Remove(s.path + compactSuffix)
}

// catchUp replays onto db, in one fsynced commit, the commands appended to
// the datafile after offset from.
func (s *store) catchUp(db *buntdb.DB, from int64) error {
	_, err := replayCommands(db, s.path, from)
	return err
}

// replayCommands replays onto db, in one fsynced commit, the complete
// commands of the file at path after offset from, and returns the offset
// after the last one.
func replayCommands(db *buntdb.DB, path string, from int64) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return from, err
	}
	defer f.Close()
	var cmds []command
	end, _, err := readCommands(f, from, func(c command) { cmds = append(cmds, c) })
	if err != nil || len(cmds) == 0 {
		return from, err
	}
	return end, db.Update(func(tx *buntdb.Tx) error {
		for _, c := range cmds {
			var err error
			switch c.verb {
			case "set":
				var opts *buntdb.SetOptions
				if !c.exat.IsZero() {
					opts = &buntdb.SetOptions{Expires: true, TTL: time.Until(c.exat)}
				}
				_, _, err = tx.Set(c.key, c.value, opts)
			case "del":
				if _, err = tx.Delete(c.key); errors.Is(err, buntdb.ErrNotFound) {
					err = nil
				}
			case "flushdb":
				err = tx.DeleteAll()
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}
