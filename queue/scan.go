package queue

import (
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// This file reads a BuntDB append-only file the way buntdb's loader does,
// but strictly, so that recovery can decide what to do before buntdb sees
// the file. The loader (buntdb v1.3.0, DB.readLoad/load) accepts:
//
//	*<n>\r\n then n times $<len>\r\n<len bytes>\r\n
//
// with the commands "set key value", "set key value ae|ex <int>", "del key"
// and "flushdb". It truncates a file that ends mid-command, but refuses (or
// panics on) a malformed command, and it skips NUL bytes between commands
// while still seeking to the sum of the command sizes, so a NUL inside the
// file would make it overwrite good commands. We therefore treat a NUL like
// any other bad byte.

// command is one parsed command.
type command struct {
	verb  string // "set", "del" or "flushdb"
	key   string
	value string
	exat  time.Time // zero unless the set carries an expiry
}

// errTorn means the file ended inside a command that was well formed so far.
var errTorn = errors.New("torn command")

// errBad means the bytes at this offset are not a command.
var errBad = errors.New("malformed command")

// window reads a file through one reusable buffer, so trying a parse at many
// offsets (resync) costs no allocation.
type window struct {
	r    io.ReaderAt
	size int64
	buf  []byte
	off  int64 // file offset of buf[0]
	n    int   // valid bytes in buf
}

func newWindow(r io.ReaderAt, size int64) *window {
	return &window{r: r, size: size, buf: make([]byte, min(1<<16, max(size, 16))), off: -1}
}

func (w *window) fill(off int64) error {
	n, err := w.r.ReadAt(w.buf, off)
	if err != nil && err != io.EOF {
		return err
	}
	w.off, w.n = off, n
	return nil
}

// byteAt returns the byte at off; errTorn past the end of the file.
func (w *window) byteAt(off int64) (byte, error) {
	if off >= w.size {
		return 0, errTorn
	}
	if off < w.off || off >= w.off+int64(w.n) {
		if err := w.fill(off); err != nil {
			return 0, err
		}
		if w.n == 0 {
			return 0, errTorn
		}
	}
	return w.buf[off-w.off], nil
}

// str returns n bytes at off as a string; the caller checked off+n <= size.
func (w *window) str(off int64, n int) (string, error) {
	if n <= len(w.buf) {
		if off < w.off || off+int64(n) > w.off+int64(w.n) {
			if err := w.fill(off); err != nil {
				return "", err
			}
			if w.n < n {
				return "", errTorn
			}
		}
		return string(w.buf[off-w.off : off-w.off+int64(n)]), nil
	}
	b := make([]byte, n)
	if _, err := w.r.ReadAt(b, off); err != nil {
		if err == io.EOF {
			return "", errTorn
		}
		return "", err
	}
	return string(b), nil
}

// header reads "<want><digits>\r\n" at *off and returns the number.
func (w *window) header(off *int64, want byte) (int, error) {
	b, err := w.byteAt(*off)
	if err != nil {
		return 0, err
	}
	*off++
	if b != want {
		return 0, errBad
	}
	n, digits := 0, 0
	for {
		b, err := w.byteAt(*off)
		if err != nil {
			return 0, err
		}
		*off++
		if b == '\r' {
			break
		}
		if b < '0' || b > '9' || digits >= 10 {
			return 0, errBad
		}
		n = n*10 + int(b-'0')
		digits++
	}
	b, err = w.byteAt(*off)
	if err != nil {
		return 0, err
	}
	*off++
	if b != '\n' || digits == 0 {
		return 0, errBad
	}
	return n, nil
}

// parse reads the command at off and returns it and the offset after it.
// The error is errTorn, errBad or an I/O error.
func (w *window) parse(off int64, mod time.Time) (command, int64, error) {
	n, err := w.header(&off, '*')
	if err != nil {
		return command{}, off, err
	}
	if n < 1 || n > 5 {
		return command{}, off, errBad
	}
	parts := make([]string, 0, n)
	for i := 0; i < n; i++ {
		size, err := w.header(&off, '$')
		if err != nil {
			return command{}, off, err
		}
		if off+int64(size)+2 > w.size {
			// Cannot be complete: a torn command, or a corrupt length.
			// Either way nothing to read (and nothing to allocate).
			return command{}, off, errTorn
		}
		s, err := w.str(off, size+2)
		if err != nil {
			return command{}, off, err
		}
		off += int64(size) + 2
		if !strings.HasSuffix(s, "\r\n") {
			return command{}, off, errBad
		}
		parts = append(parts, s[:size])
		if i == 0 && !knownVerb(parts[0]) {
			return command{}, off, errBad
		}
	}
	cmd, err := build(parts, mod)
	return cmd, off, err
}

func knownVerb(s string) bool {
	switch strings.ToLower(s) {
	case "set", "del", "flushdb":
		return true
	}
	return false
}

// build checks a command's shape exactly as buntdb's loader does.
func build(p []string, mod time.Time) (command, error) {
	verb := strings.ToLower(p[0])
	switch {
	case verb == "set" && len(p) == 3:
		return command{verb: verb, key: p[1], value: p[2]}, nil
	case verb == "set" && len(p) == 5:
		arg := strings.ToLower(p[3])
		ex, err := strconv.ParseInt(p[4], 10, 64)
		if err != nil || (arg != "ex" && arg != "ae") {
			return command{}, errBad
		}
		exat := time.Unix(ex, 0)
		if arg == "ex" {
			exat = mod.Add(time.Duration(ex) * time.Second)
		}
		return command{verb: verb, key: p[1], value: p[2], exat: exat}, nil
	case verb == "del" && len(p) == 2:
		return command{verb: verb, key: p[1]}, nil
	case verb == "flushdb" && len(p) == 1:
		return command{verb: verb}, nil
	}
	return command{}, errBad
}

// fileScan is what a strict read of a datafile found.
type fileScan struct {
	size     int64
	goodEnd  int64 // end of the last good command before the first problem
	torn     bool  // the file ends inside a command (a normal power cut)
	badAt    int64 // offset of the first bad byte, or -1
	middle   bool  // good commands follow a bad region: corrupt in the middle
	commands int   // good commands read
	cut      int64 // bytes skipped as bad or torn
}

func (s fileScan) clean() bool { return !s.torn && s.badAt < 0 }

// scanFile reads the datafile at path. fn, when not nil, receives every good
// command in file order, including those after a bad region (for salvage).
func scanFile(path string, fn func(command)) (fileScan, error) {
	res := fileScan{badAt: -1}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return res, nil
	}
	if err != nil {
		return res, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return res, err
	}
	res.size = fi.Size()
	mod := fi.ModTime()
	w := newWindow(f, res.size)
	for off := int64(0); off < res.size; {
		cmd, next, err := w.parse(off, mod)
		switch err {
		case nil:
			res.commands++
			if res.badAt >= 0 {
				res.middle = true
			} else {
				res.goodEnd = next
			}
			if fn != nil {
				fn(cmd)
			}
			off = next
			continue
		case errTorn:
			if res.badAt < 0 {
				res.torn, res.goodEnd, res.cut = true, off, res.size-off
				return res, nil
			}
		case errBad:
		default:
			return res, err
		}
		// A bad command, or a torn-looking one after a bad region: skip to
		// the next offset where a complete good command starts.
		if res.badAt < 0 {
			res.badAt, res.goodEnd = off, off
		}
		at, err := w.resync(off+1, mod)
		if err != nil {
			return res, err
		}
		res.cut += at - off
		off = at
	}
	return res, nil
}

// resync finds the first offset at or after from where a complete good
// command starts, or the file size when there is none.
func (w *window) resync(from int64, mod time.Time) (int64, error) {
	for off := from; off < w.size; off++ {
		b, err := w.byteAt(off)
		if err != nil {
			return 0, err
		}
		if b != '*' {
			continue
		}
		_, _, err = w.parse(off, mod)
		switch err {
		case nil:
			return off, nil
		case errTorn, errBad:
		default:
			return 0, err
		}
	}
	return w.size, nil
}
