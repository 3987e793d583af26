package pg

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"syncagent/queue"
)

// A work is one transaction that decides a change under locks and applies
// it: the rows it has locked, the child index it has read under their
// locks, and the versions it drew after its last lock.
type work struct {
	s    *Store
	ctx  context.Context
	conn *pgxpool.Conn

	rows    map[queue.Ref]*lockedRow  // rows looked at: locked, or nil for a record that is absent (not locked)
	kids    map[queue.Ref][]queue.Ref // children of a parent, read under its lock (or before creating it)
	created map[queue.Ref]bool        // placeholders this transaction inserted

	versions []uint64 // drawn after the last lock, not handed out yet
	used     int      // versions handed out to the last decision
	verErr   error

	central bool // holds the central log lock; its transaction id was taken under it
	site    *siteRow
}

// lockedRow is a record row this transaction holds FOR UPDATE.
type lockedRow struct {
	state     queue.RecordState
	exists    bool  // false: a placeholder (the record is absent)
	logCursor int64 // its central_log entry (0: none)
}

// maxRounds bounds how often a decision may find a row it read unlocked.
const maxRounds = 8

// errNeedCentral: the plan writes central data, which needs the central
// log lock from the start of the transaction; the transaction runs again.
var errNeedCentral = errors.New("plan writes central data")

// begin starts a work on a pooled connection. With central, it first takes
// the central log lock and its transaction id. With site > 0 it locks that
// site's row first (a push changes its pusher's state), creating it if new.
func (s *Store) begin(ctx context.Context, central bool, site int) (*work, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	w := &work{s: s, ctx: ctx, conn: conn, rows: map[queue.Ref]*lockedRow{}, kids: map[queue.Ref][]queue.Ref{},
		created: map[queue.Ref]bool{}}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	if central {
		b.Queue("SELECT pg_advisory_lock($1)", int64(centralLock))
		b.Queue("SELECT pg_current_xact_id()")
	}
	w.central = central
	if site > 0 {
		queueLockSite(b, site)
	}
	br := conn.SendBatch(ctx, b)
	err = readBatch(br, b.Len()-1)
	if err == nil && site > 0 {
		w.site, err = scanSiteRow(br.QueryRow())
	}
	if err = errors.Join(err, br.Close()); err != nil {
		w.abort()
		return nil, err
	}
	return w, nil
}

// readBatch reads (and discards) the results of the next n statements.
func readBatch(br pgx.BatchResults, n int) error {
	for range n {
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	return nil
}

// centralLock is the advisory lock key of central log writers ("syncagent
// central" in ASCII, truncated to 63 bits).
const centralLock = 0x73796e6363656e74

// abort rolls back and gives the connection back (or drops it when it can
// no longer be trusted). Safe to call after commit.
func (w *work) abort() {
	if w.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.s.opts.LockTimeout)
	defer cancel()
	_, err := w.conn.Exec(ctx, "ROLLBACK")
	if err == nil && w.central {
		// All of them: a session lock is counted, and a work's connection
		// holds no other.
		_, err = w.conn.Exec(ctx, "SELECT pg_advisory_unlock_all()")
	}
	if err != nil {
		w.conn.Conn().Close(ctx) // the pool drops a closed connection
	}
	w.conn.Release()
	w.conn = nil
}

// release gives back the connection of a committed work.
func (w *work) release() {
	w.conn.Release()
	w.conn = nil
}

// unlockCentral queues the release of the central log lock into the batch
// that draws the cursors; w.central stays set until that batch has run, so
// a failed batch still releases it in abort.
func (w *work) unlockCentral(b *pgx.Batch) {
	if w.central {
		b.Queue("SELECT pg_advisory_unlock($1)", int64(centralLock))
	}
}

// draw draws n versions (after every lock taken so far).
func (w *work) draw(n int) error {
	rows, err := w.conn.Query(w.ctx, sqlDraw, n)
	if err != nil {
		return err
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	for _, v := range vs {
		w.versions = append(w.versions, uint64(v))
	}
	return nil
}

// next hands out the next version to a decision.
func (w *work) next() uint64 {
	if len(w.versions) == 0 {
		if err := w.draw(max(64, w.used)); err != nil {
			w.verErr = err
			return 0
		}
	}
	v := w.versions[0]
	w.versions = w.versions[1:]
	w.used++
	return v
}
