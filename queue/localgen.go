package queue

import (
	"strings"

	"github.com/tidwall/buntdb"
)

// Generations let a satellite re-initialise cleanly. Every rec: key carries
// the generation the datafile was in when the key was last written by a
// local write, an apply of a pulled record, or a push that cleared it. A
// re-initialisation raises the generation (SetGeneration) before it asks the
// primary for everything the site should hold; once all of that has been
// pulled, SweepOlder removes what an older generation left behind and was
// not delivered again: another site's leftovers after a sync_id change, the
// records of a store no longer active here, rows the primary deleted while
// this site was away.

// Generation is the datafile's current generation (0 until the first
// SetGeneration).
func (l *Local) Generation() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.gen
}

// SetGeneration raises the datafile's generation to g, in its own commit;
// a g at or below the current one changes nothing, so a re-initialisation
// resumed after a crash can call it again.
func (l *Local) SetGeneration(g uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if g <= l.gen {
		return nil
	}
	if err := l.update("set generation", func(tx *buntdb.Tx) error {
		_, _, err := tx.Set(genKey, formatUint(g), nil)
		return err
	}); err != nil {
		return err
	}
	l.gen = g
	return nil
}

// SweepOlder removes every record last written in a generation older than
// gen that has no change waiting to be pushed, committing in batches so app
// writes interleave, and returns how many records it removed. A record
// written meanwhile carries the current generation and stays. Calling it
// again (after a crash) finishes the job.
func (l *Local) SweepOlder(gen uint64) (int, error) {
	const batch, scanPerLock = 500, 5000
	total := 0
	pivot := recPrefix
	for done := false; !done; {
		n, next, end, err := l.sweepBatch(gen, pivot, batch, scanPerLock)
		total += n
		if err != nil {
			return total, err
		}
		pivot, done = next, end
	}
	if total > 0 {
		l.log.Info("removed records an older generation left behind", "count", total, "generation", gen)
	}
	return total, nil
}

func (l *Local) sweepBatch(gen uint64, pivot string, batch, scan int) (int, string, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	stale := func(v localValue) bool { return v.Gen < gen && v.Pending == 0 }
	var keys []string
	next, end, seen := "", true, 0
	err := l.view(func(tx *buntdb.Tx) error {
		return tx.AscendGreaterOrEqual("", pivot, func(k, s string) bool {
			if !strings.HasPrefix(k, recPrefix) {
				return false
			}
			if seen >= scan || len(keys) >= batch {
				next, end = k, false
				return false
			}
			seen++
			if v, err := decodeLocal(s); err == nil && stale(v) {
				keys = append(keys, k)
			}
			return true
		})
	})
	if err != nil || len(keys) == 0 {
		return 0, next, end, err
	}
	removed, liveDelta := 0, 0
	err = l.update("sweep older generation", func(tx *buntdb.Tx) error {
		removed, liveDelta = 0, 0
		for _, k := range keys {
			v, ok, err := getLocal(tx, k)
			if err != nil {
				return err
			}
			if !ok || !stale(v) {
				continue
			}
			if err := l.delLocal(tx, k); err != nil {
				return err
			}
			removed++
			liveDelta += liveChange(v, true, localValue{}, false)
		}
		return nil
	})
	if err != nil {
		return 0, next, end, err
	}
	l.count += liveDelta
	return removed, next, end, nil
}
