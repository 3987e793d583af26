package queue

import (
	"bytes"
	"fmt"

	"github.com/tidwall/buntdb"
)

// ApplyResult counts what Apply did.
type ApplyResult struct {
	// Applied counts records now reflected in the datafile (including
	// those that already were: applying twice is harmless).
	Applied int
	// Skipped counts records not applied because the local record has a
	// change waiting to be pushed (local wins; it is pushed next).
	Skipped int
}

// Apply writes records pulled from the primary into the datafile, in order,
// in one commit. Insert and update upsert, delete removes, merge removes
// mergeIdToDelete. A record whose local copy has a pending change is not
// overwritten. Applying the same records again changes nothing, so a
// delivery repeated after a lost acknowledgement is harmless. An invalid
// record refuses the whole batch (nothing applied).
//
// Acknowledge the records (or advance the cursor) only after Apply returned
// nil: after a power cut during the commit, any subset of the batch may be
// present, and the repeated delivery completes it.
func (l *Local) Apply(recs []Record) (ApplyResult, error) {
	norm := make([]Record, len(recs))
	for i, r := range recs {
		n, err := normalize(r)
		if err != nil {
			return ApplyResult{}, fmt.Errorf("cannot apply pulled record %d: %w", i, err)
		}
		norm[i] = n
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var res ApplyResult
	liveDelta := 0
	err := l.update("apply pulled records", func(tx *buntdb.Tx) error {
		res, liveDelta = ApplyResult{}, 0
		for _, r := range norm {
			key := recKey(r.Table, targetID(r))
			old, ok, err := getLocal(tx, key)
			if err != nil {
				return err
			}
			switch {
			case ok && old.Pending != 0:
				res.Skipped++
				continue
			case r.Action == Delete || r.Action == Merge:
				if ok {
					if err := l.delLocal(tx, key); err != nil {
						return err
					}
					liveDelta += liveChange(old, ok, localValue{}, false)
				}
			case ok && old.live() && old.Action == r.Action && bytes.Equal(old.Data, r.Data) && old.Gen >= l.gen:
				// Already there: nothing to write.
			default:
				nv := localValue{Version: old.Version + 1, Gen: l.gen, Action: r.Action, Data: r.Data}
				if err := l.setLocal(tx, key, nv); err != nil {
					return err
				}
				liveDelta += liveChange(old, ok, nv, true)
			}
			res.Applied++
		}
		return nil
	})
	if err != nil {
		return ApplyResult{}, err
	}
	l.count += liveDelta
	return res, nil
}
