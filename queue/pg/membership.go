package pg

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"syncagent/queue"
)

// reconcileLock lets one node at a time bring holders in line with new site
// rows ("syncagent reconcile", truncated to 63 bits).
const reconcileLock = 0x73796e637265636f

const reconcileBatch = 1000

// Reconcile brings the primary's state in line with new site rows, as
// queue.Central.Reconcile: a site that is gone has its queue emptied and
// must initialise again; every record's holders are computed afresh by
// queue.DecideMembership. Records are read in batches without locks; those
// whose holders change are decided again under locks and rewritten in
// their own transaction, so pushes go on meanwhile. One node reconciles at
// a time; it does nothing when m is the membership already reflected.
func (s *Store) Reconcile(m queue.Membership, router queue.Router) (queue.MembershipResult, error) {
	var res queue.MembershipResult
	if s.closed.Load() {
		return res, queue.ErrClosed
	}
	want := m.Digest()
	step := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), s.opts.CallTimeout)
	}
	ctx, cancel := step()
	defer func() { cancel() }()
	lockConn, err := s.pool.Acquire(ctx)
	if err != nil {
		return res, s.dbError("cannot reconcile site membership", err)
	}
	defer lockConn.Release()
	if _, err := lockConn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(reconcileLock)); err != nil {
		return res, s.dbError("cannot reconcile site membership", err)
	}
	defer func() {
		uctx, ucancel := step()
		defer ucancel()
		if _, err := lockConn.Exec(uctx, "SELECT pg_advisory_unlock($1)", int64(reconcileLock)); err != nil {
			lockConn.Conn().Close(uctx)
		}
	}()
	var have string
	err = s.pool.QueryRow(ctx, `SELECT value FROM meta WHERE key = 'members'`).Scan(&have)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return res, s.dbError("cannot reconcile site membership", err)
	}
	if have == want {
		return res, nil
	}
	if have != "" {
		for id := range queue.ParseDigest(have) {
			if _, ok := m[id]; ok {
				continue
			}
			n, err := s.removeSite(ctx, id)
			if err != nil {
				return res, s.dbError("cannot reconcile site membership", err)
			}
			res.Purged += n
			res.Removed = append(res.Removed, id)
		}
	}
	slices.Sort(res.Removed)
	var pivot queue.Ref
	for {
		cancel()
		ctx, cancel = step()
		recs, err := s.scanRecords(ctx, pivot)
		if err != nil {
			return res, s.dbError("cannot reconcile site membership", err)
		}
		if len(recs) == 0 {
			break
		}
		pivot = recs[len(recs)-1].Ref
		n, err := s.reconcileRecords(ctx, recs, m, router)
		if err != nil {
			return res, s.dbError("cannot reconcile site membership", err)
		}
		res.Records, res.Queued, res.Deleted = res.Records+n.Records, res.Queued+n.Queued, res.Deleted+n.Deleted
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO meta (key, value) VALUES ('members', $1)
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, want); err != nil {
		return res, s.dbError("cannot save site membership", err)
	}
	if res.Records > 0 || res.Purged > 0 {
		s.log.Info("site membership changed; queues brought in line", "records", res.Records, "queued", res.Queued,
			"deleted", res.Deleted, "purged", res.Purged, "removed_sites", res.Removed)
	}
	return res, nil
}

// removeSite empties the queue of a site that is no longer in the rows and
// marks it new (it initialises again if it comes back).
func (s *Store) removeSite(ctx context.Context, id int) (int, error) {
	n := 0
	err := s.txn(ctx, fmt.Sprintf("cannot remove site %d", id), func(tx pgx.Tx) error {
		var err error
		if _, err = tx.Exec(ctx, `SELECT 1 FROM sites WHERE sync_id = $1 FOR UPDATE`, id); err != nil {
			return err
		}
		if n, err = purgeQueue(ctx, tx, id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE sites SET state = jsonb_set(state, '{Initialisation}', '"new"') WHERE sync_id = $1`, id)
		return err
	})
	return n, err
}

// scanRecords reads the next batch of live store records after pivot,
// without locks.
func (s *Store) scanRecords(ctx context.Context, pivot queue.Ref) ([]queue.StoredRecord, error) {
	// ("", "") sorts before every record: a table name is never empty.
	q := `SELECT ` + sqlRecordCols + ` FROM records WHERE (tbl, id) > ($1, $2) AND version > 0
		AND NOT deleted AND NOT held AND NOT central ORDER BY tbl, id LIMIT $3`
	rows, err := s.pool.Query(ctx, q, pivot.Table, pivot.ID, reconcileBatch)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []queue.StoredRecord
	for rows.Next() {
		ref, row, err := scanLocked(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, queue.StoredRecord{Ref: ref, State: row.state})
	}
	return out, rows.Err()
}

// reconcileRecords decides recs without locks to find those whose holders
// change, then decides and rewrites those under locks.
func (s *Store) reconcileRecords(ctx context.Context, recs []queue.StoredRecord, m queue.Membership, router queue.Router) (queue.MembershipResult, error) {
	sr := &snapshotReader{s: s, ctx: ctx, cache: map[queue.Ref]*lockedRow{}}
	for _, r := range recs {
		sr.cache[r.Ref] = &lockedRow{state: r.State, exists: true}
	}
	var parents []queue.Ref
	for _, r := range recs {
		if p := r.State.Parent; p != nil {
			parents = append(parents, *p)
		}
	}
	if err := sr.prefetch(parents); err != nil {
		return queue.MembershipResult{}, err
	}
	var fake uint64
	plan, _ := queue.DecideMembership(sr, recs, m, router, func() uint64 { fake++; return fake })
	if sr.err != nil {
		return queue.MembershipResult{}, sr.err
	}
	var changed []queue.Ref
	for _, pr := range plan.Recs {
		if ref, ok := pr.Ref(); ok {
			changed = append(changed, ref)
		}
	}
	if len(changed) == 0 {
		return queue.MembershipResult{}, nil
	}
	for attempt := 0; ; attempt++ {
		n, err := s.reconcileLocked(ctx, dedupe(changed), m, router)
		if err == nil || !retryable(err) || attempt >= maxRetries {
			return n, err
		}
		backoff(ctx, attempt)
	}
}

func (s *Store) reconcileLocked(ctx context.Context, refs []queue.Ref, m queue.Membership, router queue.Router) (queue.MembershipResult, error) {
	w, err := s.begin(ctx, false, 0)
	if err != nil {
		return queue.MembershipResult{}, err
	}
	defer w.abort()
	var res queue.MembershipResult
	plan, err := w.decide(refs, nil, 2*len(refs)+8, func(r *reader) (queue.Plan, error) {
		var recs []queue.StoredRecord
		for _, ref := range refs {
			if v, ok, _ := r.State(ref.Table, ref.ID); ok {
				recs = append(recs, queue.StoredRecord{Ref: ref, State: v})
			}
		}
		p, n := queue.DecideMembership(r, recs, m, router, w.next)
		res = n
		return p, nil
	})
	if err != nil {
		return queue.MembershipResult{}, err
	}
	if _, err := w.apply(plan); err != nil {
		return queue.MembershipResult{}, err
	}
	w.release()
	return res, nil
}

// snapshotReader reads records without locks (to find what may change).
type snapshotReader struct {
	s     *Store
	ctx   context.Context
	cache map[queue.Ref]*lockedRow
	err   error
}

func (r *snapshotReader) prefetch(refs []queue.Ref) error {
	var need []queue.Ref
	for _, ref := range dedupe(refs) {
		if _, ok := r.cache[ref]; !ok {
			need = append(need, ref)
			r.cache[ref] = &lockedRow{}
		}
	}
	if len(need) == 0 {
		return nil
	}
	t, i := splitRefs(need)
	rows, err := r.s.pool.Query(r.ctx, `SELECT r.tbl, r.id, r.version, r.action, r.deleted, r.owner, r.central, r.holders,
		r.parent_tbl, r.parent_id, r.held, r.marks, r.data, coalesce(r.log_cursor, 0)
		FROM records r JOIN unnest($1::text[], $2::text[]) AS u(t, i) ON r.tbl = u.t AND r.id = u.i`, t, i)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		ref, row, err := scanLocked(rows)
		if err != nil {
			return err
		}
		r.cache[ref] = row
	}
	return rows.Err()
}

func (r *snapshotReader) State(table, id string) (queue.RecordState, bool, error) {
	ref := queue.Ref{Table: table, ID: id}
	if _, ok := r.cache[ref]; !ok {
		if err := r.prefetch([]queue.Ref{ref}); err != nil {
			r.err = err
			return queue.RecordState{}, false, err
		}
	}
	row := r.cache[ref]
	return row.state, row.exists, nil
}

func (r *snapshotReader) Children(queue.Ref) ([]queue.Ref, error) { return nil, nil }
