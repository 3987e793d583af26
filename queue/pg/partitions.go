package pg

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// central_log is range-partitioned by cursor, LogPartition cursors a
// partition. Partitions are made ahead: at Open, and after a write whose
// cursor comes within one partition of the last one made, so a write never
// waits for one. A partition is made as a plain table and attached
// (ATTACH takes a lock that lets reads and writes of central_log go on).

// partitionLock serialises partition makers across nodes ("syncagent
// partitions", truncated to 63 bits).
const partitionLock = 0x73796e6370617274

// ensurePartitions makes partitions until there are two partitions'
// worth of cursors above upTo and above the last cursor drawn.
func (s *Store) ensurePartitions(ctx context.Context, upTo int64) error {
	size := s.opts.LogPartition
	if upTo+size < s.logCovered.Load() {
		return nil
	}
	s.partMu.Lock()
	defer s.partMu.Unlock()
	if upTo+size < s.logCovered.Load() {
		return nil
	}
	var hi int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(partitionLock)); err != nil {
			return err
		}
		var last int64
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(hi), 1), (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM cursors)
			FROM central_log_parts`).Scan(&hi, &last); err != nil {
			return err
		}
		target := max(upTo, last) + 2*size
		for hi <= target {
			name := fmt.Sprintf("central_log_%d", hi)
			if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (LIKE central_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
				ALTER TABLE central_log ATTACH PARTITION %s FOR VALUES FROM (%d) TO (%d);
				INSERT INTO central_log_parts (lo, hi, name) VALUES (%d, %d, '%s')`, name, name, hi, hi+size, hi, hi+size, name)); err != nil {
				return fmt.Errorf("cannot make central log partition %s: %w", name, err)
			}
			s.log.Info("made central log partition", "name", name, "from", hi, "to", hi+size)
			hi += size
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.logCovered.Store(hi)
	return nil
}

// afterLogWrite makes the next partitions when a write came close to the
// last one. A failure is logged: the next write tries again, and a write
// that finds no partition makes them before it retries.
func (s *Store) afterLogWrite(ctx context.Context, ap applied) {
	var top int64
	for _, c := range ap.cursors {
		top = max(top, int64(c))
	}
	if err := s.ensurePartitions(ctx, top); err != nil {
		s.log.Warn("cannot make the next central log partitions", "err", err)
	}
}
