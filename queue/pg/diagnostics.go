package pg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"syncagent/queue"
)

// Diagnostics on request, as queue.Central keeps them: one row per site
// holding queue.Diagnostics, moved by queue.NextDiagnostics in one
// transaction that holds the row.

// Diagnostics returns site id's diagnostics (the zero value when none was
// ever asked for).
func (s *Store) Diagnostics(id int) (queue.Diagnostics, error) {
	if err := checkSiteID(id); err != nil {
		return queue.Diagnostics{}, err
	}
	ctx, cancel, err := s.call()
	if err != nil {
		return queue.Diagnostics{}, err
	}
	defer cancel()
	var d queue.Diagnostics
	err = s.withConn(ctx, func(c *pgxconn) error {
		var raw []byte
		err := c.QueryRow(ctx, `SELECT state FROM diagnostics WHERE sync_id = $1`, id).Scan(&raw)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		return json.Unmarshal(raw, &d)
	})
	return d, s.dbError(fmt.Sprintf("cannot read the diagnostics of site %d", id), err)
}

// RequestDiagnostics asks site id for a bundle, named request: it replaces
// a request still waiting (and what had arrived for it) and keeps the last
// complete bundle.
func (s *Store) RequestDiagnostics(id int, request string, at time.Time) error {
	if err := checkSiteID(id); err != nil {
		return err
	}
	if request == "" || len(request) > 64 || hasControl(request) {
		return fmt.Errorf("invalid diagnostics request name %q", request)
	}
	ctx, cancel, err := s.call()
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.updateDiagnostics(ctx, id, func(d queue.Diagnostics) (queue.Diagnostics, error) {
		d.Request, d.RequestedAt, d.Upload, d.Total, d.Received = request, at.UTC(), "", 0, nil
		return d, nil
	})
	return err
}

// AddDiagnostics takes one piece of site id's upload (queue.NextDiagnostics)
// and returns the state it leads to.
func (s *Store) AddDiagnostics(id int, p queue.DiagnosticsPiece, at time.Time) (queue.Diagnostics, error) {
	if err := checkSiteID(id); err != nil {
		return queue.Diagnostics{}, err
	}
	ctx, cancel, err := s.call()
	if err != nil {
		return queue.Diagnostics{}, err
	}
	defer cancel()
	return s.updateDiagnostics(ctx, id, func(d queue.Diagnostics) (queue.Diagnostics, error) {
		return queue.NextDiagnostics(d, p, at)
	})
}

// updateDiagnostics moves site id's diagnostics by fn in one transaction
// holding the row. When fn fails, the state before is returned with its
// error and nothing is written.
func (s *Store) updateDiagnostics(ctx context.Context, id int, fn func(queue.Diagnostics) (queue.Diagnostics, error)) (queue.Diagnostics, error) {
	var out queue.Diagnostics
	var fnErr error
	err := s.txn(ctx, fmt.Sprintf("cannot save the diagnostics of site %d", id), func(tx pgx.Tx) error {
		fnErr = nil
		if _, err := tx.Exec(ctx, `INSERT INTO diagnostics (sync_id, state) VALUES ($1, '{}') ON CONFLICT DO NOTHING`, id); err != nil {
			return err
		}
		var raw []byte
		if err := tx.QueryRow(ctx, `SELECT state FROM diagnostics WHERE sync_id = $1 FOR UPDATE`, id).Scan(&raw); err != nil {
			return err
		}
		var d queue.Diagnostics
		if err := json.Unmarshal(raw, &d); err != nil {
			return fmt.Errorf("diagnostics of site %d are unreadable: %w", id, err)
		}
		next, err := fn(d)
		if err != nil {
			out, fnErr = d, err
			return errRollback
		}
		b, err := json.Marshal(next)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE diagnostics SET state = $2::jsonb WHERE sync_id = $1`, id, b); err != nil {
			return err
		}
		out = next
		return nil
	})
	if fnErr != nil {
		return out, fnErr
	}
	return out, err
}

// errRollback ends a transaction that must write nothing.
var errRollback = errors.New("rolled back")
