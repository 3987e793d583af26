package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// datafileGuard notices a datafile deleted (or replaced) under the running
// agent. BuntDB keeps writing to the file it has open, so writes would be
// accepted and then vanish at the next start. The guard compares the file
// at the datafile's path with the files this process has open, before every
// write and at every heartbeat; once the file is gone, writes are refused
// and the agent exits for systemd to start it again on a fresh datafile.
type datafileGuard struct {
	path  string
	gone  func(error) // told once, when the file is found gone
	delay time.Duration

	mu     sync.Mutex
	dev    uint64 // of the file at path when last found open; guarded by mu
	ino    uint64 // guarded by mu
	failed error  // guarded by mu
}

// newDatafileGuard starts guarding path, which must be open already.
func newDatafileGuard(path string, gone func(error)) *datafileGuard {
	g := &datafileGuard{path: path, gone: gone, delay: 100 * time.Millisecond}
	if st, err := statID(path); err == nil {
		g.dev, g.ino = st.Dev, st.Ino
	}
	return g
}

// check returns an error once the datafile is gone.
func (g *datafileGuard) check() error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failed != nil {
		return g.failed
	}
	st, err := statID(g.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return g.failLocked(fmt.Errorf("the datafile %s was deleted under the running agent; the agent exits so that it is started again on a fresh datafile", g.path))
	case err != nil:
		return nil // cannot tell; the write itself will say
	case st.Dev == g.dev && st.Ino == g.ino:
		return nil
	}
	// Another file at the path. BuntDB's compaction renames a rewritten
	// file over the datafile and reopens it: that file is open here (after
	// a moment, if the check fell between the rename and the reopen).
	for try := 0; try < 2; try++ {
		if open, known := isOpen(st.Dev, st.Ino); open || !known {
			g.dev, g.ino = st.Dev, st.Ino
			return nil
		}
		time.Sleep(g.delay)
		if st, err = statID(g.path); err != nil {
			break
		}
	}
	return g.failLocked(fmt.Errorf("the datafile %s was replaced under the running agent (the file there is not the one it writes); the agent exits so that it is started again", g.path))
}

func (g *datafileGuard) failLocked(err error) error {
	g.failed = err
	if g.gone != nil {
		go g.gone(err)
	}
	return err
}

func statID(path string) (*syscall.Stat_t, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, errors.New("no inode")
	}
	return st, nil
}

// isOpen reports whether this process has the file (dev, ino) open; known
// is false when /proc cannot tell.
func isOpen(dev, ino uint64) (open, known bool) {
	const fds = "/proc/self/fd"
	entries, err := os.ReadDir(fds)
	if err != nil {
		return false, false
	}
	for _, e := range entries {
		if st, err := statID(filepath.Join(fds, e.Name())); err == nil && st.Dev == dev && st.Ino == ino {
			return true, true
		}
	}
	return false, true
}
