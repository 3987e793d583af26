//go:build unix

package queue

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock on <path>.lock (not the datafile
// itself: compaction replaces the datafile's inode), so a second process
// cannot append to the same file. The lock lives as long as the returned
// file.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot create lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("datafile %s is in use by another process (is the agent already running?)", path)
		}
		return nil, fmt.Errorf("cannot lock datafile: %w", err)
	}
	return f, nil
}
