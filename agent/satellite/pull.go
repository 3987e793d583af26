package satellite

import (
	"context"
	"fmt"

	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// pullAll initialises the site on first contact, then pulls central records
// and this site's queue.
func (s *Satellite) pullAll(ctx context.Context, res *Result) error {
	if err := s.initialise(ctx); err != nil {
		return err
	}
	s.pull.StartFrom(s.push)
	if err := s.pullCentral(ctx, res); err != nil {
		return err
	}
	return s.pullQueued(ctx, res)
}

// initialise asks the primary to fill this site's queue until this datafile
// has been initialised once: a new box, a datafile recovered from corruption,
// or `generate --new` all start from everything the site should hold.
func (s *Satellite) initialise(ctx context.Context) error {
	b, ok, err := s.store.Meta(metaInitialised)
	if err != nil {
		return fmt.Errorf("cannot read the datafile: %w", err)
	}
	if ok && string(b) == "yes" {
		return nil
	}
	n, err := s.client.Initialise(ctx)
	if err != nil {
		return fmt.Errorf("initialise: %w", err)
	}
	s.log.Info("initialised by the primary", "queue", n)
	return s.store.SetMeta(metaInitialised, []byte("yes"))
}

func (s *Satellite) pullCentral(ctx context.Context, res *Result) error {
	cursor, err := s.store.Cursor(cursorCentral)
	if err != nil {
		return fmt.Errorf("cannot read the central cursor: %w", err)
	}
	failures := 0
	for round := 0; round < maxRounds; round++ {
		limit, bytes := s.pull.Limit()
		page, err := within(ctx, s.pull, bytes, func(ctx context.Context) (syncapi.CentralRecords, error) {
			return s.client.CentralRecords(ctx, cursor, limit)
		})
		s.observe(s.pull, len(page.Data), len(page.Data) >= limit, err)
		if err != nil {
			if failures++; linkFailure(ctx, err) && failures < maxConsecutiveFailures {
				continue
			}
			return fmt.Errorf("central records: %w", err)
		}
		failures = 0
		if len(page.Data) == 0 {
			return nil
		}
		recs := make([]queue.Record, 0, len(page.Data))
		next := cursor
		for _, c := range page.Data {
			if c.ID <= cursor {
				return fmt.Errorf("central records: the primary sent cursor %d, not after %d", c.ID, cursor)
			}
			next = max(next, c.ID)
			if r, ok := s.convert(c.Record, res); ok {
				recs = append(recs, r)
			}
		}
		if err := s.apply(recs, res); err != nil {
			return err
		}
		// The cursor moves only after the records are durable.
		if err := s.store.SetCursor(cursorCentral, next); err != nil {
			return fmt.Errorf("cannot save the central cursor: %w", err)
		}
		cursor = next
		if cursor >= page.MaxCursor {
			return nil
		}
	}
	return nil
}

func (s *Satellite) pullQueued(ctx context.Context, res *Result) error {
	failures, queued := 0, 0 // queued: records left on the primary, as its last page said (0 unknown)
	for round := 0; round < maxRounds; round++ {
		limit, bytes := s.pull.LimitFor(queued)
		page, err := within(ctx, s.pull, bytes, func(ctx context.Context) (syncapi.QueuedRecords, error) {
			return s.client.QueuedRecords(ctx, limit)
		})
		s.observe(s.pull, len(page.Data), len(page.Data) >= limit, err)
		if err != nil {
			if failures++; linkFailure(ctx, err) && failures < maxConsecutiveFailures {
				continue
			}
			return fmt.Errorf("queued records: %w", err)
		}
		failures = 0
		if len(page.Data) == 0 {
			return nil
		}
		recs := make([]queue.Record, 0, len(page.Data))
		ids := make([]string, 0, len(page.Data))
		for _, q := range page.Data {
			ids = append(ids, q.SyncOutID)
			if r, ok := s.convert(q.Record, res); ok {
				recs = append(recs, r)
			}
		}
		if err := s.apply(recs, res); err != nil {
			return err
		}
		// Acknowledge only what is durable; a lost acknowledgement means the
		// records come again, and applying them again changes nothing.
		if err := s.acknowledge(ctx, ids); err != nil {
			return fmt.Errorf("acknowledge: %w", err)
		}
		if page.QueueLength <= len(page.Data) {
			return nil
		}
		queued = page.QueueLength - len(page.Data)
	}
	return nil
}

// acknowledge tells the primary that ids are applied, retrying a link
// failure at once: a small request, and a page pulled again would cost more.
func (s *Satellite) acknowledge(ctx context.Context, ids []string) error {
	bytes := 0
	for _, id := range ids {
		bytes += len(id) + 3 // "id",
	}
	var err error
	for range maxConsecutiveFailures {
		_, err = within(ctx, s.pull, bytes, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, s.client.Acknowledge(ctx, ids)
		})
		if !linkFailure(ctx, err) {
			return err
		}
	}
	return err
}

func (s *Satellite) convert(conv func() (queue.Record, error), res *Result) (queue.Record, bool) {
	r, err := conv()
	res.Pulled++
	if err != nil {
		res.Invalid++
		s.log.Warn("pulled record cannot be applied; skipping it", "err", err)
		return r, false
	}
	return r, true
}

func (s *Satellite) apply(recs []queue.Record, res *Result) error {
	if len(recs) == 0 {
		return nil
	}
	ar, err := s.store.Apply(recs)
	if err != nil {
		return fmt.Errorf("cannot apply pulled records: %w", err)
	}
	res.Applied += ar.Applied
	res.LocalWins += ar.Skipped
	return nil
}
