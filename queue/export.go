package queue

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tidwall/buntdb"
)

// Exporter receives a primary's whole state from Central.Export, for
// another backend to take over (`syncagent central migrate`): every item
// exactly as the primary's order left it, so that sites go on from where
// they are — their cursors, the syncOutIds they acknowledge and the marks
// that recognise a repeated push stay the same.
type Exporter interface {
	// Record is one record's state (deleted ones included).
	Record(ref Ref, st RecordState) error
	// Kid says child belongs to parent (the child index).
	Kid(parent, child Ref) error
	// CentralLog is one live entry of the central log: ref's current
	// version is cursor.
	CentralLog(cursor uint64, ref Ref) error
	// Queued is one entry of site's queue, queued by version ord (the
	// syncOutId the site acknowledges).
	Queued(site int, ref Ref, ord uint64, del bool) error
}

// ExportSummary is what Export found besides the streamed items.
type ExportSummary struct {
	Version     uint64 // the last version handed out
	MaxCursor   uint64 // the highest central log cursor a site may have read to
	Members     string // the site membership the stored holders reflect
	Sites       []SiteState
	Diagnostics map[int]Diagnostics // per site, those that have any
	// The site registry: its rows, generation and change log (oldest first).
	Registry    []SiteConfig
	RegistryGen uint64
	RegistryLog []RegistryChange
	Records     int
	Kids        int
	CentralLog  int
	Queued      map[int]int // entries per site
}

// Export streams the primary's state to e in one read of the datafile
// (meant for a stopped primary: run it on a Central nobody serves from).
// Intents left by a power cut were applied when the datafile was opened.
func (c *Central) Export(e Exporter) (ExportSummary, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	sum := ExportSummary{Version: c.version, MaxCursor: c.visible, Members: c.members, Diagnostics: map[int]Diagnostics{}, Queued: map[int]int{}}
	for _, s := range c.sites {
		sum.Sites = append(sum.Sites, s.state)
	}
	sum.Registry, sum.RegistryGen = sortedRows(c.registry.rows), c.registry.gen
	sum.RegistryLog = append([]RegistryChange(nil), c.registry.log...)
	var ferr error
	fail := func(err error) bool { ferr = err; return false }
	err := c.st.view(func(tx *buntdb.Tx) error {
		return tx.Ascend("", func(k, v string) bool {
			switch {
			case strings.HasPrefix(k, recPrefix):
				t, id, ok := splitRecKey(k)
				var st RecordState
				if !ok || decodeRecordState(v, &st) != nil {
					return fail(fmt.Errorf("record %s is unreadable", k))
				}
				sum.Records++
				if err := e.Record(Ref{t, id}, st); err != nil {
					return fail(err)
				}
			case strings.HasPrefix(k, kidPrefix):
				parent, child, ok := KidOp{Key: k}.Refs()
				if !ok {
					return fail(fmt.Errorf("child index entry %s is unreadable", k))
				}
				sum.Kids++
				if err := e.Kid(parent, child); err != nil {
					return fail(err)
				}
			case strings.HasPrefix(k, clogPrefix):
				cur, err := parseUint(k[len(clogPrefix):])
				var ref Ref
				if err == nil {
					err = json.Unmarshal([]byte(v), &ref)
				}
				var st RecordState
				var found bool
				if err == nil {
					st, found, err = getCentral(tx, recKey(ref.Table, ref.ID))
				}
				if err != nil {
					return fail(fmt.Errorf("central log entry %s is unreadable: %w", k, err))
				}
				if !found || st.Version != cur {
					return true // superseded: CentralSince skips it too
				}
				sum.CentralLog++
				if err := e.CentralLog(cur, ref); err != nil {
					return fail(err)
				}
			case strings.HasPrefix(k, queuePrefix):
				site, ord, del, ok := parseQueueValue(v)
				t, id, kok := splitQueueKey(k, site)
				if !ok || !kok {
					return fail(fmt.Errorf("queue entry %s is unreadable", k))
				}
				sum.Queued[site]++
				if err := e.Queued(site, Ref{t, id}, ord, del); err != nil {
					return fail(err)
				}
			case strings.HasPrefix(k, diagPrefix):
				var d Diagnostics
				if err := json.Unmarshal([]byte(v), &d); err != nil {
					return fail(fmt.Errorf("diagnostics %s are unreadable: %w", k, err))
				}
				var id int
				if _, err := fmt.Sscanf(k[len(diagPrefix):], "%d", &id); err != nil || id <= 0 {
					return fail(fmt.Errorf("diagnostics key %s is unreadable", k))
				}
				sum.Diagnostics[id] = d
			}
			return true
		})
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return sum, fmt.Errorf("cannot export the primary's datafile: %w", err)
	}
	return sum, nil
}

// splitQueueKey reads the table and id of q:<site>:<table>:<id>.
func splitQueueKey(k string, site int) (table, id string, ok bool) {
	rest, ok := strings.CutPrefix(k, queueKeyPrefix(site))
	if !ok {
		return "", "", false
	}
	return splitRecKey(recPrefix + rest)
}
