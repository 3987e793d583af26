package pg

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"syncagent/queue"
)

const (
	sqlPlaceholders = `INSERT INTO records (tbl, id) SELECT t, i FROM unnest($1::text[], $2::text[]) AS u(t, i)
		ON CONFLICT DO NOTHING RETURNING tbl, id`
	sqlLockRows = `SELECT r.tbl, r.id, r.version, r.action, r.deleted, r.owner, r.central, r.holders,
		r.parent_tbl, r.parent_id, r.held, r.marks, r.data, coalesce(r.log_cursor, 0)
		FROM records r JOIN unnest($1::text[], $2::text[]) AS u(t, i) ON r.tbl = u.t AND r.id = u.i
		ORDER BY r.tbl, r.id FOR UPDATE OF r`
	sqlKids = `SELECT k.parent_tbl, k.parent_id, k.tbl, k.id
		FROM kids k JOIN unnest($1::text[], $2::text[]) AS u(t, i) ON k.parent_tbl = u.t AND k.parent_id = u.i`
	sqlDraw = `SELECT nextval('versions') FROM generate_series(1, $1::int)`
)

// A record that does not exist cannot be locked by a row lock. A change
// that creates it does not need to: it inserts the row, and a concurrent
// creator's insert fails on the primary key (unique_violation), which
// retries that whole transaction, now seeing the row. A change that reads
// the absence of a record without creating it (a parent not there yet, a
// refused record nobody has) locks a placeholder row instead; a placeholder
// that became the parent of a held child is kept, so the parent's creator
// meets it.

// lock locks the rows of refs that exist (the others are noted absent),
// inserts and locks placeholders for absence, reads the child index of
// kidsOf, locks the children found, and then draws draw versions.
// Versions drawn before are dropped: they precede these locks.
func (w *work) lock(refs, absence, kidsOf []queue.Ref, draw int) error {
	w.versions = nil
	for pass := 0; ; pass++ {
		var ph []queue.Ref
		for _, r := range dedupe(absence) {
			if row, ok := w.rows[r]; !ok || row == nil {
				ph = append(ph, r)
			}
		}
		need := dedupe(append(w.unlocked(append(slices.Clone(refs), kidsOf...)), ph...))
		var readKids []queue.Ref
		for _, k := range dedupe(kidsOf) {
			if _, ok := w.kids[k]; !ok {
				readKids = append(readKids, k)
			}
		}
		b := &pgx.Batch{}
		if len(ph) > 0 {
			t, i := splitRefs(ph)
			b.Queue(sqlPlaceholders, t, i)
		}
		if len(need) > 0 {
			t, i := splitRefs(need)
			b.Queue(sqlLockRows, t, i)
		}
		if len(readKids) > 0 {
			t, i := splitRefs(readKids)
			b.Queue(sqlKids, t, i)
		}
		if b.Len() > 0 {
			if err := w.runLockBatch(b, ph, need, readKids); err != nil {
				return err
			}
		}
		// The children of kidsOf are read next (propagation reads them).
		var children []queue.Ref
		for _, k := range readKids {
			children = append(children, w.kids[k]...)
		}
		refs, absence, kidsOf = children, nil, nil
		if len(w.unlocked(refs)) == 0 || pass > 0 {
			break
		}
	}
	if draw > 0 {
		return w.draw(draw)
	}
	return nil
}

func (w *work) runLockBatch(b *pgx.Batch, ph, need, readKids []queue.Ref) error {
	br := w.conn.SendBatch(w.ctx, b)
	defer br.Close()
	if len(ph) > 0 {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			var r queue.Ref
			if err := rows.Scan(&r.Table, &r.ID); err != nil {
				rows.Close()
				return err
			}
			w.created[r] = true
		}
		if err := rows.Err(); err != nil {
			return err
		}
	}
	if len(need) > 0 {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			ref, row, err := scanLocked(rows)
			if err != nil {
				rows.Close()
				return err
			}
			w.rows[ref] = row
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for _, r := range need {
			if _, ok := w.rows[r]; !ok {
				w.rows[r] = nil // absent, not locked
			}
		}
		for _, r := range ph {
			if w.rows[r] == nil {
				// A placeholder is deleted only by the transaction that
				// made it, before anyone saw it: this cannot happen.
				return fmt.Errorf("row %s/%s vanished while being locked", r.Table, r.ID)
			}
		}
	}
	if len(readKids) > 0 {
		for _, k := range readKids {
			w.kids[k] = []queue.Ref{}
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			var p, c queue.Ref
			if err := rows.Scan(&p.Table, &p.ID, &c.Table, &c.ID); err != nil {
				rows.Close()
				return err
			}
			w.kids[p] = append(w.kids[p], c)
		}
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return br.Close()
}

// scanLocked reads a row of sqlLockRows (and of the record reads).
func scanLocked(rows pgx.Rows) (queue.Ref, *lockedRow, error) {
	var ref queue.Ref
	var v queue.RecordState
	var action string
	var ptbl, pid *string
	var marks []byte
	var data []byte
	var ver, cursor int64
	var holders []int32
	if err := rows.Scan(&ref.Table, &ref.ID, &ver, &action, &v.Deleted, &v.Owner, &v.Central, &holders, &ptbl, &pid,
		&v.Held, &marks, &data, &cursor); err != nil {
		return ref, nil, err
	}
	if ver <= 0 {
		return ref, &lockedRow{}, nil
	}
	v.Version, v.Action = uint64(ver), queue.Action(action)
	for _, h := range holders {
		v.Holders = append(v.Holders, int(h))
	}
	if ptbl != nil && pid != nil {
		v.Parent = &queue.Ref{Table: *ptbl, ID: *pid}
	}
	if len(marks) > 0 {
		if err := json.Unmarshal(marks, &v.From); err != nil {
			return ref, nil, fmt.Errorf("marks of %s/%s are unreadable: %w", ref.Table, ref.ID, err)
		}
	}
	if len(data) > 0 {
		v.Data = json.RawMessage(data)
	}
	return ref, &lockedRow{state: v, exists: true, logCursor: cursor}, nil
}

// unlocked returns those of refs this work has not looked at yet, sorted.
func (w *work) unlocked(refs []queue.Ref) []queue.Ref {
	var out []queue.Ref
	for _, r := range refs {
		if _, ok := w.rows[r]; !ok {
			out = append(out, r)
		}
	}
	return dedupe(out)
}

// reader is the queue.Reader of one decision: rows looked at only; a read
// of anything else is noted, and the decision runs again once it is
// looked at (locked, or found absent).
type reader struct {
	w         *work
	misses    []queue.Ref
	absent    []queue.Ref // absent records read (their absence is not locked)
	kidMisses []queue.Ref
}

func (r *reader) State(table, id string) (queue.RecordState, bool, error) {
	ref := queue.Ref{Table: table, ID: id}
	row, ok := r.w.rows[ref]
	switch {
	case !ok:
		r.misses = append(r.misses, ref)
		return queue.RecordState{}, false, nil
	case row == nil:
		r.absent = append(r.absent, ref)
		return queue.RecordState{}, false, nil
	case !row.exists:
		return queue.RecordState{}, false, nil
	}
	v := row.state
	v.Holders = slices.Clone(v.Holders)
	return v, true, nil
}

func (r *reader) Children(parent queue.Ref) ([]queue.Ref, error) {
	kids, ok := r.w.kids[parent]
	if !ok {
		r.kidMisses = append(r.kidMisses, parent)
		return nil, nil
	}
	return slices.Clone(kids), nil
}

// decide runs fn until everything it reads is locked — but the absence of
// records it creates — and returns its plan. seed is looked at and
// kidsOf's child index read before the first run; estimate is how many
// versions to draw.
func (w *work) decide(seed, kidsOf []queue.Ref, estimate int, fn func(r *reader) (queue.Plan, error)) (queue.Plan, error) {
	if err := w.lock(seed, nil, kidsOf, estimate); err != nil {
		return queue.Plan{}, err
	}
	for round := 1; ; round++ {
		w.used, w.verErr = 0, nil
		r := &reader{w: w}
		plan, err := fn(r)
		if err == nil {
			err = w.verErr
		}
		if err != nil {
			return queue.Plan{}, err
		}
		written := map[queue.Ref]bool{}
		for _, pr := range plan.Recs {
			if ref, ok := pr.Ref(); ok {
				written[ref] = true
			}
		}
		// Rows never looked at are looked at; absent rows the plan reads,
		// queues or hangs children under without creating them get a
		// placeholder.
		var need, absence []queue.Ref
		for _, ref := range append(append(r.misses, r.absent...), w.planRefs(plan)...) {
			row, seen := w.rows[ref]
			switch {
			case !seen:
				need = append(need, ref)
			case row == nil && !written[ref]:
				absence = append(absence, ref)
			}
		}
		if len(need) == 0 && len(absence) == 0 && !w.kidsMissing(r.kidMisses) {
			return plan, nil
		}
		if round >= maxRounds {
			return queue.Plan{}, fmt.Errorf("the decision read new rows %d times running; giving up", round)
		}
		if err := w.lock(need, absence, r.kidMisses, max(estimate, w.used+8)); err != nil {
			return queue.Plan{}, err
		}
	}
}

func (w *work) kidsMissing(parents []queue.Ref) bool {
	for _, p := range parents {
		if _, ok := w.kids[p]; !ok {
			return true
		}
	}
	return false
}

// planRefs lists the rows a plan writes or whose child index it changes:
// all must be locked.
func (w *work) planRefs(p queue.Plan) []queue.Ref {
	var out []queue.Ref
	for _, r := range p.Recs {
		if ref, ok := r.Ref(); ok {
			out = append(out, ref)
		}
	}
	for _, k := range p.Kids {
		if parent, child, ok := k.Refs(); ok {
			out = append(out, parent, child)
		}
	}
	for _, q := range p.Queue {
		out = append(out, queue.Ref{Table: q.Table, ID: q.ID})
	}
	return out
}

// dedupe returns refs sorted by table and id, without repeats (the order
// every transaction locks rows in).
func dedupe(refs []queue.Ref) []queue.Ref {
	out := slices.Clone(refs)
	slices.SortFunc(out, compareRefs)
	return slices.Compact(out)
}

func compareRefs(a, b queue.Ref) int {
	if c := strings.Compare(a.Table, b.Table); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

func splitRefs(refs []queue.Ref) (tables, ids []string) {
	tables, ids = make([]string, len(refs)), make([]string, len(refs))
	for i, r := range refs {
		tables[i], ids[i] = r.Table, r.ID
	}
	return tables, ids
}
