package pg

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"syncagent/queue"
)

// Applying a plan: the same semantics as queue's applyLocked (a record is
// written only over an older or equal version, a queue entry only over an
// older one, a site's own change removes only its older entry), as a few
// statements over arrays, sent with COMMIT in one round trip.

const (
	sqlWriteRecords = `UPDATE records r SET version = u.version, action = u.action, deleted = u.deleted, owner = u.owner,
		central = u.central, holders = u.holders::integer[], parent_tbl = u.ptbl, parent_id = u.pid, held = u.held,
		marks = u.marks::jsonb, data = u.data,
		log_cursor = CASE WHEN u.setlog THEN nullif(u.cursor, 0) ELSE r.log_cursor END
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bool[], $6::text[], $7::bool[], $8::text[],
			$9::text[], $10::text[], $11::bool[], $12::text[], $13::bytea[], $14::bool[], $15::bigint[])
			AS u(tbl, id, version, action, deleted, owner, central, holders, ptbl, pid, held, marks, data, setlog, cursor)
		WHERE r.tbl = u.tbl AND r.id = u.id AND r.version <= u.version`
	sqlInsertRecords = `INSERT INTO records (tbl, id, version, action, deleted, owner, central, holders, parent_tbl, parent_id,
			held, marks, data, log_cursor)
		SELECT u.tbl, u.id, u.version, u.action, u.deleted, u.owner, u.central, u.holders::integer[], u.ptbl, u.pid, u.held,
			u.marks::jsonb, u.data, nullif(u.cursor, 0)
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bool[], $6::text[], $7::bool[], $8::text[],
			$9::text[], $10::text[], $11::bool[], $12::text[], $13::bytea[], $14::bool[], $15::bigint[])
			AS u(tbl, id, version, action, deleted, owner, central, holders, ptbl, pid, held, marks, data, setlog, cursor)
		ORDER BY u.tbl, u.id`
	sqlDropPlaceholders = `DELETE FROM records r USING unnest($1::text[], $2::text[]) AS u(t, i)
		WHERE r.tbl = u.t AND r.id = u.i AND r.version = 0`
	sqlLogDelete = `DELETE FROM central_log WHERE cursor = ANY($1::bigint[])`
	sqlLogInsert = `INSERT INTO central_log (cursor, tbl, id, xid)
		SELECT c, t, i, pg_current_xact_id()::text::bigint FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(c, t, i)`
	// sqlQueueSet is setEntry: queue unless an entry at least as new is
	// there; inserted rows (xmax = 0) count into the site's length, and the
	// statement returns how many were inserted.
	sqlQueueSet = `WITH up AS (
			INSERT INTO queue AS q (site, tbl, id, ord, del)
			SELECT s, t, i, o, d FROM unnest($1::integer[], $2::text[], $3::text[], $4::bigint[], $5::bool[]) AS u(s, t, i, o, d)
			ORDER BY s, t, i
			ON CONFLICT (site, tbl, id) DO UPDATE SET ord = EXCLUDED.ord, del = EXCLUDED.del WHERE q.ord < EXCLUDED.ord
			RETURNING q.site, (q.xmax = 0) AS inserted),
		d AS (INSERT INTO queue_len (site, n) SELECT site, count(*) FROM up WHERE inserted GROUP BY site RETURNING n)
		SELECT coalesce(sum(n), 0)::bigint FROM d`
	// sqlQueueRemove is removeEntry: take out an entry queued before ord.
	//
	// Each entry is looked up by its key (the primary key), one at a time,
	// in the arrays' order (the key order queueOps sorts them in, as
	// sqlQueueSet takes them). With a plain "ord < u.o", the statistics of
	// a queue that grew fast since its last ANALYZE (an ingest of new
	// records) had the planner walk the site's whole queue by queue_order
	// for every entry, filtering on tbl and id (auto_explain: 500 rows
	// removed by the filter per entry, 26 ms a push of 500 finding
	// nothing); "ord + 0" keeps that index out of the choice.
	// The rows locked are then deleted by their ctid (they are locked, so
	// it cannot change under the statement): deleted by key, the same
	// statistics chose queue_order again.
	sqlQueueRemove = `WITH locked AS (
			SELECT q.tid
			FROM unnest($1::integer[], $2::text[], $3::text[], $4::bigint[]) AS u(s, t, i, o)
			CROSS JOIN LATERAL (SELECT ctid AS tid FROM queue
				WHERE site = u.s AND tbl = u.t AND id = u.i AND ord + 0 < u.o FOR UPDATE) q),
		gone AS (DELETE FROM queue q USING locked l WHERE q.ctid = l.tid RETURNING q.site)
		INSERT INTO queue_len (site, n) SELECT site, -count(*) FROM gone GROUP BY site`
	sqlKidsAdd = `INSERT INTO kids (parent_tbl, parent_id, tbl, id)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING`
	sqlKidsDel = `DELETE FROM kids k USING unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(pt, pi, t, i)
		WHERE k.parent_tbl = u.pt AND k.parent_id = u.pi AND k.tbl = u.t AND k.id = u.i`
	sqlSaveSite = `UPDATE sites SET state = $2::jsonb WHERE sync_id = $1`
)

// applied is what applying a plan gave a caller to know.
type applied struct {
	cursors map[queue.Ref]uint64 // central records: their new log cursor
}

// apply writes plan and commits. The central log cursors are drawn first,
// under the central log lock (which is then released).
func (w *work) apply(plan queue.Plan) (applied, error) {
	out := applied{cursors: map[queue.Ref]uint64{}}
	// Records: the last write of each that is not older than what is there.
	final := map[queue.Ref]queue.RecordState{}
	var order []queue.Ref
	for _, pr := range plan.Recs {
		ref, ok := pr.Ref()
		if !ok {
			return out, fmt.Errorf("plan writes an unreadable key %q", pr.Key)
		}
		have := uint64(0)
		if v, ok := final[ref]; ok {
			have = v.Version
		} else if row := w.rows[ref]; row != nil && row.exists {
			have = row.state.Version
		}
		if have > pr.Val.Version {
			continue
		}
		if _, ok := final[ref]; !ok {
			order = append(order, ref)
		}
		final[ref] = pr.Val
	}
	// Central log: a record with a log op loses its old entry, and gets a
	// new one at a fresh cursor when its final version is the logged one.
	logged := map[queue.Ref]bool{}
	var newLog []queue.Ref
	var dropLog []int64
	for _, l := range plan.Logs {
		if logged[l.Ref] {
			continue
		}
		v, ok := final[l.Ref]
		entry := false
		for _, m := range plan.Logs {
			if m.Ref == l.Ref && m.Cursor != 0 && ok && v.Version == m.Cursor && v.Central {
				entry = true
			}
		}
		logged[l.Ref] = true
		if row := w.rows[l.Ref]; row != nil && row.logCursor != 0 {
			dropLog = append(dropLog, row.logCursor)
		}
		if entry {
			newLog = append(newLog, l.Ref)
		}
	}
	if len(plan.Logs) > 0 && !w.central {
		return out, errNeedCentral
	}
	var cursors []int64
	if len(newLog) > 0 || w.central {
		b := &pgx.Batch{}
		if len(newLog) > 0 {
			b.Queue(`SELECT nextval('cursors') FROM generate_series(1, $1::int)`, len(newLog))
		}
		w.unlockCentral(b)
		br := w.conn.SendBatch(w.ctx, b)
		if len(newLog) > 0 {
			rows, err := br.Query()
			if err == nil {
				cursors, err = pgx.CollectRows(rows, pgx.RowTo[int64])
			}
			if err != nil {
				br.Close()
				return out, err
			}
		}
		if err := br.Close(); err != nil {
			return out, err
		}
		w.central = false
		for i, ref := range newLog {
			out.cursors[ref] = uint64(cursors[i])
		}
	}

	if h := w.s.testHookApply; h != nil {
		h(out)
	}
	b := &pgx.Batch{}
	var inserts, updates []queue.Ref
	for _, ref := range order {
		if w.rows[ref] == nil {
			inserts = append(inserts, ref) // absent: a concurrent creator's insert makes one of the two retry
		} else {
			updates = append(updates, ref)
		}
	}
	if len(updates) > 0 {
		queueRecords(b, sqlWriteRecords, updates, final, logged, out.cursors)
	}
	if len(inserts) > 0 {
		queueRecords(b, sqlInsertRecords, dedupe(inserts), final, logged, out.cursors)
	}
	if len(dropLog) > 0 {
		b.Queue(sqlLogDelete, dropLog)
	}
	if len(newLog) > 0 {
		t, i := splitRefs(newLog)
		b.Queue(sqlLogInsert, cursors, t, i)
	}
	queueEntries(b, plan.Queue)
	queueKids(b, plan.Kids)
	if plan.Site != nil {
		st, err := encodeSite(*plan.Site)
		if err != nil {
			return out, err
		}
		b.Queue(sqlSaveSite, plan.Site.SyncID, st)
	}
	// Placeholders go, but those now the parent of a held child: the
	// parent's creator must meet them.
	parents := map[queue.Ref]bool{}
	for _, k := range plan.Kids {
		if p, _, ok := k.Refs(); ok && !k.Del {
			parents[p] = true
		}
	}
	var drop []queue.Ref
	for ref := range w.created {
		if _, ok := final[ref]; !ok && !parents[ref] {
			drop = append(drop, ref)
		}
	}
	if len(drop) > 0 {
		t, i := splitRefs(dedupe(drop))
		b.Queue(sqlDropPlaceholders, t, i)
	}
	b.Queue("COMMIT")
	if err := w.conn.SendBatch(w.ctx, b).Close(); err != nil {
		return out, err
	}
	return out, nil
}

func queueRecords(b *pgx.Batch, sql string, order []queue.Ref, final map[queue.Ref]queue.RecordState, logged map[queue.Ref]bool, cursors map[queue.Ref]uint64) {
	n := len(order)
	var (
		tbl, id, action, owner, holders, marks = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]*string, n)
		ptbl, pid                              = make([]*string, n), make([]*string, n)
		version, cursor                        = make([]int64, n), make([]int64, n)
		deleted, central, held, setlog         = make([]bool, n), make([]bool, n), make([]bool, n), make([]bool, n)
		data                                   = make([][]byte, n)
	)
	for k, ref := range order {
		v := final[ref]
		tbl[k], id[k], version[k], action[k] = ref.Table, ref.ID, int64(v.Version), string(v.Action)
		deleted[k], owner[k], central[k], held[k] = v.Deleted, v.Owner, v.Central, v.Held
		holders[k] = intArray(v.Holders)
		if v.Parent != nil {
			ptbl[k], pid[k] = &v.Parent.Table, &v.Parent.ID
		}
		if len(v.From) > 0 {
			b, _ := json.Marshal(v.From)
			s := string(b)
			marks[k] = &s
		}
		if len(v.Data) > 0 {
			data[k] = v.Data
		}
		setlog[k], cursor[k] = logged[ref], int64(cursors[ref])
	}
	b.Queue(sql, tbl, id, version, action, deleted, owner, central, holders, ptbl, pid, held, marks, data, setlog, cursor)
}

// queueEntries applies queue ops in the plan's order: ops on distinct
// entries are independent, so round k applies every entry's k-th op.
func queueEntries(b *pgx.Batch, ops []queue.QueueOp) {
	type key struct {
		site      int
		table, id string
	}
	seen := map[key]int{}
	var rounds [][]queue.QueueOp
	for _, q := range ops {
		k := key{q.Site, q.Table, q.ID}
		r := seen[k]
		seen[k] = r + 1
		if r == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[r] = append(rounds[r], q)
	}
	for _, round := range rounds {
		// In key order, as every writer of the queue locks its rows.
		slices.SortFunc(round, func(a, b queue.QueueOp) int {
			if a.Site != b.Site {
				return a.Site - b.Site
			}
			return compareRefs(queue.Ref{Table: a.Table, ID: a.ID}, queue.Ref{Table: b.Table, ID: b.ID})
		})
		var set, rm queueArrays
		for _, q := range round {
			if q.Remove {
				rm.add(q)
			} else {
				set.add(q)
			}
		}
		if len(set.site) > 0 {
			b.Queue(sqlQueueSet, set.site, set.tbl, set.id, set.ord, set.del)
		}
		if len(rm.site) > 0 {
			b.Queue(sqlQueueRemove, rm.site, rm.tbl, rm.id, rm.ord)
		}
	}
}

type queueArrays struct {
	site    []int32
	tbl, id []string
	ord     []int64
	del     []bool
}

func (a *queueArrays) add(q queue.QueueOp) {
	a.site, a.tbl, a.id = append(a.site, int32(q.Site)), append(a.tbl, q.Table), append(a.id, q.ID)
	a.ord, a.del = append(a.ord, int64(q.Ord)), append(a.del, q.Del)
}

// queueKids applies child index ops: the last op on an entry wins.
func queueKids(b *pgx.Batch, ops []queue.KidOp) {
	type entry struct{ parent, child queue.Ref }
	last := map[entry]bool{}
	var order []entry
	for _, k := range ops {
		p, c, ok := k.Refs()
		if !ok {
			continue
		}
		e := entry{p, c}
		if _, seen := last[e]; !seen {
			order = append(order, e)
		}
		last[e] = !k.Del
	}
	var add, del [4][]string
	for _, e := range order {
		dst := &del
		if last[e] {
			dst = &add
		}
		for i, s := range []string{e.parent.Table, e.parent.ID, e.child.Table, e.child.ID} {
			dst[i] = append(dst[i], s)
		}
	}
	if len(add[0]) > 0 {
		b.Queue(sqlKidsAdd, add[0], add[1], add[2], add[3])
	}
	if len(del[0]) > 0 {
		b.Queue(sqlKidsDel, del[0], del[1], del[2], del[3])
	}
}

// intArray is ids as a PostgreSQL array literal.
func intArray(ids []int) string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, id := range ids {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.Itoa(id))
	}
	sb.WriteByte('}')
	return sb.String()
}
