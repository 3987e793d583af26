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
	Rate    float64   // records per second of pulling (waits between cycles left out)
	Left    time.Duration
}

// firstSync is the tracker behind FirstSync; guarded by Satellite.mu.
type firstSync struct {
	started     time.Time
	done        int
	bytes       int64
	active      time.Duration // time spent pulling pages
	centralLeft int           // records left by cursor (-1: no central page yet)
	queueLeft   int           // records left in the queue (-1: not known)
}

func (f *firstSync) snapshot() *FirstSync {
	out := &FirstSync{Started: f.started, Done: f.done, Bytes: f.bytes}
	if f.active > 0 {
		out.Rate = float64(f.done) / f.active.Seconds()
	}
	if f.centralLeft >= 0 && f.queueLeft >= 0 {
		left := f.centralLeft + f.queueLeft
		out.Total = f.done + left
		if out.Rate > 0 {
			out.Left = time.Duration(float64(left) / out.Rate * float64(time.Second)).Round(time.Second)
		}
	}
	return out
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

// firstPage counts a page of the first sync: n records of bytes data,
// pulled in d; left updates what remains (central by cursor, or queue).
func (s *Satellite) firstPage(n int, bytes int64, d time.Duration, central bool, left int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.first
	if f == nil {
		return
	}
	f.done, f.bytes, f.active = f.done+n, f.bytes+bytes, f.active+d
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
