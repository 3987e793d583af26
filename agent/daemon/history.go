package daemon

import (
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"syncagent/agent/control"
	"syncagent/queue"
)

// historyMeta is the datafile meta blob that keeps a satellite's recent
// cycles and its last success, last failure and last contact across
// restarts: one key, so it changes as one unit.
const historyMeta = "agent.history"

// maxHistory bounds the cycles kept: about 8 KiB of datafile, rewritten
// once a cycle.
const maxHistory = 32

// history is a satellite's record of its cycles. Writes come from the cycle
// goroutine; reads from anywhere.
type history struct {
	local *queue.Local
	log   *slog.Logger

	mu     sync.Mutex
	kept   historyLog // guarded by mu
	warned bool       // a failed save was logged; guarded by mu
}

// historyLog is the stored form; its field names are the datafile's, not the
// local API's.
type historyLog struct {
	LastSuccess  time.Time      `json:"ok,omitzero"`
	LastFailure  *historyCycle  `json:"fail,omitempty"`
	FailingSince time.Time      `json:"failing_since,omitzero"`
	LastContact  time.Time      `json:"contact,omitzero"`
	Cycles       []historyCycle `json:"cycles,omitempty"` // newest first
}

type historyCycle struct {
	Kind      string    `json:"k"`
	Started   time.Time `json:"s"`
	Finished  time.Time `json:"f"`
	Pushed    int       `json:"push,omitempty"`
	SetAside  int       `json:"aside,omitempty"`
	Pulled    int       `json:"pull,omitempty"`
	Applied   int       `json:"applied,omitempty"`
	LocalWins int       `json:"wins,omitempty"`
	Invalid   int       `json:"invalid,omitempty"`
	Error     string    `json:"err,omitempty"`
	Advice    string    `json:"advice,omitempty"`
	Refused   bool      `json:"refused,omitempty"`
	Truncated bool      `json:"cut,omitempty"`
	Busy      bool      `json:"busy,omitempty"`
	Notes     []string  `json:"notes,omitempty"`
}

func fromCycle(c control.Cycle) historyCycle {
	return historyCycle{Kind: c.Kind, Started: c.Started, Finished: c.Finished, Pushed: c.Pushed, SetAside: c.SetAside, Pulled: c.Pulled,
		Applied: c.Applied, LocalWins: c.LocalWins, Invalid: c.Invalid, Error: c.Error, Advice: c.Advice, Refused: c.Refused, Truncated: c.Truncated,
		Busy: c.Busy, Notes: c.Notes}
}

func (h historyCycle) cycle() control.Cycle {
	return control.Cycle{Kind: h.Kind, Started: h.Started, Finished: h.Finished, Pushed: h.Pushed, SetAside: h.SetAside, Pulled: h.Pulled,
		Applied: h.Applied, LocalWins: h.LocalWins, Invalid: h.Invalid, Error: h.Error, Advice: h.Advice, Refused: h.Refused, Truncated: h.Truncated,
		Busy: h.Busy, Notes: h.Notes}
}

// openHistory reads what the datafile kept; a damaged blob starts afresh.
func openHistory(local *queue.Local, log *slog.Logger) *history {
	h := &history{local: local, log: log}
	b, ok, err := local.Meta(historyMeta)
	if err == nil && ok {
		if err := json.Unmarshal(b, &h.kept); err != nil {
			log.Warn("the kept sync history is unreadable; starting a new one", "err", err)
			h.kept = historyLog{}
		}
	}
	return h
}

// record adds a finished cycle and saves the history.
func (h *history) record(c control.Cycle, contact bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := &h.kept
	if c.Error == "" {
		l.LastSuccess, l.FailingSince = c.Finished, time.Time{}
	} else {
		hc := fromCycle(c)
		l.LastFailure = &hc
		if l.FailingSince.IsZero() {
			l.FailingSince = c.Finished
		}
	}
	if contact {
		l.LastContact = c.Finished
	}
	l.Cycles = append([]historyCycle{fromCycle(c)}, l.Cycles...)
	if len(l.Cycles) > maxHistory {
		l.Cycles = l.Cycles[:maxHistory]
	}
	h.saveLocked()
}

// contact records that the primary answered at t (a check).
func (h *history) contact(t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t.After(h.kept.LastContact) {
		h.kept.LastContact = t
		h.saveLocked()
	}
}

func (h *history) saveLocked() {
	b, err := json.Marshal(h.kept)
	if err == nil {
		err = h.local.SetMeta(historyMeta, b)
	}
	switch {
	case err != nil && !h.warned:
		h.warned = true
		h.log.Warn("cannot keep the sync history in the datafile; status shows it until a restart", "err", err)
	case err == nil:
		h.warned = false
	}
}

// summary is what status shows.
type summary struct {
	last         *control.Cycle
	lastSuccess  time.Time
	lastFailure  *control.Cycle
	failingSince time.Time
	lastContact  time.Time
}

func (h *history) summary() summary {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.kept
	s := summary{lastSuccess: l.LastSuccess, failingSince: l.FailingSince, lastContact: l.LastContact}
	if len(l.Cycles) > 0 {
		c := l.Cycles[0].cycle()
		s.last = &c
	}
	if l.LastFailure != nil {
		c := l.LastFailure.cycle()
		s.lastFailure = &c
	}
	return s
}

// cycles lists the kept cycles, newest first.
func (h *history) cycles() []control.Cycle {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]control.Cycle, 0, len(h.kept.Cycles))
	for _, c := range h.kept.Cycles {
		out = append(out, c.cycle())
	}
	return out
}
