package pg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"syncagent/queue"
)

// Ack removes acknowledged entries from site's queue and returns how many
// it removed. Unknown, malformed or already acknowledged ids, ids of
// entries replaced since, and ids of other sites' queues are ignored. Call
// it only once the site has made the records durable.
func (s *Store) Ack(site int, syncOutIDs []string) (int, error) {
	ctx, cancel, err := s.call()
	if err != nil {
		return 0, err
	}
	defer cancel()
	return s.ack(ctx, site, syncOutIDs)
}

func (s *Store) ack(ctx context.Context, site int, syncOutIDs []string) (int, error) {
	var ords []int64
	for _, id := range syncOutIDs {
		if len(id) > 20 {
			continue
		}
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil || n > 1<<63-1 {
			continue
		}
		ords = append(ords, int64(n))
	}
	if len(ords) == 0 {
		return 0, nil
	}
	removed := 0
	err := s.txn(ctx, fmt.Sprintf("cannot acknowledge records of site %d", site), func(tx pgx.Tx) error {
		// The site's row first (its acknowledged mark rises), as a push
		// locks it before the queue rows; these in key order, as every
		// writer of the queue locks them.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM sites WHERE sync_id = $1 FOR UPDATE`, site); err != nil {
			return err
		}
		var high int64
		if err := tx.QueryRow(ctx, `WITH gone AS (
				DELETE FROM queue WHERE (site, tbl, id) IN (
					SELECT site, tbl, id FROM queue WHERE site = $1 AND ord = ANY($2::bigint[]) ORDER BY tbl, id FOR UPDATE)
				RETURNING ord),
			d AS (INSERT INTO queue_len (site, n) SELECT $1, -count(*) FROM gone HAVING count(*) > 0)
			SELECT count(*), coalesce(max(ord), 0) FROM gone`, site, ords).Scan(&removed, &high); err != nil {
			return err
		}
		if removed == 0 {
			return nil
		}
		st, _ := encodeSite(queue.SiteState{SyncID: site, Initialisation: queue.InitNew, AckedHigh: uint64(high)})
		_, err := tx.Exec(ctx, `INSERT INTO sites (sync_id, state) VALUES ($1, $2::jsonb)
			ON CONFLICT (sync_id) DO UPDATE SET state = jsonb_set(sites.state, '{AckedHigh}', to_jsonb($3::bigint))
			WHERE coalesce((sites.state->>'AckedHigh')::numeric, 0) < $3`, site, st, high)
		return err
	})
	return removed, err
}

// Fill makes site's queue hold every record the site must hold, as
// queue.Central.Fill: each record the site holds gets an entry unless it has
// one that delivers it; central records are not queued. It reads the
// site's records once (a cursor held on one connection), queues them in
// batches of fillBatch in their own transactions, and keeps a lease in the
// sites row that Filling reads on every node. After a failure, run it
// again.
func (s *Store) Fill(site int) (int, error) {
	if site <= 0 {
		return 0, fmt.Errorf("cannot fill the queue of site %d", site)
	}
	if s.closed.Load() {
		return 0, queue.ErrClosed
	}
	ctx, cancel, err := s.call()
	if err != nil {
		return 0, err
	}
	select {
	case s.fills <- struct{}{}:
		defer func() { <-s.fills }()
	case <-ctx.Done():
		cancel()
		return 0, fmt.Errorf("cannot fill the queue of site %d: %d fills already running on this node", site, cap(s.fills))
	}
	cancel()
	total, err := s.fill(site)
	if err != nil {
		return total, s.dbError(fmt.Sprintf("cannot fill the queue of site %d", site), err)
	}
	s.log.Info("filled site queue", "site", site, "added", total)
	return total, nil
}

const fillBatch = 1000

func (s *Store) fill(site int) (int, error) {
	var tok [8]byte
	rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	cursor := "fill_" + token
	step := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), s.opts.CallTimeout)
	}
	ctx, cancel := step()
	conn, err := s.pool.Acquire(ctx)
	cancel()
	if err != nil {
		return 0, err
	}
	clean := false
	defer func() {
		if !clean {
			conn.Conn().Close(context.Background()) // drops the cursor with the session
		}
		conn.Release()
	}()
	st, _ := encodeSite(queue.SiteState{SyncID: site, Initialisation: queue.InitNew})
	ctx, cancel = step()
	defer func() { cancel() }()
	if _, err := conn.Exec(ctx, `INSERT INTO sites (sync_id, state, filling_until, filling_token) VALUES ($1, $2::jsonb, now() + $3::interval, $4)
		ON CONFLICT (sync_id) DO UPDATE SET filling_until = EXCLUDED.filling_until, filling_token = EXCLUDED.filling_token`,
		site, st, s.opts.FillLease, token); err != nil {
		return 0, err
	}
	// WITH HOLD: the site's keys are read once, at COMMIT, into the cursor.
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(`DECLARE ` + cursor + ` NO SCROLL CURSOR WITH HOLD FOR SELECT tbl, id FROM records
		WHERE holders @> ARRAY[` + strconv.Itoa(site) + `]::integer[] AND version > 0 AND NOT deleted AND NOT held`)
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return 0, err
	}
	total := 0
	for {
		cancel()
		ctx, cancel = step()
		rows, err := conn.Query(ctx, `FETCH `+strconv.Itoa(fillBatch)+` FROM `+cursor)
		if err != nil {
			return total, err
		}
		keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (queue.Ref, error) {
			var ref queue.Ref
			err := r.Scan(&ref.Table, &ref.ID)
			return ref, err
		})
		if err != nil {
			return total, err
		}
		if len(keys) == 0 {
			break
		}
		n, err := s.fillBatch(ctx, conn, site, token, dedupe(keys))
		total += n
		if err != nil {
			return total, err
		}
		if h := s.testHookFill; h != nil {
			h(total)
		}
	}
	if _, err := conn.Exec(ctx, `CLOSE `+cursor); err != nil {
		return total, err
	}
	clean = true
	_, err = conn.Exec(ctx, `UPDATE sites SET filling_token = NULL WHERE sync_id = $1 AND filling_token = $2`, site, token)
	return total, err
}

// fillBatch queues those of keys the site still holds and has no entry
// for that delivers them, in one transaction: the lease first (a push
// locks its site's row before its records), then the records FOR SHARE,
// then versions drawn after those locks.
func (s *Store) fillBatch(ctx context.Context, conn *pgxconn, site int, token string, keys []queue.Ref) (int, error) {
	for attempt := 0; ; attempt++ {
		n, err := s.fillBatchOnce(ctx, conn, site, token, keys)
		if err == nil || !retryable(err) || attempt >= maxRetries {
			return n, err
		}
		backoff(ctx, attempt)
	}
}

func (s *Store) fillBatchOnce(ctx context.Context, conn *pgxconn, site int, token string, keys []queue.Ref) (int, error) {
	t, i := splitRefs(keys)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.Background())
	b := &pgx.Batch{}
	b.Queue(`UPDATE sites SET filling_until = now() + $3::interval WHERE sync_id = $1 AND filling_token = $2`, site, token, s.opts.FillLease)
	b.Queue(`SELECT r.tbl, r.id FROM records r JOIN unnest($2::text[], $3::text[]) AS u(t, i) ON r.tbl = u.t AND r.id = u.i
		WHERE r.holders @> ARRAY[$1::integer] AND r.version > 0 AND NOT r.deleted AND NOT r.held
		AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.site = $1 AND q.tbl = r.tbl AND q.id = r.id AND NOT q.del)
		ORDER BY r.tbl, r.id FOR SHARE OF r`, site, t, i)
	br := tx.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return 0, err
	}
	rows, err := br.Query()
	var todo []queue.Ref
	if err == nil {
		todo, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (queue.Ref, error) {
			var ref queue.Ref
			err := r.Scan(&ref.Table, &ref.ID)
			return ref, err
		})
	}
	if err := joinErr(err, br.Close()); err != nil {
		return 0, err
	}
	if len(todo) == 0 {
		return 0, tx.Commit(ctx)
	}
	vrows, err := tx.Query(ctx, sqlDraw, len(todo))
	if err != nil {
		return 0, err
	}
	vs, err := pgx.CollectRows(vrows, pgx.RowTo[int64])
	if err != nil {
		return 0, err
	}
	var a queueArrays
	for k, ref := range todo {
		a.add(queue.QueueOp{Site: site, Table: ref.Table, ID: ref.ID, Ord: uint64(vs[k])})
	}
	var added int
	if err := tx.QueryRow(ctx, sqlQueueSet, a.site, a.tbl, a.id, a.ord, a.del).Scan(&added); err != nil {
		return 0, err
	}
	return added, tx.Commit(ctx)
}

func joinErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// Filling reports whether a Fill of site's queue is running on any node
// (its lease is live).
func (s *Store) Filling(site int) bool {
	ctx, cancel, err := s.call()
	if err != nil {
		return false
	}
	defer cancel()
	var filling bool
	err = s.withConn(ctx, func(c *pgxconn) error {
		return c.QueryRow(ctx, `SELECT coalesce(bool_or(filling_token IS NOT NULL AND filling_until > now()), false)
			FROM sites WHERE sync_id = $1`, site).Scan(&filling)
	})
	if err != nil {
		s.warn("cannot read whether a site is filling", "site", site, "err", err)
		return false
	}
	return filling
}
