package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Ledger checks a run of new records (Config.Distinct) end to end: every
// record a primary accepted must reach every other site of its store, and
// none may come again once its site acknowledged it. Come again before the
// acknowledgement was answered is allowed (delivery is at least once; a
// satellite applies idempotently): that is counted apart.
type Ledger struct {
	mu       sync.Mutex
	sites    map[string][]int        // store → its sites
	accepted map[string]acceptedBy   // record → who pushed it
	acked    map[int]map[string]bool // site → records it acknowledged
	again    int                     // deliveries of a record its site had already acknowledged
}

type acceptedBy struct {
	site  int
	store string
}

// NewLedger makes a ledger for these sites.
func NewLedger(sites []*Site) *Ledger {
	l := &Ledger{sites: map[string][]int{}, accepted: map[string]acceptedBy{}, acked: map[int]map[string]bool{}}
	for _, s := range sites {
		for _, st := range s.Stores {
			l.sites[st] = append(l.sites[st], s.ID)
		}
		l.acked[s.ID] = map[string]bool{}
	}
	return l
}

func (l *Ledger) noteAccepted(site int, store, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.accepted[id] = acceptedBy{site: site, store: store}
}

// noteAcked notes that site s acknowledged record id (its acknowledgement was
// answered 200).
func (l *Ledger) noteAcked(s *Site, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.acked[s.ID][id] {
		l.again++
	}
	l.acked[s.ID][id] = true
}

// Verdict is what Check found.
type Verdict struct {
	Accepted   int      // records accepted
	Deliveries int      // (record, receiving site) pairs expected
	Lost       int      // of those, never acknowledged by the receiver
	Duplicated int      // records delivered again after their site acknowledged them
	Examples   []string // a few lost records
}

// Check compares what was accepted with what each site acknowledged. Run
// Drain first.
func (l *Ledger) Check() Verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := Verdict{Accepted: len(l.accepted), Duplicated: l.again}
	ids := make([]string, 0, len(l.accepted))
	for id := range l.accepted {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		a := l.accepted[id]
		for _, to := range l.sites[a.store] {
			if to == a.site {
				continue
			}
			v.Deliveries++
			if !l.acked[to][id] {
				v.Lost++
				if len(v.Examples) < 5 {
					v.Examples = append(v.Examples, fmt.Sprintf("%s (from site %d) never reached site %d", id, a.site, to))
				}
			}
		}
	}
	return v
}

// Drain pulls and acknowledges every site's queue until it is empty, with
// a few sites at a time; it returns the first error that outlived its
// retries.
func Drain(ctx context.Context, cfg Config) error {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 25 * time.Second
	}
	r := &run{cfg: cfg, latency: map[string][]time.Duration{}, errors: map[string]int{},
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute}}}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, s := range cfg.Sites {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for tries := 0; ; {
				n, err := r.pullQueue(ctx, s)
				if err != nil {
					if tries++; tries < 5 && ctx.Err() == nil {
						time.Sleep(time.Second)
						continue
					}
					mu.Lock()
					first = firstOf(first, fmt.Errorf("drain site %d: %w", s.ID, err))
					mu.Unlock()
					return
				}
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

func firstOf(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
