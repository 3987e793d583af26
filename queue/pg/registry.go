package pg

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"syncagent/queue"
)

// The site registry (queue/registry.go) in three tables (migration 0003):
// site_registry, one row per site; registry_generation, one row, taken FOR
// UPDATE by a change, so changes from several nodes take turns and a change
// made against an older generation is refused; registry_log, trimmed to
// queue.RegistryLogMax entries in the change's own transaction.

// registryBatch bounds the rows of one statement of a change.
const registryBatch = 5000

// Registry returns the registry's rows, by sync ID, and its generation, as
// of one snapshot.
func (s *Store) Registry() ([]queue.SiteConfig, uint64, error) {
	ctx, cancel, err := s.call()
	if err != nil {
		return nil, 0, err
	}
	defer cancel()
	var rows []queue.SiteConfig
	var gen int64
	err = s.txn(ctx, "cannot read the site registry", func(tx pgx.Tx) error {
		rows = rows[:0]
		if _, err := tx.Exec(ctx, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY`); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT generation FROM registry_generation`).Scan(&gen); err != nil {
			return err
		}
		res, err := tx.Query(ctx, `SELECT sync_id, "user", password_hash, stores, hardware_id, url FROM site_registry ORDER BY sync_id`)
		if err != nil {
			return err
		}
		defer res.Close()
		for res.Next() {
			var r queue.SiteConfig
			var stores []byte
			if err := res.Scan(&r.SyncID, &r.User, &r.PasswordHash, &stores, &r.HardwareID, &r.URL); err != nil {
				return err
			}
			if err := json.Unmarshal(stores, &r.Stores); err != nil {
				return fmt.Errorf("the stores of registry site %d are unreadable: %w", r.SyncID, err)
			}
			rows = append(rows, r)
		}
		return res.Err()
	})
	if err != nil {
		return nil, 0, err
	}
	return rows, uint64(gen), nil
}

// RegistryGeneration returns the registry's generation (0: never changed):
// one small read, which a node makes every second or so.
func (s *Store) RegistryGeneration() (uint64, error) {
	ctx, cancel, err := s.call()
	if err != nil {
		return 0, err
	}
	defer cancel()
	var gen int64
	err = s.withConn(ctx, func(c *pgxconn) error {
		return c.QueryRow(ctx, `SELECT generation FROM registry_generation`).Scan(&gen)
	})
	if err != nil {
		return 0, s.dbError("cannot read the site registry's generation", err)
	}
	return uint64(gen), nil
}

// ChangeRegistry applies e if the registry is still at generation base,
// with its log entry, in one transaction; at another generation it changes
// nothing and returns queue.ErrRegistryChanged.
func (s *Store) ChangeRegistry(base uint64, e queue.RegistryEdit, note queue.RegistryChange) (uint64, error) {
	if err := queue.CheckRegistryEdit(e, note); err != nil {
		return 0, err
	}
	ctx, cancel, err := s.call()
	if err != nil {
		return 0, err
	}
	defer cancel()
	if note.At.IsZero() {
		note.At = time.Now()
	}
	note.At, note.Generation, note.Put, note.Removed = note.At.UTC(), base+1, len(e.Put), len(e.Remove)
	var refused error
	err = s.txn(ctx, "cannot change the site registry", func(tx pgx.Tx) error {
		refused = nil
		var gen int64
		if err := tx.QueryRow(ctx, `SELECT generation FROM registry_generation FOR UPDATE`).Scan(&gen); err != nil {
			return err
		}
		if uint64(gen) != base {
			refused = fmt.Errorf("%w (generation %d, not %d): read it again and retry", queue.ErrRegistryChanged, gen, base)
			return nil
		}
		// The same checks as the embedded backend, on the rows as they are
		// (users are also unique by the table's constraint).
		users, err := registryUsers(ctx, tx)
		if err != nil {
			return err
		}
		if _, refused = queue.ApplyRegistryEdit(users, e); refused != nil {
			return nil
		}
		for i := 0; i < len(e.Remove); i += registryBatch {
			part := e.Remove[i:min(i+registryBatch, len(e.Remove))]
			if _, err := tx.Exec(ctx, `DELETE FROM site_registry WHERE sync_id = ANY($1::int[])`, part); err != nil {
				return err
			}
		}
		if len(e.Put) > 0 {
			// A user moving from one row to another within the change
			// would clash row by row: the old rows' users go first.
			ids := make([]int, len(e.Put))
			for i, r := range e.Put {
				ids[i] = r.SyncID
			}
			if _, err := tx.Exec(ctx, `DELETE FROM site_registry WHERE sync_id = ANY($1::int[])`, ids); err != nil {
				return err
			}
		}
		for i := 0; i < len(e.Put); i += registryBatch {
			if err := insertRegistryRows(ctx, tx, e.Put[i:min(i+registryBatch, len(e.Put))]); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE registry_generation SET generation = $1`, int64(base+1)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO registry_log (generation, at, by_whom, what, digest, put, removed) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			int64(note.Generation), note.At, note.By, note.What, note.Digest, note.Put, note.Removed); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM registry_log WHERE generation <= $1`, int64(note.Generation)-queue.RegistryLogMax)
		return err
	})
	if err == nil && refused != nil {
		return 0, refused
	}
	if err != nil {
		return 0, err
	}
	return note.Generation, nil
}

// registryUsers reads every row's sync ID and user (all the checks need).
func registryUsers(ctx context.Context, tx pgx.Tx) (map[int]queue.SiteConfig, error) {
	res, err := tx.Query(ctx, `SELECT sync_id, "user" FROM site_registry`)
	if err != nil {
		return nil, err
	}
	defer res.Close()
	out := map[int]queue.SiteConfig{}
	for res.Next() {
		var r queue.SiteConfig
		if err := res.Scan(&r.SyncID, &r.User); err != nil {
			return nil, err
		}
		out[r.SyncID] = r
	}
	return out, res.Err()
}

func insertRegistryRows(ctx context.Context, tx pgx.Tx, rows []queue.SiteConfig) error {
	n := len(rows)
	ids, users, hashes, stores, hwids, urls := make([]int, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, r := range rows {
		b, err := json.Marshal(r.Stores)
		if err != nil {
			return err
		}
		ids[i], users[i], hashes[i], stores[i], hwids[i], urls[i] = r.SyncID, r.User, r.PasswordHash, string(b), r.HardwareID, r.URL
	}
	_, err := tx.Exec(ctx, `INSERT INTO site_registry (sync_id, "user", password_hash, stores, hardware_id, url)
		SELECT i, u, p, s::jsonb, h, l FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS r(i, u, p, s, h, l)`,
		ids, users, hashes, stores, hwids, urls)
	return err
}

// RegistryLog returns the last limit changes of the registry, newest first.
func (s *Store) RegistryLog(limit int) ([]queue.RegistryChange, error) {
	ctx, cancel, err := s.call()
	if err != nil {
		return nil, err
	}
	defer cancel()
	var out []queue.RegistryChange
	err = s.withConn(ctx, func(c *pgxconn) error {
		out = out[:0]
		res, err := c.Query(ctx, `SELECT generation, at, by_whom, what, digest, put, removed FROM registry_log ORDER BY generation DESC LIMIT $1`, max(limit, 0))
		if err != nil {
			return err
		}
		defer res.Close()
		for res.Next() {
			var r queue.RegistryChange
			var gen int64
			if err := res.Scan(&gen, &r.At, &r.By, &r.What, &r.Digest, &r.Put, &r.Removed); err != nil {
				return err
			}
			r.Generation, r.At = uint64(gen), r.At.UTC()
			out = append(out, r)
		}
		return res.Err()
	})
	if err != nil {
		return nil, s.dbError("cannot read the site registry's log", err)
	}
	return out, nil
}
