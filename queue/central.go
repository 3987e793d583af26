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
	// this many records. 0 means unlimited. Fill ignores it.
	QueueMax int
	// Logger receives recovery and compaction events; nil discards them.
	Logger *slog.Logger
}

// Central is the primary's durable state in one BuntDB file: the central
// datafile (latest version of every record), the central log (central data
// by cursor, one entry per record), the per-site queues, the dedup markers
// of accepted pushes and the site registry. Central is safe for concurrent
// use.
//
// Every change that touches several keys (Accept, Write) first writes one
// intent key in its own commit, then applies it with deterministic keys,
// then deletes the intent; an intent found on open is applied again before
// anything is served, so a power cut never leaves half a push.
type Central struct {
	mu       sync.RWMutex
	st       *store
	log      *slog.Logger
	queueMax int

	qlen      map[int]int // records queued per site
	maxCursor uint64      // highest cursor handed out
	visible   uint64      // highest cursor a site may skip to (no intent below it pending)
	lastGseq  uint64      // highest intent / fill seq handed out
	pending   bool        // an intent may be left: apply it before the next change
	sites     map[int]*siteEntry
	recovered string
}

// CentralEntry is one record of the central log.
type CentralEntry struct {
	Cursor uint64
	Record Record
}

const (
	gseqKey   = sysPrefix + "gseq"
	cursorKey = sysPrefix + "cursor"
	// seenTTL is how long a pushed SyncOutID is remembered for dedup.
	seenTTL = 30 * 24 * time.Hour
)

// centralValue is the value of the primary's rec:<table>:<id> key.
type centralValue struct {
	Cursor uint64          `json:"cursor,omitempty"` // its clog entry, for central data
	Store  string          `json:"store,omitempty"`
	Action Action          `json:"action"`
	Tomb   bool            `json:"tomb,omitempty"` // a deleted central record (keeps its cursor)
	Data   json.RawMessage `json:"data,omitempty"`
}

func getCentral(tx *buntdb.Tx, key string) (centralValue, bool, error) {
	s, err := tx.Get(key)
	if errors.Is(err, buntdb.ErrNotFound) {
		return centralValue{}, false, nil
	}
	if err != nil {
		return centralValue{}, false, err
	}
	var v centralValue
	if err := json.Unmarshal([]byte(s), &v); err != nil {
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
		st, rep, err := openStore(path, log, nil)
		if err != nil {
			return nil, fmt.Errorf("cannot open primary queue %s: %w", path, err)
		}
		if st != nil {
			c := &Central{st: st, log: log, queueMax: opts.QueueMax}
			bad, err := c.load()
			if err == nil && len(bad) == 0 {
				if err = c.drainLocked(); err == nil {
					c.st.maybeCompact()
					if err = c.st.usable(); err == nil {
						c.recovered = recovered
						return c, nil
					}
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

// load walks the whole file: derives the queue lengths, counters and site
// registry, notes leftover intents, and returns undecodable keys.
func (c *Central) load() (bad []string, err error) {
	c.qlen, c.sites = map[int]int{}, map[int]*siteEntry{}
	c.maxCursor, c.lastGseq, c.pending = 0, 0, false
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
	c.visible = c.maxCursor // any intent left is applied before anything is served
	slices.Sort(bad)
	return slices.Compact(bad), err
}

// loadKey folds one key into the derived state; false if it is unreadable.
func (c *Central) loadKey(k, v string) bool {
	var n uint64
	switch {
	case strings.HasPrefix(k, queuePrefix):
		site, id, ok := strings.Cut(k[len(queuePrefix):], ":")
		s, err := strconv.Atoi(site)
		g, _, ok2 := parseQueueID(id)
		if !ok || err != nil || !ok2 {
			return false
		}
		c.qlen[s]++
		c.lastGseq = max(c.lastGseq, g)
	case strings.HasPrefix(k, clogPrefix):
		cur, err := parseUint(k[len(clogPrefix):])
		if err != nil {
			return false
		}
		c.maxCursor = max(c.maxCursor, cur)
	case strings.HasPrefix(k, inboxPrefix):
		in, err := decodeIntent(v)
		if err != nil {
			return false
		}
		c.pending = true
		c.lastGseq = max(c.lastGseq, in.Gseq)
		for _, e := range in.Entries {
			c.maxCursor = max(c.maxCursor, e.Cursor)
		}
	case strings.HasPrefix(k, sitePrefix):
		var s SiteState
		if json.Unmarshal([]byte(v), &s) != nil || s.SyncID == 0 {
			return false
		}
		c.sites[s.SyncID] = &siteEntry{state: s, saved: s.LastContact}
	case k == gseqKey:
		if json.Unmarshal([]byte(v), &n) != nil {
			return false
		}
		c.lastGseq = max(c.lastGseq, n)
	case k == cursorKey:
		if json.Unmarshal([]byte(v), &n) != nil {
			return false
		}
		c.maxCursor = max(c.maxCursor, n)
	}
	return true
}

// buildCentral writes at tmp a fresh datafile holding every readable item
// of a corrupt one (intents included: they are applied on open).
func buildCentral(tmp string, rep repair, log *slog.Logger) (string, error) {
	st, _, err := openStore(tmp, log, nil)
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

// Get returns the latest version of a record; a deleted one reads as not found.
func (c *Central) Get(table, id string) (Record, bool, error) {
	if !validTable(table) {
		return Record{}, false, nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	var v centralValue
	var ok bool
	err := c.st.view(func(tx *buntdb.Tx) error {
		var err error
		v, ok, err = getCentral(tx, recKey(table, id))
		return err
	})
	if err != nil || !ok || v.Tomb {
		return Record{}, false, err
	}
	return Record{Table: table, ID: id, Action: v.Action, Data: v.Data}, true, nil
}

// List returns up to limit records of table with an id greater than after,
// in id order. limit <= 0 means DefaultListLimit.
func (c *Central) List(table, after string, limit int) ([]Record, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.st.listTable(table, after, limit, func(s string) (Action, json.RawMessage, bool, error) {
		var v centralValue
		err := json.Unmarshal([]byte(s), &v)
		return v.Action, v.Data, !v.Tomb, err
	})
}

// CentralSince returns up to limit central-log entries with a cursor greater
// than cursor, ascending, and the highest cursor a site may advance to when
// no entry is returned. The log keeps
// one entry per record (its latest change), so a site that reads it to the
// end holds every central record. limit <= 0 means DefaultListLimit.
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
			r, derr2 := decodeRecord(s)
			if err != nil || derr2 != nil {
				derr = fmt.Errorf("central log entry %s is unreadable: %w", k, errors.Join(err, derr2))
				return false
			}
			out = append(out, CentralEntry{Cursor: cur, Record: r})
			return len(out) < limit
		})
	})
	return out, c.visible, errors.Join(err, derr)
}
