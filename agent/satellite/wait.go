package satellite

import (
	"context"
	"fmt"
	"time"

	"syncagent/agent/adapt"
	"syncagent/agent/syncapi"
)

// How long the cycle waits for the primary, from the reference client: an
// initialisation is polled every 15 s for up to 30 min
// (remote_data_synchroniser.rs, INITIALISATION_POLL_PERIOD_SECONDS and
// INITIALISATION_TIMEOUT_SECONDS), integration after a push every second
// for up to 30 s (synchroniser.rs, INTEGRATION_POLL_PERIOD_SECONDS and
// INTEGRATION_TIMEOUT_SECONDS). A busy answer is waited out like an
// integration, at most maxBusyWaits times a cycle.
const (
	initPoll        = 15 * time.Second
	initTimeout     = 30 * time.Minute
	integrationPoll = time.Second
	integrationWait = 30 * time.Second
	maxBusyWaits    = 3
)

// sleep waits d on the satellite's clock, or until ctx ends.
func (s *Satellite) sleep(ctx context.Context, d time.Duration) error {
	tc, ok := s.clock.(adapt.TimerClock)
	if !ok {
		tc = adapt.SystemClock{}
	}
	t := tc.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// errStillBusy ends a wait whose time ran out while the primary was not idle.
type errStillBusy struct {
	what string
	code string
	took time.Duration
}

func (e *errStillBusy) Error() string {
	return fmt.Sprintf("the primary is still busy (%s) after %s waiting for %s", e.code, e.took.Round(time.Second), e.what)
}

// waitIdle polls GET site_status until the primary says idle: at once, then
// every poll, for at most limit on the satellite's clock. Each poll is an
// exchange, so the daemon's watchdog sees the loop alive. It reports
// whether any poll found the primary not idle (evidence that something,
// such as an initialisation, was running). A poll the link loses is
// retried at the next one, up to maxConsecutiveFailures in a row; any other
// answer but a status ends the wait with it.
func (c *cycle) waitIdle(what string, poll, limit time.Duration) (sawBusy bool, err error) {
	s := c.s
	start := s.clock.Now()
	failures, code := 0, ""
	for {
		st, err := within(c.ctx, s.pull, 0, func(ctx context.Context) (syncapi.SiteStatus, error) {
			return s.client.SiteStatus(ctx)
		})
		switch classify(c.ctx, err) {
		case kindOK:
			failures = 0
			if st.Code == syncapi.StatusIdle {
				return sawBusy, nil
			}
			sawBusy, code = true, st.Code
		case kindLink:
			if failures++; failures >= maxConsecutiveFailures {
				return sawBusy, fmt.Errorf("site status: %w", err)
			}
		case kindBusy:
			sawBusy, code = true, syncapi.CodeSyncIsRunning
		default:
			return sawBusy, fmt.Errorf("site status: %w", err)
		}
		if took := s.clock.Now().Sub(start); took >= limit {
			return sawBusy, &errStillBusy{what: what, code: code, took: took}
		}
		if err := s.sleep(c.ctx, poll); err != nil {
			return sawBusy, err
		}
	}
}

// waitBusy waits out a busy answer (503 sync_is_running) before the call
// that got it is tried again, without touching the request size. It returns
// an error holding ErrBusy when this cycle has waited enough.
func (c *cycle) waitBusy(what string, err error) error {
	if c.busyWaits >= maxBusyWaits {
		return fmt.Errorf("%s: %w: %w", what, ErrBusy, err)
	}
	c.busyWaits++
	c.s.log.Info("the primary is busy; waiting", "during", what, "err", err)
	if _, werr := c.waitIdle(what, integrationPoll, integrationWait); werr != nil {
		if c.ctx.Err() != nil {
			return werr
		}
		return fmt.Errorf("%s: %w: %w", what, ErrBusy, werr)
	}
	return nil
}
