package satellite

import (
	"time"

	"syncagent/queue"
)

// FirstSync is a first sync on its way (the pull of an initialisation:
// central data and this site's filled queue), for `syncagent status`,
// STATUS= and `syncagent sync --progress`. It counts from this process's
// start: after a restart the pull resumes where it stopped (cursor and
// acknowledged pages are durable) and the count starts again from there.
type FirstSync struct {
	Started time.Time // the first page of this process
	Done    int       // records pulled
	Total   int       // Done plus what the primary says is left (0: not known yet)
	Bytes   int64     // record data pulled
	Rate    float64   // records per second while pulling (acknowledgements included, waits between cycles left out)
	Left    time.Duration
}

// firstSync is the tracker behind FirstSync; guarded by Satellite.mu.
type firstSync struct {
	started     time.Time
	done        int
	bytes       int64
	active      time.Duration  // time spent in the pulls of cycles that ended
	pulling     time.Time      // when the pull in progress started (zero: none)
	centralLeft int            // records left by cursor (-1: no central page yet)
	queueLeft   int            // records left in the queue (-1: not known)
	recent      []progressMark // the pages of the last rateWindow of pulling
}

// progressMark is where a first sync stood after a page: pulling time and
// records done.
type progressMark struct {
	active time.Duration
	done   int
}

// rateWindow is the pulling time the rate is measured over: the last
// minute, not the whole pull (its first pages are small while the sizer
// learns the link, and would make the time left too long for long).
const rateWindow = time.Minute

func (f *firstSync) snapshot(now time.Time) *FirstSync {
	out := &FirstSync{Started: f.started, Done: f.done, Bytes: f.bytes}
	// The rate is that of the pages done in the window, and the time left
	// counts down while a page is on its way (a page on a slow link takes
	// many seconds; taking its time without its records would make the
	// time left jump up and down).
	var from, last progressMark
	if n := len(f.recent); n > 0 {
		last = f.recent[n-1]
		if n > 1 {
			from = f.recent[0]
		}
	}
	if d := last.active - from.active; d > 0 {
		out.Rate = float64(last.done-from.done) / d.Seconds()
	}
	if f.centralLeft >= 0 && f.queueLeft >= 0 {
		left := f.centralLeft + f.queueLeft
		out.Total = f.done + left
		if out.Rate > 0 && left > 0 {
			eta := time.Duration(float64(left)/out.Rate*float64(time.Second)) - (f.activeAt(now) - last.active)
			out.Left = max(eta, time.Second).Round(time.Second)
		}
	}
	return out
}

func (f *firstSync) activeAt(now time.Time) time.Duration {
	if f.pulling.IsZero() {
		return f.active
	}
	return f.active + now.Sub(f.pulling)
}

// trackFirst starts (or goes on with) the progress of an initialisation's
// pull; queue is what the primary said it queued (-1 not known).
func (s *Satellite) trackFirst(queue int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first == nil {
		s.first = &firstSync{started: s.clock.Now(), centralLeft: -1, queueLeft: queue}
	}
}

// firstPulling marks the start (on) or end of a cycle's pull of the first
// sync: the rate counts the time in pulls, every request of them included.
func (s *Satellite) firstPulling(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.first
	if f == nil {
		return
	}
	now := s.clock.Now()
	if !f.pulling.IsZero() {
		f.active += now.Sub(f.pulling)
		f.pulling = time.Time{}
	}
	if on {
		f.pulling = now
	}
}

// firstPage counts a page of the first sync: n records of bytes data;
// left updates what remains (central by cursor, or queue).
func (s *Satellite) firstPage(n int, bytes int64, central bool, left int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.first
	if f == nil {
		return
	}
	f.done, f.bytes = f.done+n, f.bytes+bytes
	mark := progressMark{f.activeAt(s.clock.Now()), f.done}
	f.recent = append(f.recent, mark)
	for len(f.recent) > 2 && mark.active-f.recent[1].active >= rateWindow {
		f.recent = f.recent[1:] // keep one mark at or before the window's start
	}
	if central {
		f.centralLeft = max(left, 0)
	} else {
		f.queueLeft, f.centralLeft = max(left, 0), max(f.centralLeft, 0)
	}
}

// firstDone ends the progress: the initialisation completed.
func (s *Satellite) firstDone() {
	s.mu.Lock()
	s.first = nil
	s.mu.Unlock()
}

func dataBytes(recs []queue.Record) int64 {
	var n int64
	for _, r := range recs {
		n += int64(len(r.Data))
	}
	return n
}
