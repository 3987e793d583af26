package unlock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Ledger is the box's memory of unlock codes, kept in a small JSON file in
// the state dir: per key number, the last sequence number used; the latest
// time the box trusts has passed (the newest of redeemed codes' issue times
// and of clock readings passed to Observe or seen at redemption); and the
// last code redeemed and the last window opened, for `syncagent status` and
// to restore an open window after a restart.
//
// Every write is write-temp, fsync, rename, fsync the directory, so a power
// cut leaves either the old file or the new one. A Ledger is safe for
// concurrent use; one process owns the file.
type Ledger struct {
	path string

	mu               sync.Mutex
	state            ledgerState // guarded by mu; always what is on disk, except Trusted may run ahead (see Observe)
	persistedTrusted time.Time   // guarded by mu
}

// ledgerFormat is the version of the file; a file of another version is an error.
const ledgerFormat = 1

// maxLedgerSize bounds the file OpenLedger reads; a real one is under 1 KiB.
const maxLedgerSize = 64 << 10

// observePersistEvery is how far Observe must advance the trusted time before
// it writes the file: a clock reading every few seconds must not wear out a
// clinic box's flash. A restart loses at most this much of the trusted time.
const observePersistEvery = time.Hour

// ledgerState is the file's content.
type ledgerState struct {
	Format  int               `json:"format"`
	Trusted time.Time         `json:"trusted_time,omitzero"`
	Keys    map[int]keyRecord `json:"keys,omitempty"`
	Last    *redemptionRecord `json:"last,omitempty"`
	Window  *redemptionRecord `json:"window,omitempty"`
}

type keyRecord struct {
	LastSeq uint32    `json:"last_seq"`
	UsedAt  time.Time `json:"used_at"`
}

type redemptionRecord struct {
	Key    int       `json:"key"`
	Seq    uint32    `json:"seq"`
	Scope  string    `json:"scope"`
	Issued time.Time `json:"issued"`
	Expiry time.Time `json:"expiry"`
	UsedAt time.Time `json:"used_at"`
}

func (r *redemptionRecord) grant() (Grant, error) {
	g := Grant{KeyNumber: r.Key, Seq: r.Seq, Issued: r.Issued, Expiry: r.Expiry}
	switch r.Scope {
	case ScopeChange.String():
		g.Scope = ScopeChange
	case ScopeWindow.String():
		g.Scope = ScopeWindow
	default:
		return Grant{}, fmt.Errorf("unknown scope %q", r.Scope)
	}
	if r.Key < 0 || r.Key >= MaxKeys {
		return Grant{}, fmt.Errorf("key number %d is out of range", r.Key)
	}
	return g, nil
}

// OpenLedger reads the ledger at path. A missing file is a fresh box's empty
// ledger (the file is created on the first write; its directory must exist).
// A damaged file is an error: silently starting over would let used codes
// be replayed.
func OpenLedger(path string) (*Ledger, error) {
	l := &Ledger{path: path, state: ledgerState{Format: ledgerFormat}}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot open unlock ledger: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxLedgerSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read unlock ledger %s: %w", path, err)
	}
	if len(data) > maxLedgerSize {
		return nil, fmt.Errorf("cannot read unlock ledger %s: larger than %d bytes", path, maxLedgerSize)
	}
	st, err := decodeLedger(data)
	if err != nil {
		return nil, fmt.Errorf("cannot read unlock ledger %s: %w", path, err)
	}
	l.state, l.persistedTrusted = st, st.Trusted
	return l, nil
}

func decodeLedger(data []byte) (ledgerState, error) {
	var st ledgerState
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return ledgerState{}, err
	}
	if dec.More() {
		return ledgerState{}, errors.New("trailing data after the JSON object")
	}
	if st.Format != ledgerFormat {
		return ledgerState{}, fmt.Errorf("format %d, this syncagent reads format %d", st.Format, ledgerFormat)
	}
	for k := range st.Keys {
		if k < 0 || k >= MaxKeys {
			return ledgerState{}, fmt.Errorf("key number %d is out of range", k)
		}
	}
	for _, r := range []*redemptionRecord{st.Last, st.Window} {
		if r == nil {
			continue
		}
		if _, err := r.grant(); err != nil {
			return ledgerState{}, err
		}
	}
	return st, nil
}

// Observe records a clock reading the box trusts (the daemon calls it with
// the wall clock, ideally once the clock is known to be synchronised). A
// reading later than the trusted time advances it; the file is written when
// it has advanced by an hour or more since the last write. A reading more
// than ClockTolerance earlier than the trusted time is not recorded and is
// returned as an ErrClockBehind error, for the daemon to show in its status.
func (l *Ledger) Observe(now time.Time) error {
	now = now.Round(0) // compare wall clocks: the point is to catch the wall clock being set back
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := clockBehind(now, l.state.Trusted); err != nil {
		return err
	}
	if !now.After(l.state.Trusted) {
		return nil
	}
	l.state.Trusted = now
	if !l.persistedTrusted.IsZero() && now.Sub(l.persistedTrusted) < observePersistEvery {
		return nil
	}
	return l.writeLocked(l.state)
}

// snapshot returns the trusted time and the last sequence used for key.
func (l *Ledger) snapshot(key int) (trusted time.Time, lastSeq uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state.Trusted, l.state.Keys[key].LastSeq
}

// spend records a verified grant, redeemed at now, durably. It re-checks the
// sequence number under the lock, so of two concurrent redemptions of one
// code exactly one succeeds.
func (l *Ledger) spend(g Grant, now time.Time) error {
	return l.redeem(g, now, func(next *ledgerState, rec *redemptionRecord) {
		for _, t := range []time.Time{now, g.Issued} {
			if t.After(next.Trusted) {
				next.Trusted = t
			}
		}
		if g.Scope == ScopeWindow {
			next.Window = rec
		}
	})
}

// resetTrusted records a verified clock-reset grant: its sequence is spent
// and the trusted time becomes now, even though that is earlier.
func (l *Ledger) resetTrusted(g Grant, now time.Time) error {
	return l.redeem(g, now, func(next *ledgerState, _ *redemptionRecord) {
		next.Trusted = now.Round(0).UTC()
	})
}

// redeem spends g's sequence number under the lock (refusing one already
// used), records it as the last redemption, lets apply change the rest of
// the next state, and writes that durably.
func (l *Ledger) redeem(g Grant, now time.Time, apply func(next *ledgerState, rec *redemptionRecord)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := used(g.KeyNumber, g.Seq, l.state.Keys[g.KeyNumber].LastSeq); err != nil {
		return err
	}
	next := l.state
	next.Keys = make(map[int]keyRecord, len(l.state.Keys)+1)
	for k, r := range l.state.Keys {
		next.Keys[k] = r
	}
	next.Keys[g.KeyNumber] = keyRecord{LastSeq: g.Seq, UsedAt: now.UTC()}
	rec := &redemptionRecord{Key: g.KeyNumber, Seq: g.Seq, Scope: g.Scope.String(), Issued: g.Issued, Expiry: g.Expiry, UsedAt: now.UTC()}
	next.Last = rec
	apply(&next, rec)
	return l.writeLocked(next)
}

// writeLocked writes st to disk and, once it is durable, makes it the
// in-memory state. The caller holds l.mu.
func (l *Ledger) writeLocked(st ledgerState) error {
	st.Trusted = st.Trusted.UTC()
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("cannot write unlock ledger: %w", err)
	}
	if err := writeFileDurable(l.path, append(data, '\n')); err != nil {
		return fmt.Errorf("cannot write unlock ledger: %w", err)
	}
	l.state, l.persistedTrusted = st, st.Trusted
	return nil
}

// writeFileDurable replaces path with data so that a power cut leaves the
// old or the new content: write a temporary file in the same directory,
// fsync it, rename it over path, fsync the directory.
func writeFileDurable(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// LedgerStatus is what `syncagent status` shows about unlock codes.
type LedgerStatus struct {
	// Last is the last code redeemed (its key number and sequence), nil on
	// a box that never redeemed one.
	Last *Grant
	// LastUsedAt is when Last was redeemed, by the box's clock.
	LastUsedAt time.Time
	// Trusted is the latest time the box knows has passed.
	Trusted time.Time
}

// Status returns the last code redeemed and the trusted time.
func (l *Ledger) Status() LedgerStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := LedgerStatus{Trusted: l.state.Trusted}
	if r := l.state.Last; r != nil {
		g, _ := r.grant() // validated when read or written
		s.Last, s.LastUsedAt = &g, r.UsedAt
	}
	return s
}

// LastSeq returns the last sequence number used for a vendor key, 0 if none.
func (l *Ledger) LastSeq(key int) uint32 {
	_, seq := l.snapshot(key)
	return seq
}

// Window returns the last window code redeemed if it keeps the window open
// at now and the clock is not behind: what the daemon restores after a
// restart, since the code itself cannot be redeemed twice.
func (l *Ledger) Window(now time.Time) (Grant, bool) {
	now = now.Round(0)
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.state.Window
	if r == nil || clockBehind(now, l.state.Trusted) != nil {
		return Grant{}, false
	}
	g, err := r.grant()
	if err != nil || !g.Covers(now) {
		return Grant{}, false
	}
	return g, true
}
