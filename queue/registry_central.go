package queue

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/tidwall/buntdb"
)

// In the BuntDB file the registry is one key (sys:registry): its rows, its
// generation and its change log change together, and one key is what
// survives a power cut whole (DESIGN.md invariant 2). 40,000 rows are about
// 8 MB: a change rewrites them all, which costs tens of milliseconds, and
// site changes are rare next to sync requests.

const registryKey = sysPrefix + "registry"

// registry is the decoded sys:registry.
type registry struct {
	gen  uint64
	rows map[int]SiteConfig
	log  []RegistryChange // oldest first, at most RegistryLogMax
}

type registryJSON struct {
	Gen   uint64           `json:"gen"`
	Sites []SiteConfig     `json:"sites"`
	Log   []RegistryChange `json:"log"`
}

func (c *Central) loadRegistry(v string) error {
	var j registryJSON
	if err := json.Unmarshal([]byte(v), &j); err != nil {
		return err
	}
	r := registry{gen: j.Gen, rows: make(map[int]SiteConfig, len(j.Sites)), log: j.Log}
	for _, s := range j.Sites {
		if s.SyncID <= 1 {
			return fmt.Errorf("registry row with sync_id %d", s.SyncID)
		}
		r.rows[s.SyncID] = s
	}
	c.registry = r
	return nil
}

// Registry returns the registry's rows, by sync ID, and its generation.
func (c *Central) Registry() ([]SiteConfig, uint64, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := c.st.usable(); err != nil {
		return nil, 0, err
	}
	return sortedRows(c.registry.rows), c.registry.gen, nil
}

// RegistryGeneration returns the registry's generation (0: never changed).
func (c *Central) RegistryGeneration() (uint64, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := c.st.usable(); err != nil {
		return 0, err
	}
	return c.registry.gen, nil
}

// ChangeRegistry applies e if the registry is still at generation base,
// logs note (with the new generation and the time) and returns the new
// generation. At another generation it changes nothing and returns
// ErrRegistryChanged.
func (c *Central) ChangeRegistry(base uint64, e RegistryEdit, note RegistryChange) (uint64, error) {
	if err := CheckRegistryEdit(e, note); err != nil {
		return 0, err
	}
	// The new value (8 MB at 40,000 sites) is made under the read lock;
	// the write lock is held only to write it, so sync requests wait for
	// an fsync, not for the encoding.
	c.mu.RLock()
	next, v, err := c.nextRegistryLocked(base, e, note)
	c.mu.RUnlock()
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.drainLocked(); err != nil {
		return 0, err
	}
	if c.registry.gen != base {
		return 0, fmt.Errorf("%w (generation %d, not %d): read it again and retry", ErrRegistryChanged, c.registry.gen, base)
	}
	if err := c.updateLocked("change the site registry", func(tx *buntdb.Tx) error {
		_, _, err := tx.Set(registryKey, string(v), nil)
		return err
	}); err != nil {
		return 0, err
	}
	c.registry = next
	return next.gen, nil
}

// nextRegistryLocked is the registry after e at generation base, and its
// encoding. The caller holds c.mu (read).
func (c *Central) nextRegistryLocked(base uint64, e RegistryEdit, note RegistryChange) (registry, []byte, error) {
	if err := c.st.usable(); err != nil {
		return registry{}, nil, err
	}
	if c.registry.gen != base {
		return registry{}, nil, fmt.Errorf("%w (generation %d, not %d): read it again and retry", ErrRegistryChanged, c.registry.gen, base)
	}
	rows, err := ApplyRegistryEdit(c.registry.rows, e)
	if err != nil {
		return registry{}, nil, err
	}
	note.Generation, note.Put, note.Removed = base+1, len(e.Put), len(e.Remove)
	if note.At.IsZero() {
		note.At = time.Now()
	}
	note.At = note.At.UTC()
	old := c.registry.log
	log := append(old[max(0, len(old)+1-RegistryLogMax):len(old):len(old)], note)
	next := registry{gen: base + 1, rows: rows, log: log}
	v, err := marshal(registryJSON{Gen: next.gen, Sites: sortedRows(rows), Log: log})
	return next, v, err
}

// RegistryLog returns the last limit changes of the registry, newest first.
func (c *Central) RegistryLog(limit int) ([]RegistryChange, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := c.st.usable(); err != nil {
		return nil, err
	}
	l := c.registry.log
	out := make([]RegistryChange, 0, min(max(limit, 0), len(l)))
	for i := len(l) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, l[i])
	}
	return out, nil
}
