package satellite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"

	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// pushAll drains the outbox in batches the push sizer chooses. A batch that
// fails on the link is re-sliced at the sizer's new (smaller) limit; a single
// record that keeps failing alone is set aside so it cannot block the queue.
func (s *Satellite) pushAll(ctx context.Context, res *Result) error {
	failures := 0
	for round := 0; round < maxRounds; round++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		maxRecords, maxBytes := s.push.LimitFor(s.store.OutboxLen())
		batch, err := s.store.Outbox(maxRecords, maxBytes)
		if err != nil {
			return fmt.Errorf("cannot read the outbox: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		push := syncapi.Push{QueueLength: max(0, s.store.OutboxLen()-len(batch)), Data: make([]syncapi.QueuedRecord, len(batch))}
		size := 0
		for i, e := range batch {
			push.Data[i] = syncapi.FromRecord(e.SyncOutID, e.Record)
			size += e.Size
		}
		resp, err := within(ctx, s.push, size, func(ctx context.Context) (syncapi.PushResponse, error) {
			return s.client.Push(ctx, push)
		})
		// A batch is full when either bound stopped it: only full batches
		// tell the sizer that a larger one might have worked.
		s.observe(s.push, len(batch), len(batch) >= maxRecords || size >= maxBytes*9/10, err)
		if err != nil {
			if refused, ok := refusalsOf(err); ok {
				resp = syncapi.PushResponse{Refused: refused}
			} else if linkFailure(ctx, err) {
				failures++
				if recordMayBeAtFault(err) && s.setAsideLonely(batch, err, res) {
					continue
				}
				if failures >= maxConsecutiveFailures {
					return fmt.Errorf("push: %w", err)
				}
				continue
			} else {
				return fmt.Errorf("push: %w", err)
			}
		}
		failures, s.singleFails = 0, 0
		if err := s.settle(batch, resp.Refused, res); err != nil {
			return err
		}
	}
	return nil
}

// settle marks a pushed batch done, setting the refused records aside with
// the primary's reason.
func (s *Satellite) settle(batch []queue.OutboxEntry, refused []syncapi.Refusal, res *Result) error {
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
		if err := s.store.SetAside(e, reason); err != nil {
			return fmt.Errorf("cannot set a refused record aside: %w", err)
		}
		res.SetAside++
		s.log.Warn("record set aside", "table", e.Record.Table, "id", e.Record.ID, "reason", reason)
	}
	if err := s.store.MarkPushed(done); err != nil {
		return fmt.Errorf("cannot mark records pushed: %w", err)
	}
	res.Pushed += len(done)
	return nil
}

// setAsideLonely sets a one-record batch aside once the sizer says it has
// failed on its own often enough.
func (s *Satellite) setAsideLonely(batch []queue.OutboxEntry, err error, res *Result) bool {
	if len(batch) != 1 {
		s.singleFails = 0
		return false
	}
	s.singleFails++
	if !s.push.SetAside(s.singleFails) {
		return false
	}
	reason := fmt.Sprintf("failed on its own %d times in a row: %v", s.singleFails, err)
	if e := s.store.SetAside(batch[0], reason); e != nil {
		s.log.Error("cannot set a failing record aside", "err", e)
		return false
	}
	s.singleFails = 0
	res.SetAside++
	s.log.Warn("record set aside", "table", batch[0].Record.Table, "id", batch[0].Record.ID, "reason", reason)
	return true
}

// recordMayBeAtFault reports whether a failed push could be the fault of
// what the batch holds: not when the request never reached the primary
// (dial, DNS) nor when the primary said it cannot serve now (503: storage,
// busy, sync disabled). Only such failures may set a lone record aside.
func recordMayBeAtFault(err error) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &opErr) && opErr.Op == "dial" || errors.As(err, &dnsErr) {
		return false
	}
	if e, ok := syncapi.AsError(err); ok && e.Status == http.StatusServiceUnavailable {
		return false
	}
	return true
}

// refusalsOf extracts the per-record refusals of a push the primary refused
// as a whole.
func refusalsOf(err error) ([]syncapi.Refusal, bool) {
	e, ok := syncapi.AsError(err)
	if !ok || len(e.Data) == 0 || e.Status >= 500 {
		return nil, false
	}
	var refused []syncapi.Refusal
	if json.Unmarshal(e.Data, &refused) != nil || len(refused) == 0 {
		return nil, false
	}
	return refused, true
}
