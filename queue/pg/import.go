package pg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"syncagent/queue"
)

// Import copies a stopped primary's state, streamed by export (a
// queue.Central's Export), into this store's database, which must be empty,
// in one transaction: records with their versions, owners, holders and
// per-site marks (so a repeated push is still recognised), the child index,
// the central log at the same cursors (a site's cursor stays good), every
// site's queue at the same syncOutIds, the site registry (pins, tokens,
// high-water marks), the site registry with its generation and change log,
// diagnostics and the membership digest; the sequences
// go on after the highest version and cursor. Before it commits, it counts
// what it wrote against what export sent, and returns those counts.
//
// No node may serve the database while it runs.
func (s *Store) Import(ctx context.Context, export func(queue.Exporter) (queue.ExportSummary, error)) (queue.ExportSummary, error) {
	var sum queue.ExportSummary
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return sum, fmt.Errorf("cannot import: %w", err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return sum, fmt.Errorf("cannot import: %w", err)
	}
	defer tx.Rollback(context.Background())
	if err := checkEmpty(ctx, tx); err != nil {
		return sum, err
	}
	var xid int64
	if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&xid); err != nil {
		return sum, fmt.Errorf("cannot import: %w", err)
	}
	im := &importer{ctx: ctx, tx: tx, s: s, xid: xid, logCursor: map[queue.Ref]uint64{}}
	sum, err = export(im)
	if err == nil {
		err = im.flushAll()
	}
	if err != nil {
		return sum, fmt.Errorf("cannot import: %w", err)
	}
	if err := im.finish(sum); err != nil {
		return sum, fmt.Errorf("cannot import: %w", err)
	}
	if err := verifyImport(ctx, tx, sum); err != nil {
		return sum, err
	}
	if err := tx.Commit(ctx); err != nil {
		return sum, fmt.Errorf("cannot import: commit: %w", err)
	}
	return sum, nil
}

// checkEmpty refuses a database that holds any primary state already.
func checkEmpty(ctx context.Context, tx pgx.Tx) error {
	var n int64
	err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM (SELECT 1 FROM records LIMIT 1) r) + (SELECT count(*) FROM (SELECT 1 FROM sites LIMIT 1) s)
		+ (SELECT count(*) FROM (SELECT 1 FROM queue LIMIT 1) q) + (SELECT count(*) FROM (SELECT 1 FROM central_log LIMIT 1) c)
		+ (SELECT count(*) FROM (SELECT 1 FROM site_registry LIMIT 1) g)
		+ (SELECT CASE WHEN is_called THEN 1 ELSE 0 END FROM versions)`).Scan(&n)
	if err != nil {
		return fmt.Errorf("cannot import: %w", err)
	}
	if n > 0 {
		return errors.New("cannot import: the database already holds a primary's state; migrate into a new, empty database (createdb), or drop this one if it is a failed earlier attempt")
	}
	return nil
}

// importBatch is how many rows are buffered per table before COPY.
const importBatch = 5000

// importer is the queue.Exporter that COPYs into the import transaction.
type importer struct {
	ctx context.Context
	tx  pgx.Tx
	s   *Store
	xid int64

	// The datafile's keys come in key order: clog: before rec:, so each
	// central record's cursor is known when the record comes.
	logCursor map[queue.Ref]uint64
	maxCursor int64

	records, kids, log, queued [][]any
}

var _ queue.Exporter = (*importer)(nil)

var (
	recordCols = []string{"tbl", "id", "version", "action", "deleted", "owner", "central", "holders", "parent_tbl", "parent_id", "held", "marks", "data", "log_cursor"}
	kidCols    = []string{"parent_tbl", "parent_id", "tbl", "id"}
	logCols    = []string{"cursor", "tbl", "id", "xid"}
	queueCols  = []string{"site", "tbl", "id", "ord", "del"}
)

func (im *importer) Record(ref queue.Ref, st queue.RecordState) error {
	holders := make([]int32, len(st.Holders))
	for i, h := range st.Holders {
		holders[i] = int32(h)
	}
	var ptbl, pid *string
	if st.Parent != nil {
		ptbl, pid = &st.Parent.Table, &st.Parent.ID
	}
	var marks *string
	if len(st.From) > 0 {
		b, err := json.Marshal(st.From)
		if err != nil {
			return err
		}
		m := string(b)
		marks = &m
	}
	var data []byte
	if len(st.Data) > 0 {
		data = st.Data
	}
	var cursor *int64
	if c, ok := im.logCursor[ref]; ok {
		n := int64(c)
		cursor = &n
	}
	im.records = append(im.records, []any{ref.Table, ref.ID, int64(st.Version), string(st.Action), st.Deleted, st.Owner, st.Central,
		holders, ptbl, pid, st.Held, marks, data, cursor})
	return im.flush(&im.records, "records", recordCols, false)
}

func (im *importer) Kid(parent, child queue.Ref) error {
	im.kids = append(im.kids, []any{parent.Table, parent.ID, child.Table, child.ID})
	return im.flush(&im.kids, "kids", kidCols, false)
}

func (im *importer) CentralLog(cursor uint64, ref queue.Ref) error {
	im.logCursor[ref] = cursor
	im.maxCursor = max(im.maxCursor, int64(cursor))
	im.log = append(im.log, []any{int64(cursor), ref.Table, ref.ID, im.xid})
	return im.flush(&im.log, "central_log", logCols, false)
}

func (im *importer) Queued(site int, ref queue.Ref, ord uint64, del bool) error {
	im.queued = append(im.queued, []any{int32(site), ref.Table, ref.ID, int64(ord), del})
	return im.flush(&im.queued, "queue", queueCols, false)
}

// flush COPYs the rows buffered for table once there are enough (or all,
// with force).
func (im *importer) flush(rows *[][]any, table string, cols []string, force bool) error {
	if len(*rows) == 0 || !force && len(*rows) < importBatch {
		return nil
	}
	if table == "central_log" {
		// Partitions are made (and committed) outside the import: an
		// empty partition left by a failed import does no harm.
		if err := im.s.ensurePartitions(im.ctx, im.maxCursor); err != nil {
			return err
		}
	}
	if _, err := im.tx.CopyFrom(im.ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(*rows)); err != nil {
		return fmt.Errorf("copying into %s: %w", table, err)
	}
	*rows = (*rows)[:0]
	return nil
}

func (im *importer) flushAll() error {
	return errors.Join(
		im.flush(&im.log, "central_log", logCols, true),
		im.flush(&im.records, "records", recordCols, true),
		im.flush(&im.kids, "kids", kidCols, true),
		im.flush(&im.queued, "queue", queueCols, true))
}

// finish writes what Export summarised: the registry, diagnostics, queue
// lengths, the membership and the sequences.
func (im *importer) finish(sum queue.ExportSummary) error {
	ctx, tx := im.ctx, im.tx
	for _, st := range sum.Sites {
		state, err := encodeSite(st)
		if err != nil {
			return err
		}
		var last, healthAt int64
		if !st.LastContact.IsZero() {
			last = st.LastContact.UnixNano()
		}
		var health []byte
		if !st.HealthAt.IsZero() {
			health, healthAt = st.Health, st.HealthAt.UnixNano()
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sites (sync_id, state, last_contact, health, health_at) VALUES ($1, $2::jsonb, $3, $4, $5)`,
			st.SyncID, state, last, health, healthAt); err != nil {
			return fmt.Errorf("site %d: %w", st.SyncID, err)
		}
	}
	for id, d := range sum.Diagnostics {
		b, err := json.Marshal(d)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO diagnostics (sync_id, state) VALUES ($1, $2::jsonb)`, id, string(b)); err != nil {
			return fmt.Errorf("diagnostics of site %d: %w", id, err)
		}
	}
	for site, n := range sum.Queued {
		if _, err := tx.Exec(ctx, `INSERT INTO queue_len (site, n) VALUES ($1, $2)`, site, n); err != nil {
			return err
		}
	}
	if len(sum.Registry) > 0 {
		if err := insertRegistryRows(ctx, tx, sum.Registry); err != nil {
			return fmt.Errorf("site registry: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE registry_generation SET generation = $1`, int64(sum.RegistryGen)); err != nil {
		return fmt.Errorf("site registry: %w", err)
	}
	for _, note := range sum.RegistryLog {
		if _, err := tx.Exec(ctx, `INSERT INTO registry_log (generation, at, by_whom, what, digest, put, removed) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			int64(note.Generation), note.At, note.By, note.What, note.Digest, note.Put, note.Removed); err != nil {
			return fmt.Errorf("site registry log: %w", err)
		}
	}
	if sum.Members != "" {
		if _, err := tx.Exec(ctx, `INSERT INTO meta (key, value) VALUES ('members', $1)`, sum.Members); err != nil {
			return err
		}
	}
	if sum.Version > 0 {
		if _, err := tx.Exec(ctx, `SELECT setval('versions', $1)`, int64(sum.Version)); err != nil {
			return err
		}
	}
	if top := max(int64(sum.MaxCursor), im.maxCursor); top > 0 {
		if _, err := tx.Exec(ctx, `SELECT setval('cursors', $1)`, top); err != nil {
			return err
		}
	}
	return nil
}

// verifyImport counts, inside the import, what was written against what
// the export sent.
func verifyImport(ctx context.Context, tx pgx.Tx, sum queue.ExportSummary) error {
	queued := 0
	for _, n := range sum.Queued {
		queued += n
	}
	checks := []struct {
		what string
		sql  string
		want int
	}{
		{"records", `SELECT count(*) FROM records`, sum.Records},
		{"child index entries", `SELECT count(*) FROM kids`, sum.Kids},
		{"central log entries", `SELECT count(*) FROM central_log`, sum.CentralLog},
		{"central records with their cursor", `SELECT count(*) FROM records WHERE log_cursor IS NOT NULL`, sum.CentralLog},
		{"queue entries", `SELECT count(*) FROM queue`, queued},
		{"queue lengths", `SELECT coalesce(sum(n), 0) FROM queue_len`, queued},
		{"sites", `SELECT count(*) FROM sites`, len(sum.Sites)},
		{"diagnostics", `SELECT count(*) FROM diagnostics`, len(sum.Diagnostics)},
		{"registry sites", `SELECT count(*) FROM site_registry`, len(sum.Registry)},
		{"registry log entries", `SELECT count(*) FROM registry_log`, len(sum.RegistryLog)},
	}
	for _, c := range checks {
		var got int64
		if err := tx.QueryRow(ctx, c.sql).Scan(&got); err != nil {
			return fmt.Errorf("cannot verify the import: %w", err)
		}
		if got != int64(c.want) {
			return fmt.Errorf("the import does not add up: %d %s written, the datafile has %d; nothing was kept", got, c.what, c.want)
		}
	}
	return nil
}
