package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/buntdb"
)

// CentralOptions configures the primary's datafile.
type CentralOptions struct {
	// QueueMax refuses a push or write that would grow a site's queue past
	// this many records. 0 means unlimited. Fill and membership changes
	// ignore it (a queue holds each record at most once, so it stays
	// bounded by the number of records).
	QueueMax int
	// Logger receives recovery and compaction events; nil discards them.
	Logger *slog.Logger
}

// Central is the primary's durable state in one BuntDB file, and the one
// order of changes of the whole deployment (docs/replication.md):
//
//   - every change the primary accepts gets the next version; a record's
//     value is its last accepted change, a delete included;
//   - rec:<table>:<id> holds the current copy with its owner store, the
//     sites that hold it, its parent (child rows), and per site the last
//     change accepted from it (duplicate detection bounded by sites ×
//     records, not by history);
//   - each site's queue holds at most one entry per record
//     (q:<site>:<table>:<id>), ordered by the version that queued it, and
//     delivers the record's current copy: a newer change replaces the entry,
//     a site's own accepted change removes it, so a queue never carries a
//     value older than what its site has pushed;
//   - central data is read by cursor from the central log (clog:<version>),
//     one entry per record.
//
// A change that touches several keys is first written as one intent key,
// then applied with writes that never go back in version, so an intent
// found on open (a power cut in between) is applied again safely. Central is
// safe for concurrent use.
type Central struct {
	mu       sync.RWMutex
	st       *store
	log      *slog.Logger
	queueMax int

	qlen       map[int]int // records queued per site
	version    uint64      // last version handed out
	maxCentral uint64      // highest central log cursor
	visible    uint64      // highest cursor a site may skip to (no intent below it pending)
	pending    bool        // an intent may be left unapplied: apply it before the next change
	applied    []uint64    // intents applied but not yet deleted (deleted by the next commit)
	sites      map[int]*siteEntry
	filling    map[int]bool    // sites whose queue is being filled
	members    string          // the site membership the stored holders reflect (membership.go)
	parents    map[string]bool // tables with a child index entry (kid:<table>:…); the others have no children
	registry   registry        // the site registry (registry_central.go)
	recovered  string
	group      pushGroup // pushes waiting for a group commit (groupcommit.go)
}

// CentralEntry is one record of the central log.
type CentralEntry struct {
	Cursor uint64
	Record Record
}

const (
	versionKey = sysPrefix + "version"
	membersKey = sysPrefix + "members"
	queueIndex = "queue"
)

// centralIndexes orders every queue entry by site, then by the version
// that queued it (the fixed-width prefix of its value).
func centralIndexes(db *buntdb.DB) error {
	return db.ReplaceIndex(queueIndex, queuePrefix+"*", lessQueued)
}

func getCentral(tx *buntdb.Tx, key string) (RecordState, bool, error) {
	s, err := tx.Get(key)
	if errors.Is(err, buntdb.ErrNotFound) {
		return RecordState{}, false, nil
	}
	if err != nil {
		return RecordState{}, false, err
	}
	var v RecordState
	if err := decodeRecordState(s, &v); err != nil {
		return v, false, fmt.Errorf("datafile value of %s is unreadable: %w", key, err)
	}
	return v, true, nil
}

// OpenCentral opens (or creates) the primary's datafile at path, repairing
// a torn or garbage tail like OpenLocal, and applies any intent a power cut
// left before returning. A file corrupt in the middle is copied to
// <path>.corrupt-<time> and atomically replaced by a fresh file holding
// every readable item; Recovered then says so.
func OpenCentral(path string, opts CentralOptions) (*Central, error) {
	log := discardLogger(opts.Logger).With("component", "queue", "role", "primary")
	recovered := ""
	// The second pass opens the file the first one rebuilt.
	for range 2 {
		st, rep, err := openStore(path, log, centralIndexes)
		if err != nil {
			return nil, fmt.Errorf("cannot open primary queue %s: %w", path, err)
		}
		if st != nil {
			st.online = true // requests go on while the primary's datafile is rewritten
			c := &Central{st: st, log: log, queueMax: opts.QueueMax}
			bad, err := c.load()
			if err == nil && len(bad) == 0 {
				if err = c.openFinish(); err == nil {
					c.recovered = recovered
					return c, nil
				}
			}
			st.close()
			if err != nil {
				return nil, fmt.Errorf("cannot open primary queue %s: %w", path, err)
			}
			log.Error("datafile holds undecodable values", "keys", len(bad), "first", bad[0])
			if rep, err = salvageLoaded(path, bad, log); err != nil {
				return nil, fmt.Errorf("cannot open primary queue %s: %w", path, err)
			}
		}
		if err := rebuildFile(path, func(tmp string) (err error) {
			recovered, err = buildCentral(tmp, rep, log)
			return err
		}); err != nil {
			return nil, fmt.Errorf("cannot open primary queue %s: %w", path, err)
		}
	}
	return nil, fmt.Errorf("cannot open primary queue %s: still corrupt after a rebuild", path)
}

// openFinish applies leftover intents, and lets a fill that a restart
// interrupted be asked for again: a site left "started" would wait for an
// initialisation nobody runs.
func (c *Central) openFinish() error {
	if err := c.drainLocked(); err != nil {
		return err
	}
	for id, e := range c.sites {
		if e.state.Initialisation == InitStarted {
			s := e.state
			s.Initialisation = InitNew
			if err := c.saveSiteLocked(s); err != nil {
				return err
			}
			c.log.Warn("an initialisation was interrupted by a restart; the site will ask again", "site", id)
		}
	}
	c.st.maybeCompact()
	return c.st.usable()
}

// load walks the whole file: derives the queue lengths, counters and site
// registry, notes leftover intents, and returns undecodable keys.
func (c *Central) load() (bad []string, err error) {
	c.qlen, c.sites, c.filling, c.parents = map[int]int{}, map[int]*siteEntry{}, map[int]bool{}, map[string]bool{}
	c.version, c.maxCentral, c.pending, c.members = 0, 0, false, ""
	c.registry = registry{}
	err = c.st.view(func(tx *buntdb.Tx) error {
		var live int64
		bad, live, err = c.st.verify(tx)
		if err != nil {
			return err
		}
		c.st.liveBytes = live
		return tx.Ascend("", func(k, v string) bool {
			if !c.loadKey(k, v) {
				bad = append(bad, k)
			}
			return true
		})
	})
	c.visible = c.maxCentral // any intent left is applied before anything is served
	slices.Sort(bad)
	return slices.Compact(bad), err
}

// loadKey folds one key into the derived state; false if it is unreadable.
func (c *Central) loadKey(k, v string) bool {
	switch {
	case strings.HasPrefix(k, recPrefix):
		var cv RecordState
		if decodeRecordState(v, &cv) != nil {
			return false
		}
		c.version = max(c.version, cv.Version)
	case strings.HasPrefix(k, queuePrefix):
		site, ord, _, ok := parseQueueValue(v)
		if !ok || !strings.HasPrefix(k, queueKeyPrefix(site)) {
			return false
		}
		c.qlen[site]++
		c.version = max(c.version, ord)
	case strings.HasPrefix(k, clogPrefix):
		cur, err := parseUint(k[len(clogPrefix):])
		if err != nil {
			return false
		}
		c.maxCentral = max(c.maxCentral, cur)
		c.version = max(c.version, cur)
	case strings.HasPrefix(k, inboxPrefix):
		in, err := decodeIntent(v)
		if err != nil {
			return false
		}
		c.pending = true
		c.version = max(c.version, in.maxVersion())
		for _, l := range in.Logs {
			c.maxCentral = max(c.maxCentral, l.Cursor)
		}
	case strings.HasPrefix(k, kidPrefix):
		c.noteParent(k)
	case strings.HasPrefix(k, sitePrefix):
		var s SiteState
		if json.Unmarshal([]byte(v), &s) != nil || s.SyncID == 0 {
			return false
		}
		c.sites[s.SyncID] = &siteEntry{state: s, saved: s.LastContact}
	case k == versionKey:
		var n uint64
		if json.Unmarshal([]byte(v), &n) != nil {
			return false
		}
		c.version = max(c.version, n)
	case k == membersKey:
		if json.Unmarshal([]byte(v), &c.members) != nil {
			return false
		}
	case k == registryKey:
		return c.loadRegistry(v) == nil
	}
	return true
}

// buildCentral writes at tmp a fresh datafile holding every readable item
// of a corrupt one (intents included: they are applied on open).
func buildCentral(tmp string, rep repair, log *slog.Logger) (string, error) {
	st, _, err := openStore(tmp, log, centralIndexes)
	if err != nil {
		return "", err
	}
	defer st.close()
	keys := make([]string, 0, len(rep.salvage))
	for k := range rep.salvage {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	now := time.Now()
	for start := 0; start < len(keys); start += 1000 {
		part := keys[start:min(start+1000, len(keys))]
		if err := st.update("salvage datafile", func(tx *buntdb.Tx) error {
			for _, k := range part {
				it := rep.salvage[k]
				var opts *buntdb.SetOptions
				if !it.exat.IsZero() {
					opts = &buntdb.SetOptions{Expires: true, TTL: it.exat.Sub(now)}
				}
				if _, _, err := tx.Set(k, it.value, opts); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return "", err
		}
	}
	msg := fmt.Sprintf("datafile was corrupt (a copy is at %q); %d readable keys were carried into a fresh one (changes in the damaged part are lost; sites may receive some records again)",
		rep.movedTo, len(keys))
	log.Error("datafile recovered", "detail", msg)
	return msg, nil
}

// Recovered says why this open rebuilt the datafile from a corrupt one (""
// when it did not).
func (c *Central) Recovered() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.recovered
}

// Close closes the datafile. Every later call fails with ErrClosed.
func (c *Central) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.close()
}

// updateLocked commits fn and, in the same commit, deletes the intents
// already applied (their deletion rides on the next commit instead of
// costing one of its own; applying one again would change nothing).
func (c *Central) updateLocked(what string, fn func(tx *buntdb.Tx) error) error {
	done := c.applied
	err := c.st.update(what, func(tx *buntdb.Tx) error {
		for _, id := range done {
			if err := deleteKey(tx, inboxKey(id)); err != nil {
				return err
			}
		}
		return fn(tx)
	})
	if err == nil {
		c.applied = c.applied[len(done):]
	}
	return err
}

// nextVersion hands out the next version of the primary's order.
func (c *Central) nextVersion() uint64 {
	c.version++
	return c.version
}

// Get returns the current copy of a record; a deleted one reads as not found.
func (c *Central) Get(table, id string) (Record, bool, error) {
	cur, err := c.Current(table, id)
	if err != nil || !cur.Exists || cur.Deleted {
		return Record{}, false, err
	}
	return cur.Record, true, nil
}

// Current returns everything the primary knows of a record.
func (c *Central) Current(table, id string) (Current, error) {
	if !validTable(table) {
		return Current{}, nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	var cur Current
	err := c.st.view(func(tx *buntdb.Tx) error {
		v, ok, err := getCentral(tx, recKey(table, id))
		if ok {
			cur = v.current(table, id)
		}
		return err
	})
	return cur, err
}

// List returns up to limit live records of table with an id greater than
// after, in id order. limit <= 0 means DefaultListLimit.
func (c *Central) List(table, after string, limit int) ([]Record, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.st.listTable(table, after, limit, func(s string) (Action, json.RawMessage, bool, error) {
		var v RecordState
		err := decodeRecordState(s, &v)
		return v.Action, v.Data, !v.Deleted, err
	})
}

// CentralSince returns up to limit central-log entries with a cursor greater
// than cursor, ascending, and the highest cursor a site may advance to. The
// log keeps one entry per record (its latest change), so a site that reads
// it to the end holds every central record. limit <= 0 means
// DefaultListLimit.
func (c *Central) CentralSince(cursor uint64, limit int) ([]CentralEntry, uint64, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if cursor == math.MaxUint64 {
		return nil, c.visible, nil // nothing comes after it (cursor+1 would wrap to 0)
	}
	var out []CentralEntry
	var derr error
	err := c.st.view(func(tx *buntdb.Tx) error {
		return tx.AscendGreaterOrEqual("", clogPrefix+pad(cursor+1), func(k, s string) bool {
			if !strings.HasPrefix(k, clogPrefix) {
				return false
			}
			cur, err := parseUint(k[len(clogPrefix):])
			var ref Ref
			if err == nil {
				err = json.Unmarshal([]byte(s), &ref)
			}
			var v RecordState
			var ok bool
			if err == nil {
				v, ok, err = getCentral(tx, recKey(ref.Table, ref.ID))
			}
			if err != nil {
				derr = fmt.Errorf("central log entry %s is unreadable: %w", k, err)
				return false
			}
			if ok && v.Version == cur {
				out = append(out, CentralEntry{Cursor: cur, Record: v.current(ref.Table, ref.ID).Record})
			}
			return len(out) < limit
		})
	})
	return out, c.visible, errors.Join(err, derr)
}

// Version is the last version of the primary's order handed out.
func (c *Central) Version() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.version
}

func inboxKey(id uint64) string { return inboxPrefix + pad(id) }

func clogKey(cursor uint64) string { return clogPrefix + pad(cursor) }

func setJSONKey(tx *buntdb.Tx, key string, v any, opts *buntdb.SetOptions) error {
	b, err := marshal(v)
	if err != nil {
		return err
	}
	_, _, err = tx.Set(key, string(b), opts)
	return err
}

func deleteKey(tx *buntdb.Tx, key string) error {
	_, err := tx.Delete(key)
	if errors.Is(err, buntdb.ErrNotFound) {
		return nil
	}
	return err
}

// kidKey is the index entry saying child belongs to parent. The parent's id
// is length-prefixed, so one parent's entries are a prefix no other
// parent's share (ids may hold ':').
func kidKey(parent, child Ref) string { return kidParentPrefix(parent) + child.Table + ":" + child.ID }

func kidParentPrefix(parent Ref) string {
	return kidPrefix + parent.Table + ":" + strconv.Itoa(len(parent.ID)) + ":" + parent.ID + ":"
}

// noteParent notes the parent's table of a child index key.
func (c *Central) noteParent(key string) {
	if table, _, ok := strings.Cut(strings.TrimPrefix(key, kidPrefix), ":"); ok {
		c.parents[table] = true
	}
}

// kidPrefixOf is the parent's prefix of a child index key (kidParentPrefix).
func kidPrefixOf(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, kidPrefix)
	table, rest, ok2 := strings.Cut(rest, ":")
	digits, rest, ok3 := strings.Cut(rest, ":")
	n, err := strconv.Atoi(digits)
	if !ok || !ok2 || !ok3 || err != nil || n < 0 || len(rest) <= n || rest[n] != ':' {
		return "", false
	}
	return kidParentPrefix(Ref{Table: table, ID: rest[:n]}), true
}
