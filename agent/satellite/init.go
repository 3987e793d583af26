package satellite

import (
	"context"
	"encoding/json"
	"fmt"

	"syncagent/agent/syncapi"
)

// The datafile's initialisation, kept as one meta key (one commit per step,
// so a crash or a cut link resumes where it stopped):
//
//	never ──begin──▶ request ──POST answered, or the primary's own run
//	                    │        waited out──▶ pull ──everything pulled,
//	                    │                             leftovers swept──▶ done
//	                    └─ GET site "started": wait (site_status), never POST
//
// begin raises the datafile's generation and resets the central cursor;
// every write, apply and push from then on carries the new generation, so
// the sweep at the end removes exactly what was not delivered again and has
// no change waiting.
const (
	metaInit        = "init"
	metaInitialised = "initialised" // before metaInit: "yes" once initialised

	stepNever   = ""
	stepRequest = "request" // ask the primary to fill this site's queue
	stepPull    = "pull"    // the queue is filled: pull it and central data completely
	stepDone    = "done"
)

type initState struct {
	Step   string `json:"step"`
	Gen    uint64 `json:"gen"`              // the datafile generation this initialisation started
	SyncID int    `json:"syncId,omitempty"` // the sync_id it is for (0: not known)
	Reason string `json:"reason,omitempty"` // why it started
	// SawStarted: since the last POST initialise, the primary was seen
	// running an initialisation (GET site "started", or site_status not
	// idle after a POST whose answer was lost). A "completed" then means
	// that one finished; without it, "completed" may be an older run's.
	SawStarted bool `json:"sawStarted,omitempty"`
	// Queue is how many records the primary said it queued (0: not known).
	Queue int `json:"queue,omitempty"`
}

func (is initState) describe() string {
	switch is.Step {
	case stepNever:
		return "never"
	case stepDone:
		if is.SyncID != 0 {
			return fmt.Sprintf("completed (sync_id %d)", is.SyncID)
		}
		return "completed"
	case stepRequest:
		return "in progress: asking the primary to fill this site's queue (" + is.Reason + ")"
	}
	return "in progress: pulling everything this site holds (" + is.Reason + ")"
}

func (s *Satellite) loadInit() (initState, error) {
	var is initState
	b, ok, err := s.store.Meta(metaInit)
	if err != nil {
		return is, fmt.Errorf("cannot read the datafile: %w", err)
	}
	if ok {
		if err := json.Unmarshal(b, &is); err != nil {
			return initState{}, fmt.Errorf("the datafile's initialisation state is unreadable: %w", err)
		}
		return is, nil
	}
	// A datafile from before generations: initialised, for its sync_id.
	if b, ok, err := s.store.Meta(metaInitialised); err == nil && ok && string(b) == "yes" {
		is.Step = stepDone
	}
	return is, err
}

func (s *Satellite) saveInit(is initState) error {
	b, err := json.Marshal(is)
	if err != nil {
		return err
	}
	if err := s.store.SetMeta(metaInit, b); err != nil {
		return fmt.Errorf("cannot save the initialisation state: %w", err)
	}
	return nil
}

// beginInit starts a clean (re-)initialisation. The state is written first,
// so a crash right after resumes this one; the generation and the central
// cursor are set again on every attempt of the request step.
func (s *Satellite) beginInit(reason string) (initState, error) {
	is := initState{Step: stepRequest, Gen: s.store.Generation() + 1, SyncID: s.cfg.Load().SyncID, Reason: reason}
	if err := s.saveInit(is); err != nil {
		return is, err
	}
	s.log.Info("initialisation started", "reason", reason, "generation", is.Gen)
	return is, s.resetForInit(is)
}

func (s *Satellite) resetForInit(is initState) error {
	if err := s.store.SetGeneration(is.Gen); err != nil {
		return fmt.Errorf("cannot start the initialisation: %w", err)
	}
	if err := s.store.SetCursor(cursorCentral, 0); err != nil {
		return fmt.Errorf("cannot start the initialisation: %w", err)
	}
	return nil
}

// prepare is the start of a cycle (synchroniser.rs: get_site_info, then
// request_initialisation when the queue is not initialised): GET site,
// decide whether the site must be initialised, and if so have the primary
// fill its queue.
func (c *cycle) prepare() (initState, error) {
	s := c.s
	is, err := s.loadInit()
	if err != nil {
		return is, err
	}
	info, err := c.site()
	if err != nil {
		// A datafile that needs nothing from GET site goes on: the push
		// and pull may get through a flaky link, and will say if not.
		if k := classify(c.ctx, err); k == kindLink && (is.Step == stepDone || is.Step == stepPull) {
			s.log.Debug("GET site failed on the link; going on", "err", err)
			return is, nil
		}
		return is, err
	}
	syncID := s.cfg.Load().SyncID
	var why string
	switch {
	case is.Step == stepNever:
		why = "this datafile has never been initialised"
	case syncID != 0 && is.SyncID != 0 && is.SyncID != syncID:
		why = fmt.Sprintf("this box's sync_id changed from %d to %d", is.SyncID, syncID)
	case is.Step != stepRequest && info.InitialisationStatus == syncapi.InitNew:
		why = `the primary says this site must be initialised (initialisationStatus "new")`
	}
	if why != "" {
		fresh := is.Step == stepNever
		if is, err = s.beginInit(why); err != nil {
			return is, err
		}
		if !fresh { // a first initialisation is the normal start of a box, not a warning
			c.note("initialising this site again from the primary: " + why)
		}
	} else if is.Step == stepDone && is.SyncID == 0 && syncID != 0 {
		is.SyncID = syncID // a datafile from before the sync_id was kept
		if err := s.saveInit(is); err != nil {
			return is, err
		}
	}
	if is.Step == stepRequest {
		if err := c.initialise(&is, info); err != nil {
			return is, err
		}
	}
	return is, nil
}

// site calls GET site, waiting out a busy primary.
func (c *cycle) site() (syncapi.SiteInfo, error) {
	for {
		info, err := within(c.ctx, c.s.pull, 0, func(ctx context.Context) (syncapi.SiteInfo, error) {
			return c.s.client.Site(ctx)
		})
		if classify(c.ctx, err) != kindBusy {
			if err != nil {
				return info, fmt.Errorf("site: %w", err)
			}
			return info, nil
		}
		if err := c.waitBusy("site", err); err != nil {
			return info, err
		}
	}
}

// maxInitAttempts bounds the POSTs and waits of one cycle's request step.
const maxInitAttempts = 3

// initialise has the primary fill this site's queue, as the reference
// client does (remote_data_synchroniser.rs, request_initialisation): no
// POST while GET site says "started", and when a POST fails on the link
// (it can take long, and the link may drop it) poll site_status until
// idle instead of POSTing again. Unlike the reference, a request that
// cannot have reached the primary (dial, DNS, TLS) ends the cycle instead,
// and after a wait GET site must say "completed" before the pull starts.
func (c *cycle) initialise(is *initState, info syncapi.SiteInfo) error {
	s := c.s
	if err := s.resetForInit(*is); err != nil {
		return err
	}
	for range maxInitAttempts {
		switch {
		case info.InitialisationStatus == syncapi.InitStarted:
			if err := c.sawStarted(is); err != nil {
				return err
			}
			c.res.Initialisation = "waited"
			s.log.Info("the primary is initialising this site; waiting for it", "poll", initPoll)
			if _, err := c.waitIdle("the initialisation", initPoll, initTimeout); err != nil {
				return fmt.Errorf("initialise: %w", err)
			}
		case info.InitialisationStatus == syncapi.InitCompleted && is.SawStarted:
			return c.initialised(is, -1)
		default:
			if is.SawStarted {
				is.SawStarted = false
				if err := s.saveInit(*is); err != nil {
					return err
				}
			}
			n, err := s.client.Initialise(c.ctx)
			switch k := classify(c.ctx, err); {
			case k == kindOK:
				return c.initialised(is, n)
			case k == kindBusy:
				if err := c.waitBusy("initialise", err); err != nil {
					return err
				}
			case k == kindLink && !unreached(err):
				// It may be running on the primary: wait for it, then ask GET site.
				s.log.Warn("initialise failed on the link; waiting for the primary instead of asking again", "err", err)
				c.res.Initialisation = "waited"
				saw, werr := c.waitIdle("the initialisation", initPoll, initTimeout)
				if saw {
					if err := c.sawStarted(is); err != nil {
						return err
					}
				}
				if werr != nil {
					return fmt.Errorf("initialise: %w (then: %w)", err, werr)
				}
			default:
				return fmt.Errorf("initialise: %w", err)
			}
		}
		var err error
		if info, err = c.site(); err != nil {
			return err
		}
	}
	if info.InitialisationStatus == syncapi.InitStarted {
		return fmt.Errorf("initialise: the primary still says the initialisation has started although its site_status is idle; it is not asked again: ask the central team to check this site's initialisation")
	}
	return fmt.Errorf("initialise: not completed after %d attempts; the primary says %q", maxInitAttempts, info.InitialisationStatus)
}

func (c *cycle) sawStarted(is *initState) error {
	if is.SawStarted {
		return nil
	}
	is.SawStarted = true
	return c.s.saveInit(*is)
}

// initialised moves to the pull step: the primary has filled the queue
// (n records, -1 when it was not the answer of our POST).
func (c *cycle) initialised(is *initState, n int) error {
	is.Step, is.SawStarted, is.Queue = stepPull, false, max(n, 0)
	if err := c.s.saveInit(*is); err != nil {
		return err
	}
	if n >= 0 {
		c.res.Initialisation = "requested"
	}
	c.s.log.Info("the primary filled this site's queue", "queue", n, "generation", is.Gen)
	return nil
}

// complete ends a cycle: once everything of a (re-)initialisation has been
// pulled (the pull was not cut by its round cap), the records an older
// generation left behind are removed.
func (c *cycle) complete(is initState) error {
	if is.Step != stepPull || c.res.Truncated {
		return nil
	}
	n, err := c.s.store.SweepOlder(is.Gen)
	c.res.Removed += n
	if err != nil {
		return fmt.Errorf("cannot remove what the previous initialisation left: %w", err)
	}
	is.Step, is.Reason = stepDone, ""
	if err := c.s.saveInit(is); err != nil {
		return err
	}
	c.res.Initialisation = "completed"
	c.s.firstDone()
	c.s.log.Info("initialisation completed", "removed", n, "generation", is.Gen)
	return nil
}
