package ops

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

const (
	// DefaultDebounce is the quiet time WatchFile waits for after the last
	// event of a burst when it is given a debounce of zero or less.
	DefaultDebounce = 250 * time.Millisecond

	// maxWaitFactor bounds how long a burst that never goes quiet may hold
	// a check back: maxWaitFactor × debounce after its first event.
	maxWaitFactor = 8

	// retryMin and retryMax pace new attempts after a directory could not be
	// watched (inotify limits, a directory removed while being added).
	retryMin = time.Second
	retryMax = 30 * time.Second

	// maxWatchedBytes bounds what one check reads; a prefs file is a few KB.
	maxWatchedBytes = 16 << 20
)

// Watcher reports changes to the content of one file, the prefs file. See
// WatchFile.
type Watcher struct {
	path     string // absolute; may be a symlink
	debounce time.Duration
	log      *slog.Logger
	fsw      *fsnotify.Watcher
	changes  chan struct{}

	// Owned by the goroutine in Run once it has started.
	chain   chain
	present bool     // the file existed and was read at the last check
	sum     [32]byte // SHA-256 of its content then, when present
	problem string   // the last problem logged; "" when all is well

	afterCheck func(checkResult) // tests only: called after every check
}

// checkResult is what one check saw; tests wait on it instead of sleeping.
type checkResult struct {
	present   bool
	sum       [32]byte
	signalled bool
	complete  bool // every directory that matters is watched
}

// WatchFile watches the file at path and sends on the returned channel when
// its content changes, until ctx is done. It is NewWatcher and Run in a
// goroutine. The channel is never closed, so a select on it next to
// ctx.Done() sees nothing after the end.
func WatchFile(ctx context.Context, path string, debounce time.Duration, log *slog.Logger) (<-chan struct{}, error) {
	w, err := NewWatcher(path, debounce, log)
	if err != nil {
		return nil, err
	}
	go func() { _ = w.Run(ctx) }()
	return w.Changes(), nil
}

// NewWatcher starts watching the file at path and reads its current content
// as the baseline; start watching before loading the file, so that an edit in
// between is not lost. Run must be called to deliver changes and release the
// watch.
//
// The watch is on directories, never on the file: the file's directory, and
// for a symlink (or a path through symlinked directories) every directory
// holding a link of the chain and the one the chain resolves into. The chain
// is resolved again after every change, so a swapped symlink or directory is
// followed. Events are debounced (debounce ≤ 0 means DefaultDebounce) and the
// content is compared by SHA-256, so a write that leaves the bytes as they
// were, a touch or a chmod signals nothing. A deleted file signals nothing
// either (the running prefs stay in force); the file appearing again signals,
// whatever its content.
func NewWatcher(path string, debounce time.Duration, log *slog.Logger) (*Watcher, error) {
	if path == "" {
		return nil, errors.New("cannot watch file: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("cannot watch %s: %w", path, err)
	}
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("cannot watch %s: %w", abs, err)
	}
	w := &Watcher{
		path:     abs,
		debounce: debounce,
		log:      log.With("component", "filewatch", "path", abs),
		fsw:      fsw,
		changes:  make(chan struct{}, 1),
	}
	if err := w.reconcile(); err != nil {
		fsw.Close()
		return nil, fmt.Errorf("cannot watch %s: %w", abs, err)
	}
	if sum, err := hashFile(abs); err == nil {
		w.present, w.sum = true, sum
	}
	return w, nil
}

// Changes returns the channel Run signals on. It holds at most one pending
// signal: changes made while the reader is busy coalesce into one. It is never
// closed.
func (w *Watcher) Changes() <-chan struct{} { return w.changes }

// Close releases a watch that Run will not be called for (Run releases its
// own when ctx ends).
func (w *Watcher) Close() error { return w.fsw.Close() }

// Run delivers changes until ctx is done, then releases the watch and returns
// nil. It returns an error only if fsnotify stops on its own. Call it once.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.fsw.Close()

	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()

	var (
		pending    bool      // a debounce is running
		burstStart time.Time // first event of the pending burst
		retryDelay = retryMin
	)
	schedule := func() {
		now := time.Now()
		if !pending {
			pending, burstStart = true, now
		}
		d := min(w.debounce, time.Until(burstStart.Add(maxWaitFactor*w.debounce)))
		debounce.Reset(max(d, 0))
	}
	check := func() {
		if w.check().complete {
			retry.Stop()
			retryDelay = retryMin
			return
		}
		retry.Reset(retryDelay)
		retryDelay = min(2*retryDelay, retryMax)
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return errors.New("file watch ended: fsnotify closed its events")
			}
			if name := filepath.Clean(ev.Name); w.chain.names[name] || w.chain.dirs[name] {
				schedule()
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return errors.New("file watch ended: fsnotify closed its errors")
			}
			// An overflow may have dropped the event that mattered: check.
			w.report(fmt.Errorf("file watch: %w", err))
			schedule()
		case <-debounce.C:
			pending = false
			check()
		case <-retry.C:
			check()
		}
	}
}

// check follows the path again, fixes the watches and compares the content.
func (w *Watcher) check() checkResult {
	res := checkResult{complete: true}
	if err := w.reconcile(); err != nil {
		res.complete = false
		w.report(err)
	}
	sum, err := hashFile(w.path)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		if w.present {
			w.log.Warn("watched file is gone; what was loaded from it stays in force")
		}
		w.present = false
	case err != nil:
		res.complete = false
		w.report(err)
	default:
		res.signalled = !w.present || sum != w.sum
		w.present, w.sum = true, sum
		if res.signalled {
			w.log.Info("watched file changed", "sha256", hex.EncodeToString(sum[:6]))
			select {
			case w.changes <- struct{}{}:
			default: // a signal is already pending; it covers this one
			}
		}
	}
	if res.complete && w.problem != "" {
		w.log.Info("watching the file works again")
		w.problem = ""
	}
	res.present, res.sum = w.present, w.sum
	if w.afterCheck != nil {
		w.afterCheck(res)
	}
	return res
}

// reconcile resolves the path and makes the watched directories match: adds
// the ones its chain needs (again: a directory replaced at the same path needs
// a new watch) and drops the rest.
func (w *Watcher) reconcile() error {
	c, err := resolveChain(w.path)
	if err != nil {
		return err // keep the old watches: they still see the chain change
	}
	w.chain = c
	var errs []error
	for dir := range c.dirs {
		if err := w.fsw.Add(dir); err != nil {
			errs = append(errs, fmt.Errorf("cannot watch directory %s: %w", dir, err))
		}
	}
	for _, dir := range w.fsw.WatchList() {
		if !c.dirs[dir] {
			_ = w.fsw.Remove(dir) // it may be gone already
		}
	}
	return errors.Join(errs...)
}

// report logs a problem once, until a check finds everything well again.
func (w *Watcher) report(err error) {
	msg := err.Error()
	if msg == w.problem {
		return
	}
	w.problem = msg
	w.log.Warn("problem watching file; retrying", "err", err)
}

// hashFile returns the SHA-256 of the regular file at path. It opens the
// file as ReadRegular does, so a FIFO or a device at the path is refused
// instead of wedging the watch.
func hashFile(path string) ([32]byte, error) {
	var sum [32]byte
	f, _, err := OpenRegular(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, maxWatchedBytes)); err != nil {
		return sum, fmt.Errorf("cannot read %s: %w", path, err)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}
