package pg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"syncagent/queue"
)

// The site registry: one row per site, its queue.SiteState as JSON but for
// the last contact, kept in its own column (unix nanoseconds) and written at
// most once a minute per site by each node, as the embedded backend does.

// touchEvery bounds how often a node writes a site's last contact.
const touchEvery = time.Minute

// siteRow is a site's row as read.
type siteRow struct {
	state queue.SiteState
	stale bool // "started" but its lease has lapsed: nobody is filling it
}

const sqlSiteCols = `state, last_contact, health, health_at,
	(state->>'Initialisation' = 'started' AND (filling_until IS NULL OR filling_until < now()))`

func queueLockSite(b *pgx.Batch, id int) {
	st, _ := encodeSite(queue.SiteState{SyncID: id, Initialisation: queue.InitNew})
	b.Queue(`INSERT INTO sites (sync_id, state) VALUES ($1, $2::jsonb) ON CONFLICT DO NOTHING`, id, st)
	b.Queue(`SELECT `+sqlSiteCols+` FROM sites WHERE sync_id = $1 FOR UPDATE`, id)
}

func scanSiteRow(row pgx.Row) (*siteRow, error) {
	var st, health []byte
	var last, healthAt int64
	var stale bool
	if err := row.Scan(&st, &last, &health, &healthAt, &stale); err != nil {
		return nil, err
	}
	var s queue.SiteState
	if err := json.Unmarshal(st, &s); err != nil {
		return nil, fmt.Errorf("site state is unreadable: %w", err)
	}
	if last > 0 {
		s.LastContact = time.Unix(0, last).UTC()
	}
	if healthAt > 0 {
		s.Health, s.HealthAt = health, time.Unix(0, healthAt).UTC()
	}
	return &siteRow{state: s, stale: stale}, nil
}

// encodeSite is the state column of s (the last contact and the health
// block live apart).
func encodeSite(s queue.SiteState) (string, error) {
	s.LastContact, s.Health, s.HealthAt = time.Time{}, nil, time.Time{}
	b, err := json.Marshal(s)
	return string(b), err
}

func checkSiteID(id int) error {
	if id <= 0 {
		return fmt.Errorf("invalid site id %d", id)
	}
	return nil
}

// view is what Site and Sites return: the row, with this node's latest
// contact when newer, and a stale "started" read as "new" (the node that
// started it is gone; the site may ask again).
func (s *Store) view(r *siteRow) queue.SiteState {
	st := r.state
	if r.stale {
		st.Initialisation = queue.InitNew
	}
	s.contactMu.Lock()
	if c, ok := s.contacts[st.SyncID]; ok {
		if c.seen.After(st.LastContact) {
			st.LastContact = c.seen
		}
		if c.healthAt.After(st.HealthAt) {
			st.Health, st.HealthAt = c.health, c.healthAt
		}
	}
	s.contactMu.Unlock()
	return st
}

// Site returns what is known about site id; an unknown site reads as
// SiteState{SyncID: id, Initialisation: "new"}.
func (s *Store) Site(id int) (queue.SiteState, error) {
	if err := checkSiteID(id); err != nil {
		return queue.SiteState{}, err
	}
	ctx, cancel, err := s.call()
	if err != nil {
		return queue.SiteState{}, err
	}
	defer cancel()
	r, err := s.readSite(ctx, id)
	if err != nil {
		return queue.SiteState{}, s.dbError(fmt.Sprintf("cannot read site %d", id), err)
	}
	return s.view(r), nil
}

func (s *Store) readSite(ctx context.Context, id int) (*siteRow, error) {
	var r *siteRow
	err := s.withConn(ctx, func(c *pgxconn) error {
		var err error
		r, err = scanSiteRow(c.QueryRow(ctx, `SELECT `+sqlSiteCols+` FROM sites WHERE sync_id = $1`, id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return &siteRow{state: queue.SiteState{SyncID: id, Initialisation: queue.InitNew}}, nil
	}
	return r, err
}

// updateSite changes site id's state in one transaction, holding its row.
// fn may also work in tx (a queue purge); it returns false to write
// nothing.
func (s *Store) updateSite(ctx context.Context, id int, fn func(tx pgx.Tx, st *queue.SiteState) (bool, error)) (queue.SiteState, error) {
	var out queue.SiteState
	err := s.txn(ctx, fmt.Sprintf("cannot save site %d", id), func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		queueLockSite(b, id)
		br := tx.SendBatch(ctx, b)
		_, err := br.Exec()
		var r *siteRow
		if err == nil {
			r, err = scanSiteRow(br.QueryRow())
		}
		if err = errors.Join(err, br.Close()); err != nil {
			return err
		}
		st := r.state
		if r.stale {
			st.Initialisation = queue.InitNew
		}
		write, err := fn(tx, &st)
		if err != nil || !write {
			out = st
			return err
		}
		enc, err := encodeSite(st)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, sqlSaveSite, id, enc); err != nil {
			return err
		}
		out = st
		return nil
	})
	return out, err
}

// Pin pins hwid as site id's hardware ID on its first contact and returns
// the site's state, as queue.Central.Pin: a different hardware ID is
// refused with ErrHardwareMismatch (never revealing the pinned one), and a
// box other than the one whose pin was cleared starts as a new site with an
// empty queue. The usual call (the pinned box again) is one read.
func (s *Store) Pin(id int, hwid string) (queue.SiteState, error) {
	if err := checkSiteID(id); err != nil {
		return queue.SiteState{}, err
	}
	if hwid == "" || len(hwid) > 256 || hasControl(hwid) {
		return queue.SiteState{}, fmt.Errorf("site %d presented an invalid hardware ID", id)
	}
	ctx, cancel, err := s.call()
	if err != nil {
		return queue.SiteState{}, err
	}
	defer cancel()
	r, err := s.readSite(ctx, id)
	if err != nil {
		return queue.SiteState{}, s.dbError(fmt.Sprintf("cannot read site %d", id), err)
	}
	if r.state.HardwareID == hwid {
		return s.view(r), nil
	}
	mismatch := false
	st, err := s.updateSite(ctx, id, func(tx pgx.Tx, st *queue.SiteState) (bool, error) {
		switch st.HardwareID {
		case hwid:
			return false, nil
		case "":
		default:
			mismatch = true
			return false, nil
		}
		if st.ClearedHardwareID != "" && st.ClearedHardwareID != hwid {
			n, err := purgeQueue(ctx, tx, id)
			if err != nil {
				return false, err
			}
			st.Initialisation = queue.InitNew
			s.log.Warn("another box took over a site whose pin was cleared; its queue was emptied and it starts as a new site", "site", id, "dropped", n)
		}
		st.HardwareID, st.PinnedAt, st.ClearedHardwareID = hwid, time.Now().UTC(), ""
		s.log.Info("pinned site hardware ID", "site", id)
		return true, nil
	})
	if err != nil {
		return queue.SiteState{}, err
	}
	if mismatch {
		return queue.SiteState{}, fmt.Errorf("site %d: %w: this site is pinned to another box; clear the pin on the primary", id, queue.ErrHardwareMismatch)
	}
	return s.viewState(st), nil
}

func (s *Store) viewState(st queue.SiteState) queue.SiteState {
	return s.view(&siteRow{state: st})
}

// purgeQueue empties site's queue inside tx, in bounded statements, and
// returns how many entries it removed.
func purgeQueue(ctx context.Context, tx pgx.Tx, site int) (int, error) {
	total := 0
	for {
		var n int
		err := tx.QueryRow(ctx, `WITH gone AS (
				DELETE FROM queue WHERE (site, tbl, id) IN (SELECT site, tbl, id FROM queue WHERE site = $1 ORDER BY tbl, id LIMIT $2 FOR UPDATE)
				RETURNING 1),
			d AS (INSERT INTO queue_len (site, n) SELECT $1, -count(*) FROM gone HAVING count(*) > 0)
			SELECT count(*) FROM gone`, site, purgeBatch).Scan(&n)
		if err != nil {
			return total, err
		}
		total += n
		if n < purgeBatch {
			return total, nil
		}
	}
}

const purgeBatch = 5000

// ClearPin forgets site id's pinned hardware ID; its next contact pins again.
func (s *Store) ClearPin(id int) error {
	if err := checkSiteID(id); err != nil {
		return err
	}
	ctx, cancel, err := s.call()
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.updateSite(ctx, id, func(_ pgx.Tx, st *queue.SiteState) (bool, error) {
		if st.HardwareID != "" {
			st.ClearedHardwareID = st.HardwareID
		}
		st.HardwareID, st.PinnedAt = "", time.Time{}
		return true, nil
	})
	if err == nil {
		s.log.Info("cleared site hardware ID pin", "site", id)
	}
	return err
}

// Touch records a contact from site id at time at: in this node's memory
// every time, in the database at most once a minute per site.
func (s *Store) Touch(id int, at time.Time) error {
	if err := checkSiteID(id); err != nil {
		return err
	}
	if s.closed.Load() {
		return queue.ErrClosed
	}
	at = at.UTC()
	s.contactMu.Lock()
	c := s.contacts[id]
	if at.After(c.seen) {
		c.seen = at
	}
	s.contacts[id] = c
	due := c.seen.Sub(c.saved) >= touchEvery
	s.contactMu.Unlock()
	if !due {
		return nil
	}
	return s.saveContact(id)
}

// saveContact writes site id's last contact and health block as this node
// knows them (each only over an older one).
func (s *Store) saveContact(id int) error {
	s.contactMu.Lock()
	c := s.contacts[id]
	s.contactMu.Unlock()
	ctx, cancel, err := s.call()
	if err != nil {
		return err
	}
	defer cancel()
	st, _ := encodeSite(queue.SiteState{SyncID: id, Initialisation: queue.InitNew})
	var healthAt int64
	if !c.healthAt.IsZero() {
		healthAt = c.healthAt.UnixNano()
	}
	if err := s.withConn(ctx, func(conn *pgxconn) error {
		_, err := conn.Exec(ctx, `INSERT INTO sites (sync_id, state, last_contact, health, health_at) VALUES ($1, $2::jsonb, $3, $4, $5)
			ON CONFLICT (sync_id) DO UPDATE SET last_contact = greatest(sites.last_contact, EXCLUDED.last_contact),
				health = CASE WHEN EXCLUDED.health_at > sites.health_at THEN EXCLUDED.health ELSE sites.health END,
				health_at = greatest(sites.health_at, EXCLUDED.health_at)`,
			id, st, max(c.seen.UnixNano(), 0), c.health, healthAt)
		return err
	}); err != nil {
		return s.dbError(fmt.Sprintf("cannot save the last contact of site %d", id), err)
	}
	s.contactMu.Lock()
	now := s.contacts[id]
	if c.seen.After(now.saved) {
		now.saved = c.seen
	}
	if c.healthAt.After(now.healthSaved) {
		now.healthSaved = c.healthAt
	}
	s.contacts[id] = now
	s.contactMu.Unlock()
	return nil
}

// FlushContacts writes every last contact and health block this node kept
// in memory only (call it on a clean stop).
func (s *Store) FlushContacts() error {
	s.contactMu.Lock()
	var due []int
	for id, c := range s.contacts {
		if c.seen.After(c.saved) || c.healthAt.After(c.healthSaved) {
			due = append(due, id)
		}
	}
	s.contactMu.Unlock()
	var errs []error
	for _, id := range due {
		errs = append(errs, s.saveContact(id))
	}
	return errors.Join(errs...)
}

// NoteHealth keeps site id's latest health block (raw, validated by the
// caller; nil when the box sent only its marks) in this node's memory,
// written with the last contact, and judges the marks the box reports as
// queue.Central.NoteHealth does (queue.NoteMarks): a box restored from an
// older copy must initialise again. The usual call is one read.
func (s *Store) NoteHealth(id int, raw []byte, m queue.Marks, at time.Time) (bool, error) {
	if err := checkSiteID(id); err != nil {
		return false, err
	}
	ctx, cancel, err := s.call()
	if err != nil {
		return false, err
	}
	defer cancel()
	if raw != nil {
		s.contactMu.Lock()
		c := s.contacts[id]
		if u := at.UTC(); !u.Before(c.healthAt) {
			c.health, c.healthAt = bytes.Clone(raw), u
		}
		s.contacts[id] = c
		s.contactMu.Unlock()
	}
	r, err := s.readSite(ctx, id)
	if err != nil {
		return false, s.dbError(fmt.Sprintf("cannot read site %d", id), err)
	}
	if next, rewound := queue.NoteMarks(r.state, m, at); !rewound && sameState(next, r.state) {
		return false, nil
	}
	rewound := false
	if _, err := s.updateSite(ctx, id, func(_ pgx.Tx, st *queue.SiteState) (bool, error) {
		next, rew := queue.NoteMarks(*st, m, at)
		write := rew || !sameState(next, *st)
		*st, rewound = next, rew
		return write, nil
	}); err != nil {
		return false, err
	}
	if rewound {
		s.log.Warn("site reports an older state than the primary has seen (restored from an older copy?); it must initialise again",
			"site", id, "outbox", m.OutboxSeq, "acked", m.Acked, "generation", m.Gen)
	}
	return rewound, nil
}

// sameState reports whether a and b store the same state column.
func sameState(a, b queue.SiteState) bool {
	ea, err1 := encodeSite(a)
	eb, err2 := encodeSite(b)
	return err1 == nil && err2 == nil && ea == eb
}

// SetInitialisation records site id's initialisation status ("new",
// "started", "completed" or "error"). "started" holds a lease
// (FillLease) that a running Fill renews; once it lapses, the site reads as
// "new".
func (s *Store) SetInitialisation(id int, status string) error {
	if err := checkSiteID(id); err != nil {
		return err
	}
	switch status {
	case queue.InitNew, queue.InitStarted, queue.InitCompleted, queue.InitError:
	default:
		return fmt.Errorf("invalid initialisation status %q (want new, started, completed or error)", status)
	}
	ctx, cancel, err := s.call()
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.updateSite(ctx, id, func(tx pgx.Tx, st *queue.SiteState) (bool, error) {
		st.Initialisation = status
		var err error
		if status == queue.InitStarted {
			_, err = tx.Exec(ctx, `UPDATE sites SET filling_until = greatest(filling_until, now() + $2::interval) WHERE sync_id = $1`,
				id, s.opts.FillLease)
		} else {
			_, err = tx.Exec(ctx, `UPDATE sites SET filling_until = NULL WHERE sync_id = $1 AND filling_token IS NULL`, id)
		}
		return true, err
	})
	return err
}

// Sites lists every site the primary has seen, by sync ID.
func (s *Store) Sites() []queue.SiteState {
	ctx, cancel, err := s.call()
	if err != nil {
		return nil
	}
	defer cancel()
	var out []queue.SiteState
	err = s.withConn(ctx, func(c *pgxconn) error {
		out = out[:0]
		rows, err := c.Query(ctx, `SELECT `+sqlSiteCols+` FROM sites ORDER BY sync_id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanSiteRow(rows)
			if err != nil {
				return err
			}
			out = append(out, s.view(r))
		}
		return rows.Err()
	})
	if err != nil {
		s.warn("cannot list sites", "err", err)
	}
	return out
}

// hasControl reports whether s holds an ASCII control character (the rule
// queue applies to hardware IDs).
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// SetVerified keeps the token of the password last verified for site id
// (written only when it changes): in the state column, so every node sees
// it.
func (s *Store) SetVerified(id int, token string) error {
	if err := checkSiteID(id); err != nil {
		return err
	}
	ctx, cancel, err := s.call()
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.updateSite(ctx, id, func(_ pgx.Tx, st *queue.SiteState) (bool, error) {
		if st.Verified == token {
			return false, nil
		}
		st.Verified = token
		return true, nil
	})
	return err
}

// QueueLengths returns every site's queue length that is not 0, in one
// query (the sum of each site's length deltas).
func (s *Store) QueueLengths() (map[int]int, error) {
	ctx, cancel, err := s.call()
	if err != nil {
		return nil, err
	}
	defer cancel()
	out := map[int]int{}
	err = s.withConn(ctx, func(c *pgxconn) error {
		clear(out)
		rows, err := c.Query(ctx, `SELECT site, sum(n) FROM queue_len GROUP BY site HAVING sum(n) <> 0`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var site int
			var n int64
			if err := rows.Scan(&site, &n); err != nil {
				return err
			}
			out[site] = int(n)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.dbError("cannot read the queue lengths", err)
	}
	return out, nil
}
