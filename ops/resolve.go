package ops

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxSymlinks bounds a symlink chain, as the kernel's MAXSYMLINKS does.
const maxSymlinks = 40

// chain says which directory entries decide what a path resolves to and
// contains: every symlink met on the way, and the file it ends at. Watching
// the directories that hold them catches every way the path can change: a
// write in place, a rename over the file, a swapped symlink, or a swapped
// symlinked directory (the Kubernetes ConfigMap "..data" swap).
type chain struct {
	dirs  map[string]bool // real directories to watch
	names map[string]bool // entries in those directories whose events matter
}

// resolveChain walks path component by component as the kernel would and
// returns its chain. A missing component ends the walk: its directory is
// watched so that the entry appearing is noticed. Every returned path is
// absolute, clean and free of symlinks, as fsnotify reports event names.
func resolveChain(path string) (chain, error) {
	c := chain{dirs: map[string]bool{}, names: map[string]bool{}}
	abs, err := filepath.Abs(path)
	if err != nil {
		return c, fmt.Errorf("cannot resolve %s: %w", path, err)
	}
	resolved := string(filepath.Separator) // a real directory so far
	rest := splitPath(abs)
	links := 0
	for len(rest) > 0 {
		comp := rest[0]
		rest = rest[1:]
		switch comp {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved)
			continue
		}
		next := filepath.Join(resolved, comp)
		fi, err := os.Lstat(next)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Wait for next to appear in the deepest directory that exists.
			c.dirs[resolved] = true
			c.names[next] = true
			return c, nil
		case errors.Is(err, syscall.ENOTDIR):
			// resolved is a file where a directory should be.
			c.dirs[filepath.Dir(resolved)] = true
			c.names[resolved] = true
			return c, nil
		case err != nil:
			return c, fmt.Errorf("cannot resolve %s: %w", path, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		links++
		if links > maxSymlinks {
			return c, fmt.Errorf("cannot resolve %s: too many levels of symbolic links", path)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return c, fmt.Errorf("cannot resolve %s: %w", path, err)
		}
		c.dirs[resolved] = true
		c.names[next] = true
		if filepath.IsAbs(target) {
			resolved = string(filepath.Separator)
		}
		rest = append(splitPath(target), rest...)
	}
	c.dirs[filepath.Dir(resolved)] = true
	c.names[resolved] = true
	return c, nil
}

func splitPath(p string) []string {
	return strings.Split(p, string(filepath.Separator))
}
