package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"syncagent/queue"
)

// Accept applies a batch pushed by site origin in one transaction, with the
// semantics of queue.Central.Accept: decided by queue.Decide over rows
// locked for the decision, applied with the pushing site's new state, and
// durable when it returns nil. A deadlock with another node's push is
// retried; an error after COMMIT was sent leaves the outcome unknown, and
// pushing the batch again is safe (it is recognised as a repeat).
func (s *Store) Accept(origin int, in []queue.Inbound, router queue.Router) (queue.AcceptResult, error) {
	if origin <= 0 {
		return queue.AcceptResult{}, fmt.Errorf("cannot accept a push from site %d", origin)
	}
	ctx, cancel, err := s.call()
	if err != nil {
		return queue.AcceptResult{}, err
	}
	defer cancel()
	res, _, err := s.accept(ctx, origin, in, router)
	return res, err
}

// Write is the primary's own change, routed like a push (origin 0). It
// returns the version the change got; for central data, its cursor.
func (s *Store) Write(r queue.Record, router queue.Router) (uint64, error) {
	ctx, cancel, err := s.call()
	if err != nil {
		return 0, err
	}
	defer cancel()
	res, ap, err := s.accept(ctx, 0, []queue.Inbound{{Record: r}}, router)
	if err != nil {
		return 0, err
	}
	o := res.Outcomes[0]
	if o.Refused != nil {
		return 0, fmt.Errorf("cannot write %s/%s: %w: %s", r.Table, r.ID, queue.ErrRefused, o.Refused.Message)
	}
	for _, c := range ap.cursors {
		return c, nil // one record: its cursor
	}
	return o.Version, nil
}

// WriteBatch is several of the primary's own changes in one transaction.
func (s *Store) WriteBatch(rs []queue.Record, router queue.Router) error {
	ctx, cancel, err := s.call()
	if err != nil {
		return err
	}
	defer cancel()
	in := make([]queue.Inbound, len(rs))
	for i, r := range rs {
		in[i].Record = r
	}
	res, _, err := s.accept(ctx, 0, in, router)
	if err != nil {
		return err
	}
	return queue.RefusedWrites(rs, res)
}

// accept runs the push's transaction, again after a deadlock, and in
// central mode from the start when the plan turns out to write central
// data.
func (s *Store) accept(ctx context.Context, origin int, in []queue.Inbound, router queue.Router) (queue.AcceptResult, applied, error) {
	batch, err := queue.Prepare(origin, in) // once, before any transaction
	if err != nil {
		return queue.AcceptResult{}, applied{}, fmt.Errorf("cannot accept push from site %d: %w", origin, err)
	}
	central := origin == 0
	for attempt := 0; ; attempt++ {
		res, ap, err := s.acceptOnce(ctx, origin, in, batch, router, central)
		switch {
		case errors.Is(err, errNeedCentral) && !central:
			central = true
			continue
		case err == nil:
			if len(ap.cursors) > 0 {
				s.afterLogWrite(ctx, ap)
			}
			if res.Rewound {
				s.log.Warn("site sent new changes under syncOutIds it used before (outbox restored from a backup, or reinstalled); they were taken and the site must refill", "site", origin)
			}
			return res, ap, nil
		case noPartition(err) && attempt < maxRetries:
			// The partitions made ahead fell behind (another node's writes):
			// make them now, then try again.
			s.logCovered.Store(0)
			if perr := s.ensurePartitions(ctx, 0); perr != nil {
				return queue.AcceptResult{}, applied{}, s.dbError("cannot write record", perr)
			}
			continue
		case errors.Is(err, errLostAtBegin) && ctx.Err() == nil && attempt < maxRetries:
			// Nothing was written: a pooled connection had been ended.
			continue
		case retryable(err) && attempt < maxRetries:
			s.log.Debug("push retried", "site", origin, "attempt", attempt+1, "err", err)
			backoff(ctx, attempt)
			continue
		}
		if origin > 0 {
			return queue.AcceptResult{}, applied{}, s.dbError(fmt.Sprintf("cannot accept push from site %d", origin), err)
		}
		return queue.AcceptResult{}, applied{}, s.dbError("cannot write record", err)
	}
}

func (s *Store) acceptOnce(ctx context.Context, origin int, in []queue.Inbound, batch *queue.Batch, router queue.Router, central bool) (queue.AcceptResult, applied, error) {
	w, err := s.begin(ctx, central, origin)
	if err != nil {
		if connLost(err) {
			err = fmt.Errorf("%w: %w", errLostAtBegin, err)
		}
		return queue.AcceptResult{}, applied{}, err
	}
	defer w.abort()
	targets := targetRefs(in)
	var res queue.AcceptResult
	plan, err := w.decide(targets, targets, 2*len(in)+8, func(r *reader) (queue.Plan, error) {
		p, rs, err := batch.Decide(r, router, w.next)
		res = rs
		return p, err
	})
	if err != nil {
		return queue.AcceptResult{}, applied{}, err
	}
	if err := w.checkQueueMax(plan.Queue); err != nil {
		return queue.AcceptResult{}, applied{}, err
	}
	if origin > 0 && res.Accepted > 0 {
		if site, changed, rewound := queue.NoteSyncOutIDs(w.site.state, in, res.Outcomes, time.Now()); changed {
			plan.Site, res.Rewound = &site, rewound
		}
	}
	ap, err := w.apply(plan)
	if err != nil {
		return queue.AcceptResult{}, applied{}, err
	}
	w.release()
	return res, ap, nil
}

// errLostAtBegin: the connection was lost before the transaction did
// anything; another connection may safely try.
var errLostAtBegin = errors.New("connection lost at the start of the transaction")

// targetRefs names the records a batch lands on (a merge: the record it
// deletes), to lock before the decision. A malformed record may be among
// them (Decide refuses it without reading it): locking a row too many is
// harmless, and cheaper than validating the batch twice.
func targetRefs(in []queue.Inbound) []queue.Ref {
	out := make([]queue.Ref, 0, len(in))
	for _, x := range in {
		r := x.Record
		if r.Table == "" || r.ID == "" {
			continue
		}
		id := r.ID
		if a, _ := queue.ParseAction(string(r.Action)); a == queue.Merge {
			if _, drop, err := r.MergeIDs(); err == nil {
				id = drop
			}
		}
		out = append(out, queue.Ref{Table: r.Table, ID: id})
	}
	return dedupe(out)
}

// checkQueueMax refuses a change that would grow a queue past QueueMax
// (entries that replace one already queued count too: an upper bound).
func (w *work) checkQueueMax(ops []queue.QueueOp) error {
	if w.s.opts.QueueMax <= 0 {
		return nil
	}
	add := map[int]int{}
	for _, q := range ops {
		if !q.Remove {
			add[q.Site]++
		}
	}
	for site, n := range add {
		var have int64
		if err := w.conn.QueryRow(w.ctx, "SELECT coalesce(sum(n), 0) FROM queue_len WHERE site = $1", site).Scan(&have); err != nil {
			return err
		}
		if int(have)+n > w.s.opts.QueueMax {
			return fmt.Errorf("%w: site %d has %d records waiting (limit %d), cannot queue %d more; the site must pull first",
				queue.ErrQueueFull, site, have, w.s.opts.QueueMax, n)
		}
	}
	return nil
}
