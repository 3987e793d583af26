package queue

import (
	"errors"
	"fmt"
	"syscall"
)

// Errors a caller can test with errors.Is. The returned errors wrap them with
// the details (which site, which record, which file).
var (
	// ErrOutboxFull refuses a local write that would add an outbox entry while
	// the outbox already holds LocalOptions.OutboxMax entries.
	ErrOutboxFull = errors.New("outbox is full")
	// ErrQueueFull refuses a push or a primary write that would grow a site's
	// queue past CentralOptions.QueueMax.
	ErrQueueFull = errors.New("site queue is full")
	// ErrDiskFull wraps a write refused by the file system for lack of space
	// (ENOSPC, EDQUOT, EFBIG). Nothing was written; retrying after space
	// returns succeeds.
	ErrDiskFull = errors.New("no space left for the datafile")
	// ErrHardwareMismatch refuses a site presenting a hardware ID other than
	// the one pinned on its first contact.
	ErrHardwareMismatch = errors.New("hardware ID mismatch")
	// ErrInvalidRecord wraps a write refused for what the record is (no
	// table, data that is not a JSON object, …): the caller's to fix.
	ErrInvalidRecord = errors.New("cannot write record")
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("queue is closed")
	// ErrNotFound is returned for a named thing that does not exist (an
	// aside entry, a site).
	ErrNotFound = errors.New("not found")
)

// storageError wraps an error from the datafile, adding ErrDiskFull when the
// cause is a full disk, so a caller can tell "free space" from "broken".
func storageError(what string, err error) error {
	if err == nil {
		return nil
	}
	if isDiskFull(err) {
		return fmt.Errorf("%s: %w: %w", what, ErrDiskFull, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG)
}
