package pg

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"syncagent/queue"
)

// maxList bounds one page of List, Queued and CentralSince.
const maxList = 100000

const sqlRecordCols = `tbl, id, version, action, deleted, owner, central, holders, parent_tbl, parent_id, held, marks, data, coalesce(log_cursor, 0)`

// validTable is queue's rule for a table name that can be looked up (so
// "a:b" cannot read table "a").
func validTable(table string) bool {
	return (queue.Record{Table: table, ID: "x", Action: queue.Update}).Validate() == nil
}

// Get returns the current copy of a record; a deleted one reads as not found.
func (s *Store) Get(table, id string) (queue.Record, bool, error) {
	cur, err := s.Current(table, id)
	if err != nil || !cur.Exists || cur.Deleted {
		return queue.Record{}, false, err
	}
	return cur.Record, true, nil
}

// Current returns everything the primary knows of a record.
func (s *Store) Current(table, id string) (queue.Current, error) {
	if !validTable(table) {
		return queue.Current{}, nil
	}
	ctx, cancel, err := s.call()
	if err != nil {
		return queue.Current{}, err
	}
	defer cancel()
	var cur queue.Current
	err = s.withConn(ctx, func(c *pgxconn) error {
		rows, err := c.Query(ctx, `SELECT `+sqlRecordCols+` FROM records WHERE tbl = $1 AND id = $2 AND version > 0`, table, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			_, row, err := scanLocked(rows)
			if err != nil {
				return err
			}
			cur = row.state.Current(table, id)
		}
		return rows.Err()
	})
	if err != nil {
		return queue.Current{}, s.dbError("cannot read record", err)
	}
	return cur, nil
}

// List returns up to limit live records of table with an id greater than
// after, in id (byte) order. limit <= 0 means queue.DefaultListLimit; at
// most 100,000 come in one page.
func (s *Store) List(table, after string, limit int) ([]queue.Record, error) {
	if !validTable(table) {
		return nil, fmt.Errorf("invalid table name %q", table)
	}
	limit = pageLimit(limit)
	ctx, cancel, err := s.call()
	if err != nil {
		return nil, err
	}
	defer cancel()
	var out []queue.Record
	err = s.withConn(ctx, func(c *pgxconn) error {
		rows, err := c.Query(ctx, `SELECT id, action, data FROM records
			WHERE tbl = $1 AND id > $2 AND version > 0 AND NOT deleted ORDER BY id LIMIT $3`, table, after, limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (queue.Record, error) {
			rec := queue.Record{Table: table}
			var action string
			var data []byte
			err := r.Scan(&rec.ID, &action, &data)
			rec.Action = queue.Action(action)
			if len(data) > 0 {
				rec.Data = data
			}
			return rec, err
		})
		return err
	})
	if err != nil {
		return nil, s.dbError("cannot list records", err)
	}
	return out, nil
}

func pageLimit(limit int) int {
	if limit <= 0 {
		return queue.DefaultListLimit
	}
	return min(limit, maxList)
}

// sqlCentralSince reads a page of the central log and the bound, in one
// statement (one snapshot). The oldest running transaction's id is an
// InitPlan, so both the page and the bound are index scans on cursor that
// stop early.
const sqlCentralSince = `WITH b AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin),
	top AS (SELECT coalesce((SELECT l.cursor FROM central_log l WHERE l.xid < (SELECT xmin FROM b)
		ORDER BY l.cursor DESC LIMIT 1), 0) AS m)
	SELECT top.m, l.cursor, r.tbl, r.id, r.action, r.deleted, r.data
	FROM top LEFT JOIN LATERAL (
		SELECT l.cursor, l.tbl, l.id FROM central_log l WHERE l.cursor > $1 AND l.xid < (SELECT xmin FROM b)
		ORDER BY l.cursor LIMIT $2) l ON true
	LEFT JOIN records r ON r.tbl = l.tbl AND r.id = l.id
	ORDER BY l.cursor`

// CentralSince returns up to limit central-log entries with a cursor greater
// than cursor, ascending, and the highest cursor a site may advance to.
// Only entries of transactions older than the oldest one still running are
// returned, and the bound is the highest of those: a cursor another node
// drew earlier but commits later is never skipped. limit <= 0 means
// queue.DefaultListLimit.
func (s *Store) CentralSince(cursor uint64, limit int) ([]queue.CentralEntry, uint64, error) {
	limit = pageLimit(limit)
	ctx, cancel, err := s.call()
	if err != nil {
		return nil, 0, err
	}
	defer cancel()
	var out []queue.CentralEntry
	var maxCursor uint64
	err = s.withConn(ctx, func(c *pgxconn) error {
		// One statement: the rows and the bound come from one snapshot.
		from := int64(math.MaxInt64)
		if cursor < math.MaxInt64 {
			from = int64(cursor)
		}
		rows, err := c.Query(ctx, sqlCentralSince, from, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var top int64
			var cur *int64
			var tbl, id, action *string
			var deleted *bool
			var data []byte
			if err := rows.Scan(&top, &cur, &tbl, &id, &action, &deleted, &data); err != nil {
				return err
			}
			maxCursor = uint64(top)
			if cur == nil || tbl == nil {
				continue
			}
			v := queue.RecordState{Action: queue.Action(*action), Deleted: *deleted}
			if len(data) > 0 {
				v.Data = data
			}
			out = append(out, queue.CentralEntry{Cursor: uint64(*cur), Record: v.Current(*tbl, *id).Record})
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, s.dbError("cannot read central records", err)
	}
	if cursor == math.MaxUint64 {
		out = nil
	}
	return out, maxCursor, nil
}

// Queued returns up to limit records of site's queue, in the primary's
// order, each as the primary holds it now, and the queue's length. They
// stay queued until Ack. limit <= 0 means queue.DefaultListLimit.
func (s *Store) Queued(site int, limit int) ([]queue.QueuedEntry, int, error) {
	ctx, cancel, err := s.call()
	if err != nil {
		return nil, 0, err
	}
	defer cancel()
	return s.queued(ctx, site, limit)
}

func (s *Store) queued(ctx context.Context, site int, limit int) ([]queue.QueuedEntry, int, error) {
	limit = pageLimit(limit)
	var out []queue.QueuedEntry
	var n int
	err := s.withConn(ctx, func(c *pgxconn) error {
		// The page first, then its records: the join never sees more than
		// a page, whatever the planner thinks the queue holds.
		rows, err := c.Query(ctx, `SELECT q.ord, q.tbl, q.id, q.del, coalesce(r.version, 0), r.action, r.deleted, r.data
			FROM (SELECT ord, tbl, id, del FROM queue WHERE site = $1 ORDER BY ord LIMIT $2) q
			LEFT JOIN records r ON r.tbl = q.tbl AND r.id = q.id
			ORDER BY q.ord`, site, limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (queue.QueuedEntry, error) {
			var ord, ver int64
			var tbl, id string
			var del bool
			var action *string
			var deleted *bool
			var data []byte
			if err := row.Scan(&ord, &tbl, &id, &del, &ver, &action, &deleted, &data); err != nil {
				return queue.QueuedEntry{}, err
			}
			r := queue.Record{Table: tbl, ID: id, Action: queue.Delete}
			if !del && ver > 0 {
				v := queue.RecordState{Action: queue.Action(*action), Deleted: *deleted}
				if len(data) > 0 {
					v.Data = data
				}
				r = v.Current(tbl, id).Record
			}
			return queue.QueuedEntry{SyncOutID: fmt.Sprint(ord), Record: r}, nil
		})
		if err != nil {
			return err
		}
		n, err = queueLen(ctx, c, site)
		return err
	})
	if err != nil {
		return nil, 0, s.dbError(fmt.Sprintf("cannot read the queue of site %d", site), err)
	}
	return out, n, nil
}

// QueueLen is the number of records waiting in site's queue (0, logged,
// when the database cannot say: the contract has no error here).
func (s *Store) QueueLen(site int) int {
	ctx, cancel, err := s.call()
	if err != nil {
		return 0
	}
	defer cancel()
	n := 0
	err = s.withConn(ctx, func(c *pgxconn) error {
		var err error
		n, err = queueLen(ctx, c, site)
		return err
	})
	if err != nil {
		s.warn("cannot read a queue length", "site", site, "err", err)
		return 0
	}
	return n
}

// queueLen sums site's length deltas, folding them into one row when there
// are many.
func queueLen(ctx context.Context, c *pgxconn, site int) (int, error) {
	var n, rows int64
	if err := c.QueryRow(ctx, `SELECT coalesce(sum(n), 0), count(*) FROM queue_len WHERE site = $1`, site).Scan(&n, &rows); err != nil {
		return 0, err
	}
	if rows > compactLenAt {
		// Concurrent folds and inserts keep the sum: each fold removes only
		// the rows it deleted, and adds their sum back.
		if _, err := c.Exec(ctx, `WITH gone AS (DELETE FROM queue_len WHERE site = $1 RETURNING n)
			INSERT INTO queue_len (site, n) SELECT $1, sum(n) FROM gone HAVING count(*) > 0`, site); err != nil && !errors.Is(err, context.Canceled) {
			return int(n), nil // folding is an optimisation; the sum is right
		}
	}
	return int(n), nil
}

// compactLenAt is how many delta rows a site's queue length may have
// before a read folds them.
const compactLenAt = 64
