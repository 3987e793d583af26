package queue

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// repair is what prepareFile did to a datafile before buntdb loaded it.
type repair struct {
	// salvage holds the live items read from a file that is corrupt in the
	// middle (nil otherwise). Such a file must not be loaded: the caller
	// builds a fresh one from salvage with rebuildFile.
	salvage map[string]item
	// movedTo is where a copy of the damaged original went ("" if none).
	movedTo string
	// cut counts the bytes dropped.
	cut int64
}

// item is a key's value and expiry, as replayed from a file.
type item struct {
	value string
	exat  time.Time // zero: no expiry
}

const salvageSuffix = ".salvage"

// prepareFile makes the datafile at path safe for buntdb to load:
//
//   - a tail torn mid-command (a power cut during a commit) is cut off;
//   - a tail of garbage or NUL bytes is cut off after the original has been
//     copied to <path>.corrupt-<time>;
//   - a file with bad bytes followed by good commands (corrupt in the middle)
//     is copied to <path>.corrupt-<time> and its readable items are returned
//     in repair.salvage; the file itself is left for rebuildFile to replace.
//
// Leftover compaction and salvage temp files are removed.
func prepareFile(path string, log *slog.Logger) (repair, error) {
	var rep repair
	for _, tmp := range []string{path + compactSuffix, path + salvageSuffix} {
		if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
			return rep, fmt.Errorf("cannot remove leftover temp file: %w", err)
		}
	}
	scan, err := scanFile(path, nil)
	if err != nil {
		return rep, fmt.Errorf("cannot read datafile: %w", err)
	}
	switch {
	case scan.clean():
		return rep, nil
	case scan.middle:
		return salvageFile(path, scan, nil, log)
	case scan.badAt < 0: // torn tail only: the expected result of a power cut
		log.Info("datafile ended inside a commit (power cut?); cutting the torn tail",
			"path", path, "size", scan.size, "keep", scan.goodEnd, "cut_bytes", scan.size-scan.goodEnd)
	default: // garbage after the last good command
		backup, err := copyAside(path)
		if err != nil {
			// Keeping the agent running matters more than the forensic copy.
			log.Error("cannot copy damaged datafile aside; cutting its tail anyway", "path", path, "err", err)
		}
		log.Warn("datafile has bad bytes after its last good command; cutting them",
			"path", path, "size", scan.size, "keep", scan.goodEnd, "bad_at", scan.badAt,
			"cut_bytes", scan.size-scan.goodEnd, "original", backup)
		rep.movedTo = backup
	}
	rep.cut = scan.size - scan.goodEnd
	if err := truncateSync(path, scan.goodEnd); err != nil {
		return rep, fmt.Errorf("cannot cut the datafile's bad tail: %w", err)
	}
	return rep, nil
}

// salvageFile replays every readable command of a damaged file, except the
// keys in drop, and copies the file aside.
func salvageFile(path string, scan fileScan, drop []string, log *slog.Logger) (repair, error) {
	items := map[string]item{}
	now := time.Now()
	if _, err := scanFile(path, func(c command) {
		switch c.verb {
		case "set":
			if !c.exat.IsZero() && !c.exat.After(now) {
				delete(items, c.key)
				return
			}
			items[c.key] = item{value: c.value, exat: c.exat}
		case "del":
			delete(items, c.key)
		case "flushdb":
			clear(items)
		}
	}); err != nil {
		return repair{}, fmt.Errorf("cannot read corrupt datafile: %w", err)
	}
	for _, k := range drop {
		delete(items, k)
	}
	dest, err := copyAside(path)
	if err != nil {
		log.Error("cannot copy corrupt datafile aside; salvaging it anyway", "path", path, "err", err)
	}
	log.Error("datafile is corrupt; starting a fresh one with what could be read",
		"path", path, "copied_to", dest, "bad_at", scan.badAt, "bad_bytes", scan.cut,
		"undecodable_keys", len(drop), "readable_commands", scan.commands, "readable_keys", len(items))
	return repair{salvage: items, movedTo: dest, cut: scan.cut}, nil
}

// salvageLoaded is salvageFile for a file that loaded but holds values that
// do not decode (a byte flipped inside a value): those keys are dropped.
func salvageLoaded(path string, bad []string, log *slog.Logger) (repair, error) {
	scan, err := scanFile(path, nil)
	if err != nil {
		return repair{}, err
	}
	return salvageFile(path, scan, bad, log)
}

// rebuildFile replaces the datafile with a fresh one that build writes at a
// temp path. The rename is atomic: after a crash at any point the name holds
// either the damaged file (and the salvage runs again) or the complete new
// one.
func rebuildFile(path string, build func(tmp string) error) error {
	tmp := path + salvageSuffix
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return err
	}
	err := build(tmp)
	os.Remove(tmp + ".lock")
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cannot build a fresh datafile: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("cannot replace the corrupt datafile: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func corruptName(path string) string {
	name := path + ".corrupt-" + time.Now().UTC().Format("20060102T150405Z")
	for i := 1; ; i++ {
		if _, err := os.Lstat(name); os.IsNotExist(err) {
			return name
		}
		name = fmt.Sprintf("%s.corrupt-%s-%d", path, time.Now().UTC().Format("20060102T150405Z"), i)
	}
}

// copyAside copies path to <path>.corrupt-<time> and fsyncs the copy.
func copyAside(path string) (string, error) {
	dest := corruptName(path)
	src, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer src.Close()
	dst, err := os.OpenFile(dest, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		os.Remove(dest)
		return "", err
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		os.Remove(dest)
		return "", err
	}
	if err := dst.Close(); err != nil {
		return "", err
	}
	return dest, syncDir(filepath.Dir(path))
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("cannot sync directory %s: %w", dir, err)
	}
	return nil
}
