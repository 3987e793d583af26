package satellite

import (
	"context"
	"fmt"

	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// pullAll pulls central records, then this site's queue
// (synchroniser.rs: PullCentral, then PullRemote).
func (c *cycle) pullAll() error {
	c.s.pull.StartFrom(c.s.push)
	if c.first {
		c.s.firstPulling(true)
		defer c.s.firstPulling(false)
	}
	if err := c.pullCentral(); err != nil {
		return err
	}
	return c.pullQueued()
}

// pullCentral reads central records after this site's cursor until
// maxCursor. It follows the reference client
// (central_data_synchroniser.rs, pull): the cursor becomes the last record's
// ID once the page is durable, and an empty page below maxCursor is a gap
// (entries not for this site were skipped): the cursor moves on by one and
// the next page is asked for. A maxCursor below the cursor means the
// primary's central log went backwards (a primary restored from a
// backup): central data is read again from 0, once a cycle, and the result
// says so.
func (c *cycle) pullCentral() error {
	s := c.s
	cursor, err := s.store.Cursor(cursorCentral)
	if err != nil {
		return fmt.Errorf("cannot read the central cursor: %w", err)
	}
	failures := 0
	for round := 0; ; round++ {
		if round >= s.maxRounds {
			c.truncated("central pull")
			return nil
		}
		limit, bytes := s.pull.Limit()
		page, err := within(c.ctx, s.pull, bytes, func(ctx context.Context) (syncapi.CentralRecords, error) {
			return s.client.CentralRecords(ctx, cursor, limit)
		})
		s.observe(c.ctx, s.pull, len(page.Data), len(page.Data) >= limit, err)
		switch classify(c.ctx, err) {
		case kindOK:
			failures = 0
		case kindBusy:
			if err := c.waitBusy("central records", err); err != nil {
				return err
			}
			continue
		case kindLink:
			if failures++; failures < maxConsecutiveFailures {
				continue
			}
			return fmt.Errorf("central records: %w", err)
		default:
			return fmt.Errorf("central records: %w", err)
		}
		if page.MaxCursor < cursor {
			if c.res.CentralReread {
				return fmt.Errorf("central records: the primary's maxCursor %d is below cursor %d again after reading from 0", page.MaxCursor, cursor)
			}
			c.res.CentralReread = true
			c.note(fmt.Sprintf("the primary's central records end at %d, before this site's cursor %d (a primary restored from a backup?): reading central data again from 0", page.MaxCursor, cursor),
				"max_cursor", page.MaxCursor, "cursor", cursor)
			cursor = 0
			if err := s.store.SetCursor(cursorCentral, cursor); err != nil {
				return fmt.Errorf("cannot save the central cursor: %w", err)
			}
			continue
		}
		if len(page.Data) == 0 {
			if cursor >= page.MaxCursor {
				return nil
			}
			// A gap: step over it (central_data_synchroniser.rs: "(0, true) =>
			// cursor_controller.update(connection, last_cursor_in_batch + 1)").
			cursor++
			if err := s.store.SetCursor(cursorCentral, cursor); err != nil {
				return fmt.Errorf("cannot save the central cursor: %w", err)
			}
			continue
		}
		recs := make([]queue.Record, 0, len(page.Data))
		next := cursor
		for _, r := range page.Data {
			if r.ID <= cursor {
				return fmt.Errorf("central records: the primary sent cursor %d, not after %d", r.ID, cursor)
			}
			next = max(next, r.ID)
			if rec, ok := c.convert(r.Record); ok {
				recs = append(recs, rec)
			}
		}
		if err := c.apply(recs); err != nil {
			return err
		}
		// The cursor moves only after the records are durable.
		if err := s.store.SetCursor(cursorCentral, next); err != nil {
			return fmt.Errorf("cannot save the central cursor: %w", err)
		}
		cursor = next
		if c.first {
			s.firstPage(len(recs), dataBytes(recs), true, int(page.MaxCursor-cursor))
		}
		if cursor >= page.MaxCursor {
			return nil
		}
	}
}

// pullQueued drains this site's queue, acknowledging each page once it is
// durable (remote_data_synchroniser.rs, pull).
func (c *cycle) pullQueued() error {
	s := c.s
	failures, queued := 0, 0 // queued: records left on the primary, as its last page said (0 unknown)
	for round := 0; ; round++ {
		if round >= s.maxRounds {
			c.truncated("queue pull")
			return nil
		}
		limit, bytes := s.pull.LimitFor(queued)
		page, err := within(c.ctx, s.pull, bytes, func(ctx context.Context) (syncapi.QueuedRecords, error) {
			return s.client.QueuedRecords(ctx, limit)
		})
		s.observe(c.ctx, s.pull, len(page.Data), len(page.Data) >= limit, err)
		switch classify(c.ctx, err) {
		case kindOK:
			failures = 0
		case kindBusy:
			if err := c.waitBusy("queued records", err); err != nil {
				return err
			}
			continue
		case kindLink:
			if failures++; failures < maxConsecutiveFailures {
				continue
			}
			return fmt.Errorf("queued records: %w", err)
		default:
			return fmt.Errorf("queued records: %w", err)
		}
		if len(page.Data) == 0 {
			return nil
		}
		recs := make([]queue.Record, 0, len(page.Data))
		ids := make([]string, 0, len(page.Data))
		for _, q := range page.Data {
			ids = append(ids, q.SyncOutID)
			if r, ok := c.convert(q.Record); ok {
				recs = append(recs, r)
			}
		}
		if err := c.apply(recs); err != nil {
			return err
		}
		if err := s.noteAcked(ids); err != nil {
			return err
		}
		// Acknowledge only what is durable; a lost acknowledgement means the
		// records come again, and applying them again changes nothing.
		if err := c.acknowledge(ids); err != nil {
			return fmt.Errorf("acknowledge: %w", err)
		}
		if c.first {
			s.firstPage(len(recs), dataBytes(recs), false, page.QueueLength-len(page.Data))
		}
		if page.QueueLength <= len(page.Data) {
			return nil
		}
		queued = page.QueueLength - len(page.Data)
	}
}

// acknowledge tells the primary that ids are applied, retrying a link
// failure at once (a small request, and a page pulled again would cost
// more) and waiting out a busy primary.
func (c *cycle) acknowledge(ids []string) error {
	s := c.s
	bytes := 0
	for _, id := range ids {
		bytes += len(id) + 3 // "id",
	}
	var err error
	for tries := 0; tries < maxConsecutiveFailures; {
		_, err = within(c.ctx, s.pull, bytes, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, s.client.Acknowledge(ctx, ids)
		})
		switch classify(c.ctx, err) {
		case kindLink:
			tries++
		case kindBusy:
			if err := c.waitBusy("acknowledge", err); err != nil {
				return err
			}
		default:
			return err
		}
	}
	return err
}

func (c *cycle) convert(conv func() (queue.Record, error)) (queue.Record, bool) {
	r, err := conv()
	c.res.Pulled++
	if err != nil {
		c.res.Invalid++
		c.s.log.Warn("pulled record cannot be applied; skipping it", "err", err)
		return r, false
	}
	return r, true
}

func (c *cycle) apply(recs []queue.Record) error {
	if len(recs) == 0 {
		return nil
	}
	ar, err := c.s.store.Apply(recs)
	if err != nil {
		return fmt.Errorf("cannot apply pulled records: %w", err)
	}
	c.res.Applied += ar.Applied
	c.res.LocalWins += ar.Skipped
	return nil
}
