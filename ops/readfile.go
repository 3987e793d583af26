package ops

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrNotRegular is wrapped by ReadRegular's error for a path that is not a
// regular file (a FIFO, a device such as /dev/zero, a directory, a socket).
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is wrapped by ReadRegular's error for a file over its limit.
var ErrTooLarge = errors.New("file too large")

// ReadRegular reads the regular file at path, following symlinks, and at
// most limit bytes of it. It never blocks on the path and never reads without
// bound, whatever sits there:
//
//   - the file is opened with O_NONBLOCK, so a FIFO without a writer does
//     not hang the open (and with it SIGTERM, a reload, the file watcher);
//   - what was opened must be a regular file (checked on the open file, so
//     a swap between a check and the open changes nothing): a FIFO, a
//     character device such as /dev/zero, a directory or a socket is refused
//     with ErrNotRegular;
//   - a file longer than limit is refused with ErrTooLarge, after reading
//     limit+1 bytes.
//
// A missing file gives an error satisfying errors.Is(err, fs.ErrNotExist).
// The returned file info is that of the file read (owner, mode).
func ReadRegular(path string, limit int64) ([]byte, fs.FileInfo, error) {
	f, fi, err := OpenRegular(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, nil, fmt.Errorf("cannot read %s: %w: more than %d bytes", path, ErrTooLarge, limit)
	}
	return data, fi, nil
}

// OpenRegular opens path for reading as ReadRegular does (non-blocking open,
// regular files only) and returns the open file and its info. Reads from the
// file block as usual: O_NONBLOCK is cleared once it is known to be regular.
func OpenRegular(path string) (*os.File, fs.FileInfo, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("cannot read %s: %w (it is %s)", path, ErrNotRegular, describeMode(fi.Mode()))
	}
	if err := syscall.SetNonblock(fd, false); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	return f, fi, nil
}

func describeMode(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a regular file"
}
