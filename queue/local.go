package queue

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/buntdb"

	"syncagent/jsonscan"
)

// LocalOptions configures a satellite's datafile.
type LocalOptions struct {
	// OutboxMax refuses local writes that would add an outbox entry once
	// this many are waiting to be pushed. 0 means unlimited.
	OutboxMax int
	// Logger receives recovery and compaction events; nil discards them.
	Logger *slog.Logger
}

// Local is a satellite's durable state in one BuntDB file: the datafile
// (current record per table and id), the outbox (records waiting to be
// pushed), set-aside records, named cursors and small meta blobs.
//
// A record and its outbox state are one key, rec:<table>:<id>, so a local
// write and its outbox entry are atomic across power loss. The outbox is a
// BuntDB index over those keys ordered by pending seq. Local is safe for
// concurrent use.
type Local struct {
	mu  sync.RWMutex
	st  *store
	log *slog.Logger
	max int // OutboxMax; guarded by mu

	epoch     string // random, created with the file; prefix of every SyncOutID
	nextSeq   uint64 // next outbox seq to hand out
	gen       uint64 // generation stamped on every write, apply and push (localgen.go)
	outboxLen int    // keys with a pending seq
	// waitingSince is when the outbox last stopped being empty.
	waitingSince time.Time
	count        int    // live (non-tombstone) records
	recovered    string // why the datafile was started afresh, or ""

	commits *committer // the group commit loop of app writes (localcommit.go)

	pending pendingSet     // the outbox in memory (localpending.go); guarded by mu
	journal []pendingEntry // rec: keys changed by the update in progress; guarded by mu
}

const (
	epochKey = sysPrefix + "epoch"
	seqKey   = sysPrefix + "seq"
	genKey   = sysPrefix + "gen"
	// DefaultListLimit is the page size List uses when limit <= 0.
	DefaultListLimit = 1000
)

// SetOutboxMax changes the outbox limit of a running datafile (0 means no
// limit). Records already waiting are kept even when they are over the new
// limit; only further writes are refused.
func (l *Local) SetOutboxMax(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.max = max(n, 0)
}

// localIndexes: none. The outbox's order is kept in memory, for the
// pending records only (localpending.go).
func localIndexes(*buntdb.DB) error { return nil }

func discardLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// OpenLocal opens (or creates) the satellite datafile at path.
//
// It succeeds on a file whose tail was torn at any byte (the torn commit is
// cut) or has garbage or NUL bytes appended (the original is copied to
// <path>.corrupt-<time>, then the tail is cut). A file corrupt in the middle
// (bad bytes followed by good commands, or a value that does not decode) is
// copied to <path>.corrupt-<time> and atomically replaced by a fresh file
// (new epoch) that keeps the unpushed local changes and set-aside records
// it could read; Recovered then says so, and the agent should refill the
// datafile from the primary (initialise).
func OpenLocal(path string, opts LocalOptions) (*Local, error) {
	log := discardLogger(opts.Logger).With("component", "queue", "role", "satellite")
	recovered := ""
	// The second pass opens the file the first one rebuilt.
	for range 2 {
		st, rep, err := openStore(path, log, localIndexes)
		if err != nil {
			return nil, fmt.Errorf("cannot open satellite queue %s: %w", path, err)
		}
		if st != nil {
			if err := st.syncApart(); err != nil {
				st.close()
				return nil, fmt.Errorf("cannot open satellite queue %s: %w", path, err)
			}
			l := &Local{st: st, log: log, max: opts.OutboxMax}
			bad, err := l.load()
			if err == nil && len(bad) == 0 {
				if err = l.finishOpen(); err == nil {
					l.recovered = recovered
					l.startCommits()
					// Opening read the whole file: hand what that left
					// behind back to the OS now, not minutes from now (a
					// clinic box's RAM), off the caller's way.
					go debug.FreeOSMemory()
					return l, nil
				}
			}
			st.close()
			if err != nil {
				return nil, fmt.Errorf("cannot open satellite queue %s: %w", path, err)
			}
			log.Error("datafile holds undecodable values", "keys", len(bad), "first", bad[0])
			if rep, err = salvageLoaded(path, bad, log); err != nil {
				return nil, fmt.Errorf("cannot open satellite queue %s: %w", path, err)
			}
		}
		if err := rebuildFile(path, func(tmp string) (err error) {
			recovered, err = buildLocal(tmp, rep, log)
			return err
		}); err != nil {
			return nil, fmt.Errorf("cannot open satellite queue %s: %w", path, err)
		}
	}
	return nil, fmt.Errorf("cannot open satellite queue %s: still corrupt after a rebuild", path)
}

// buildLocal writes at tmp a fresh datafile holding what could be salvaged,
// and says what it did.
func buildLocal(tmp string, rep repair, log *slog.Logger) (string, error) {
	st, _, err := openStore(tmp, log, localIndexes)
	if err != nil {
		return "", err
	}
	defer st.close()
	l := &Local{st: st, log: log}
	if _, err := l.load(); err != nil {
		return "", err
	}
	if err := l.ensureEpoch(); err != nil {
		return "", err
	}
	return l.salvage(rep)
}

// ensureEpoch gives a new file its random epoch, in its own first commit.
func (l *Local) ensureEpoch() error {
	if l.epoch != "" {
		return nil
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	epoch := hex.EncodeToString(b[:])
	if err := l.update("create epoch", func(tx *buntdb.Tx) error {
		_, _, err := tx.Set(epochKey, `"`+epoch+`"`, nil)
		return err
	}); err != nil {
		return err
	}
	l.epoch = epoch
	return nil
}

// finishOpen creates the epoch of a new file, completes interrupted
// set-asides and compacts a bloated file.
func (l *Local) finishOpen() error {
	if err := l.ensureEpoch(); err != nil {
		return err
	}
	changed, err := l.reconcileAside()
	if err != nil {
		return err
	}
	if changed {
		if _, err := l.load(); err != nil {
			return err
		}
	}
	l.st.maybeCompact()
	return l.st.usable()
}

// load walks the whole file: derives the counters and returns the keys whose
// value does not decode.
func (l *Local) load() (bad []string, err error) {
	var storedSeq, maxSeq, storedGen, maxGen uint64
	l.outboxLen, l.count, l.epoch = 0, 0, ""
	l.pending = newPendingSet()
	var live int64
	var buf []byte // each value once, reused: a copy per record would be the open's garbage
	err = l.st.view(func(tx *buntdb.Tx) error {
		return tx.Ascend("", func(k, v string) bool {
			// What store.verify checks, in the same walk.
			live += int64(len(k) + len(v) + 32)
			buf = append(buf[:0], v...)
			if valid, _ := jsonscan.Check(buf); !valid {
				bad = append(bad, k)
				return true
			}
			switch {
			case strings.HasPrefix(k, recPrefix):
				lv, err := decodeLocalBytes(buf)
				if err != nil {
					bad = append(bad, k)
					return true
				}
				if lv.live() {
					l.count++
				}
				if lv.Pending != 0 {
					l.outboxLen++
					l.pending.set(k, lv.Pending)
				}
				maxSeq, maxGen = max(maxSeq, lv.Pending), max(maxGen, lv.Gen)
			case strings.HasPrefix(k, asidePrefix):
				a, err := decodeAside(v)
				if err != nil {
					bad = append(bad, k)
					return true
				}
				maxSeq = max(maxSeq, a.Seq, a.Retry)
			case k == seqKey:
				if json.Unmarshal([]byte(v), &storedSeq) != nil {
					bad = append(bad, k)
				}
			case k == genKey:
				if json.Unmarshal([]byte(v), &storedGen) != nil {
					bad = append(bad, k)
				}
			case k == epochKey:
				if json.Unmarshal([]byte(v), &l.epoch) != nil {
					bad = append(bad, k)
				}
			}
			return true
		})
	})
	l.st.liveBytes = live
	slices.Sort(bad)
	bad = slices.Compact(bad)
	// A torn commit may hold a record but not the counter, or the reverse:
	// the larger of both is the last seq ever handed out.
	l.nextSeq = max(storedSeq, maxSeq) + 1
	l.waitingSince = time.Time{}
	l.noteOutboxLocked()
	// A salvaged file has no generation key but keeps its records' stamps.
	l.gen = max(storedGen, maxGen)
	return bad, err
}

// salvage writes into the fresh file the unpushed local changes and the
// set-aside records read from the corrupt one, with new seqs.
func (l *Local) salvage(rep repair) (string, error) {
	var kept, asides int
	var recs []Record
	var vals []localValue
	var asideKeys, asideVals []string
	var order []int // indexes into recs, sorted below by their old seq
	for k, it := range rep.salvage {
		switch {
		case strings.HasPrefix(k, recPrefix):
			lv, err := decodeLocal(it.value)
			if err != nil || lv.Pending == 0 {
				continue
			}
			table, id, _ := splitRecKey(k)
			recs = append(recs, Record{Table: table, ID: id})
			vals = append(vals, lv)
			order = append(order, len(order))
		case strings.HasPrefix(k, asidePrefix):
			a, err := decodeAside(it.value)
			if err != nil {
				continue
			}
			a.State, a.Seq, a.Retry = asideState, 0, 0 // old-epoch seqs mean nothing here
			s, err := a.encode()
			if err != nil {
				continue
			}
			asideKeys, asideVals = append(asideKeys, k), append(asideVals, s)
		}
	}
	// Keep the outbox order: new seqs in the order of the old ones.
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(vals[a].Pending, vals[b].Pending) })
	msg := fmt.Sprintf("datafile was corrupt (a copy is at %q); a fresh one was started", rep.movedTo)
	err := l.update("salvage datafile", func(tx *buntdb.Tx) error {
		for _, i := range order {
			r, v := recs[i], vals[i]
			v.Pending = l.nextSeq
			l.nextSeq++
			s, err := v.encode()
			if err != nil {
				return err
			}
			if err := l.setLocalRaw(tx, recKey(r.Table, r.ID), s, v.Pending); err != nil {
				return err
			}
			kept++
		}
		for i, k := range asideKeys {
			if _, _, err := tx.Set(k, asideVals[i], nil); err != nil {
				return err
			}
			asides++
		}
		_, _, err := tx.Set(seqKey, formatUint(l.nextSeq-1), nil)
		return err
	})
	if err != nil {
		return "", err
	}
	msg += fmt.Sprintf(" keeping %d unpushed local changes and %d set-aside records; refill from the primary (initialise)", kept, asides)
	l.log.Error("datafile recovered", "detail", msg)
	return msg, nil
}

// Recovered says why this open started the datafile afresh ("" when it did
// not): the file was corrupt, a copy was kept, and the agent should refill
// the datafile from the primary (initialise). A later open of the rebuilt
// file reports "" again.
func (l *Local) Recovered() string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.recovered
}

// Close closes the datafile. Every later call fails with ErrClosed.
func (l *Local) Close() error {
	l.stopCommits() // commits what is waiting first
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.close()
}

func (l *Local) view(fn func(tx *buntdb.Tx) error) error { return l.st.view(fn) }

// getLocal reads and decodes a rec: key.
func getLocal(tx *buntdb.Tx, key string) (localValue, bool, error) {
	s, err := tx.Get(key)
	if errors.Is(err, buntdb.ErrNotFound) {
		return localValue{}, false, nil
	}
	if err != nil {
		return localValue{}, false, err
	}
	v, err := decodeLocal(s)
	if err != nil {
		return localValue{}, false, fmt.Errorf("datafile value of %s is unreadable: %w", key, err)
	}
	return v, true, nil
}

// syncOutID names an outbox entry, unique forever: the file's random epoch
// and the entry's seq.
func (l *Local) syncOutID(seq uint64) string { return l.epoch + "-" + pad(seq) }
