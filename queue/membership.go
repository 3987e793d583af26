package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/tidwall/buntdb"
)

// Membership is which sites exist and which stores each holds: the input
// of the router's holders. Central keeps the membership its stored holders
// reflect, so a change of the site rows — even across a restart — is carried
// into every record.
type Membership map[int][]string

// digest is a canonical form of m (JSON of its sorted rows), compared
// with the stored one.
func (m Membership) digest() string {
	ids := make([]int, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	rows := make([]membershipRow, 0, len(ids))
	for _, id := range ids {
		stores := slices.Clone(m[id])
		slices.Sort(stores)
		rows = append(rows, membershipRow{id, slices.Compact(stores)})
	}
	b, _ := marshal(rows)
	return string(b)
}

type membershipRow struct {
	Site   int      `json:"s"`
	Stores []string `json:"st"`
}

// MembershipResult counts what Reconcile changed.
type MembershipResult struct {
	Records int // records whose holders changed
	Queued  int // entries queued (records a site must now hold)
	Deleted int // deletes queued (records a site must no longer hold)
	Purged  int // entries dropped from the queues of removed sites
	Removed []int
}

// Reconcile brings the primary's state in line with new site rows (m)
// under router. A site that is gone has its queue emptied and must
// initialise again if it comes back; then every record's holders are
// computed afresh: a site that must now hold a record (a store added, a
// store moved to it, a new site) gets it queued, a site that must no longer
// hold it gets a delete, so no site keeps another store's records and none
// misses one. It works in batches (other calls interleave) and is
// idempotent: after a crash it runs again on the same rows. It does nothing
// when m is the membership already reflected.
func (c *Central) Reconcile(m Membership, router Router) (MembershipResult, error) {
	var res MembershipResult
	want := m.digest()
	c.mu.Lock()
	if err := c.drainLocked(); err != nil {
		c.mu.Unlock()
		return res, err
	}
	if c.members == want {
		c.mu.Unlock()
		return res, nil
	}
	var old Membership
	if c.members != "" {
		old = parseDigest(c.members)
	}
	for id := range old {
		if _, ok := m[id]; ok {
			continue
		}
		n, err := c.purgeQueueLocked(id)
		if err != nil {
			c.mu.Unlock()
			return res, err
		}
		res.Purged += n
		res.Removed = append(res.Removed, id)
		if e, ok := c.sites[id]; ok {
			s := e.state
			s.Initialisation = InitNew
			if err := c.saveSiteLocked(s); err != nil {
				c.mu.Unlock()
				return res, err
			}
		}
	}
	c.mu.Unlock()
	slices.Sort(res.Removed)
	for pivot := recPrefix; pivot != ""; {
		next, err := c.reconcileBatch(m, router, pivot, &res)
		if err != nil {
			return res, err
		}
		pivot = next
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.updateLocked("save site membership", func(tx *buntdb.Tx) error {
		return setJSONKey(tx, membersKey, want, nil)
	}); err != nil {
		return res, err
	}
	c.members = want
	if res.Records > 0 || res.Purged > 0 {
		c.log.Info("site membership changed; queues brought in line", "records", res.Records, "queued", res.Queued,
			"deleted", res.Deleted, "purged", res.Purged, "removed_sites", res.Removed)
	}
	return res, nil
}

func (c *Central) reconcileBatch(m Membership, router Router, pivot string, res *MembershipResult) (string, error) {
	const batch = 2000
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.drainLocked(); err != nil {
		return "", err
	}
	next := ""
	var plan Plan
	err := c.st.view(func(tx *buntdb.Tx) error {
		var recs []StoredRecord
		var derr error
		err := tx.AscendGreaterOrEqual("", pivot, func(k, s string) bool {
			table, id, ok := splitRecKey(k)
			if !ok {
				return false
			}
			if len(recs) >= batch {
				next = k
				return false
			}
			var v RecordState
			if err := decodeRecordState(s, &v); err != nil {
				derr = fmt.Errorf("datafile value of %s is unreadable: %w", k, err)
				return false
			}
			recs = append(recs, StoredRecord{Ref{table, id}, v})
			return true
		})
		if err := errors.Join(err, derr); err != nil {
			return err
		}
		var n MembershipResult
		plan, n = DecideMembership(buntReader{tx, c.parents}, recs, m, router, c.nextVersion)
		res.Records, res.Queued, res.Deleted = res.Records+n.Records, res.Queued+n.Queued, res.Deleted+n.Deleted
		return nil
	})
	if err != nil {
		return "", err
	}
	return next, c.runIntentLocked(plan)
}

// parseDigest reads back a Membership digest.
func parseDigest(d string) Membership {
	var rows []membershipRow
	json.Unmarshal([]byte(d), &rows)
	m := Membership{}
	for _, r := range rows {
		m[r.Site] = r.Stores
	}
	return m
}
