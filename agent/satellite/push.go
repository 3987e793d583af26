package satellite

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// pushAll pushes what waited in the outbox when the cycle started, in
// batches the push sizer chooses, as the reference client pushes
// (remote_data_synchroniser.rs, push): each batch's queueLength counts the
// changes still to push including that batch, and an empty batch with
// queueLength 0 ends the push and starts the primary's integration, which
// is waited for (synchroniser.rs: wait_for_sync_operation after push)
// before the pull.
//
// A batch that fails on the link is re-sliced at the sizer's new limit and
// retried; nothing the link does sets a record aside. Only the primary's
// refusal of a record does: listed in a 200 answer (refused), in a 4xx v5
// error's data, or a v5 400/413/422 for a batch of that one record (a
// larger batch so refused is narrowed down to it).
func (c *cycle) pushAll() error {
	s := c.s
	failures, narrow := 0, 0
	for round := 0; ; round++ {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		if round >= s.maxRounds {
			c.truncated("push")
			break
		}
		waiting := s.store.OutboxLenUpTo(c.last)
		if waiting == 0 {
			break
		}
		maxRecords, maxBytes := s.push.LimitFor(waiting)
		if narrow > 0 {
			maxRecords = min(maxRecords, narrow)
		}
		wire := s.coldWire(maxBytes)
		if wire > 0 {
			maxRecords, maxBytes = maxRecords*coldGzipRoom, min(maxBytes*coldGzipRoom, maxRequestBytes)
		}
		batch, err := s.store.OutboxUpTo(c.last, maxRecords, maxBytes)
		if err != nil {
			return fmt.Errorf("cannot read the outbox: %w", err)
		}
		if len(batch) == 0 {
			break
		}
		push := syncapi.Push{QueueLength: max(waiting, len(batch)), Data: make([]syncapi.QueuedRecord, len(batch))}
		for i, e := range batch {
			push.Data[i] = syncapi.FromRecord(e.SyncOutID, e.Record)
		}
		cut := false // the gzipped bound stopped the batch
		if wire > 0 {
			n := gzipFit(push, wire)
			cut = n < len(batch)
			batch, push.Data = batch[:n], push.Data[:n]
		}
		size := 0
		for _, e := range batch {
			size += e.Size
		}
		resp, err := within(c.ctx, s.push, size, func(ctx context.Context) (syncapi.PushResponse, error) {
			return s.client.Push(ctx, push)
		})
		// A batch is full when either bound stopped it: only full batches
		// tell the sizer that a larger one might have worked.
		s.observe(c.ctx, s.push, len(batch), cut || len(batch) >= maxRecords || size >= maxBytes*9/10, err)
		switch classify(c.ctx, err) {
		case kindOK:
			failures, narrow = 0, 0
			c.rewound(resp.Rewound)
			if err := c.settle(batch, resp.Refused); err != nil {
				return err
			}
			continue
		case kindStopped:
			return fmt.Errorf("push: %w", err)
		case kindBusy:
			if err := c.waitBusy("push", err); err != nil {
				return err
			}
			continue
		case kindLink:
			if failures++; failures >= maxConsecutiveFailures {
				return fmt.Errorf("push: %w", err)
			}
			continue
		}
		if refused, ok := refusalsOf(err); ok && inBatch(refused, batch) {
			failures, narrow = 0, 0
			if err := c.settle(batch, refused); err != nil {
				return err
			}
			continue
		}
		if !recordRefusal(err) {
			return fmt.Errorf("push: %s%w", answered(err), err)
		}
		if len(batch) > 1 {
			narrow = len(batch) / 2
			continue
		}
		if err := c.setAside(batch[0], fmt.Sprintf("refused by the primary: %v", err)); err != nil {
			return err
		}
	}
	c.endPush()
	return nil
}

// endPush sends the empty batch that ends a push and starts integration on
// the primary, then waits until the primary is idle. Neither failing fails
// the cycle: what was pushed is accepted, and the pull that follows will
// say if the link is down.
func (c *cycle) endPush() {
	s := c.s
	var resp syncapi.PushResponse
	var err error
	for {
		resp, err = within(c.ctx, s.push, 0, func(ctx context.Context) (syncapi.PushResponse, error) {
			return s.client.Push(ctx, syncapi.Push{QueueLength: 0, Data: []syncapi.QueuedRecord{}})
		})
		if classify(c.ctx, err) != kindBusy || c.waitBusy("push", err) != nil {
			break
		}
	}
	if err != nil {
		s.log.Info("the push's closing empty batch failed; pulling anyway", "err", err)
		return
	}
	c.rewound(resp.Rewound)
	if !resp.IntegrationStarted {
		return
	}
	if _, err := c.waitIdle("integration", integrationPoll, integrationWait); err != nil {
		var busy *errStillBusy
		if errors.As(err, &busy) {
			c.note(fmt.Sprintf("the primary was still integrating after %s; pulling anyway", busy.took.Round(time.Second)))
		} else {
			s.log.Info("cannot ask the primary whether it has integrated; pulling anyway", "err", err)
		}
	}
}

// inBatch reports whether every refusal names a record of the batch: a list
// that names others is not an answer about this batch.
func inBatch(refused []syncapi.Refusal, batch []queue.OutboxEntry) bool {
	ids := make(map[string]bool, len(batch))
	for _, e := range batch {
		ids[e.SyncOutID] = true
	}
	for _, r := range refused {
		if !ids[r.SyncOutID] {
			return false
		}
	}
	return true
}

// settle marks a pushed batch done, setting the refused records aside with
// the primary's reason.
func (c *cycle) settle(batch []queue.OutboxEntry, refused []syncapi.Refusal) error {
	why := make(map[string]string, len(refused))
	for _, r := range refused {
		why[r.SyncOutID] = fmt.Sprintf("refused by the primary: %s: %s", r.Error.Code, r.Error.Message)
	}
	done := make([]queue.OutboxEntry, 0, len(batch))
	for _, e := range batch {
		reason, bad := why[e.SyncOutID]
		if !bad {
			done = append(done, e)
			continue
		}
		if err := c.setAside(e, reason); err != nil {
			return err
		}
	}
	if err := c.s.store.MarkPushed(done); err != nil {
		return fmt.Errorf("cannot mark records pushed: %w", err)
	}
	c.res.Pushed += len(done)
	return nil
}

func (c *cycle) setAside(e queue.OutboxEntry, reason string) error {
	if err := c.s.store.SetAside(e, reason); err != nil {
		return fmt.Errorf("cannot set a refused record aside: %w", err)
	}
	c.res.SetAside++
	c.s.log.Warn("record set aside", "table", e.Record.Table, "id", e.Record.ID, "reason", reason)
	return nil
}

// rewound takes the primary's word that this site's outbox numbering went
// backwards (a restored backup): the new changes were taken; say so.
func (c *cycle) rewound(yes bool) {
	if !yes || c.res.Rewound {
		return
	}
	c.res.Rewound = true
	c.note("the primary says this site's outbox numbering went backwards (a datafile restored from a backup?); its new changes were taken")
}

// truncated records that a phase stopped at its round cap.
func (c *cycle) truncated(phase string) {
	c.res.Truncated = true
	c.note(fmt.Sprintf("%s stopped after %d requests with more to do; the next cycle goes on at once", phase, c.s.maxRounds))
}

// coldGzipRoom is how much more JSON than its byte bound a cold first push
// may slice before it is gzipped and cut to the bound (JSON rows seldom
// gzip better than 4:1; if they do, the push is only smaller than it could
// be).
const coldGzipRoom = 4

// coldWire is the byte bound of a first push applied to its gzipped body,
// or 0 when it applies to the JSON as usual: only while the push sizer is
// cold (a new box, nothing learned about the link) and the primary takes
// gzip bodies.
//
// Why: a cold sizer plans what the slowest link it is built for (2G,
// 10 kB/s) carries in half the deadline, 125 kB; what the link carries is
// the gzipped body, and JSON rows gzip well. Counting the JSON instead
// split the first push of 300 records of 600 B (210 kB of JSON, 135 kB
// gzipped) in two, and on a satellite link (1.2 s round trips) the second
// push cost 1.2 s for nothing. Counted gzipped, the push can still cross
// 2G within half its deadline, as before; once the first request is
// answered the sizer knows the link and plans in JSON bytes as usual.
func (s *Satellite) coldWire(maxBytes int) int {
	if !s.peerGzip.Load() || !s.push.Cold() {
		return 0
	}
	return maxBytes
}

// gzipFit returns how many of push's records (at least one) make a body
// that the client's gzip (the same encoding and level) keeps within wire
// bytes.
func gzipFit(push syncapi.Push, wire int) int {
	all := push.Data
	n := len(all)
	for n > 1 {
		push.Data = all[:n]
		gz := gzipSize(push)
		if gz <= wire {
			break
		}
		n = max(1, min(n-1, n*wire/gz))
	}
	return n
}

// gzipSize is the size of push as the client sends it to a primary that
// takes gzip (agent/syncapi/client.go: json.Marshal, gzip.BestSpeed).
func gzipSize(push syncapi.Push) int {
	b, err := json.Marshal(push)
	if err != nil {
		return math.MaxInt
	}
	var c countWriter
	zw, _ := gzip.NewWriterLevel(&c, gzip.BestSpeed)
	zw.Write(b)
	zw.Close()
	return int(c)
}

type countWriter int

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}
