package queue

import (
	"bufio"
	"bytes"
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

// errTorn means the input ended inside a command that was well formed so far.
var errTorn = errors.New("torn command")

// errBad means the bytes at this offset are not a command.
var errBad = errors.New("malformed command")

// cmdReader parses commands from a buffered reader, counting bytes.
type cmdReader struct {
	r   *bufio.Reader
	off int64 // offset of the next unread byte
	mod time.Time
}

func newCmdReader(r io.Reader, start, end int64, mod time.Time) *cmdReader {
	return &cmdReader{r: bufio.NewReaderSize(r, int(min(1<<16, max(end-start, 16)))), off: start, mod: mod}
}

// line reads one header line "<c><digits>\r\n" and returns the number.
func (c *cmdReader) header(want byte) (int, error) {
	b, err := c.r.ReadByte()
	if err != nil {
		return 0, errTorn
	}
	c.off++
	if b != want {
		return 0, errBad
	}
	n, digits := 0, 0
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return 0, errTorn
		}
		c.off++
		if b == '\r' {
			break
		}
		if b < '0' || b > '9' || digits >= 10 {
			return 0, errBad
		}
		n = n*10 + int(b-'0')
		digits++
	}
	b, err = c.r.ReadByte()
	if err != nil {
		return 0, errTorn
	}
	c.off++
	if b != '\n' || digits == 0 {
		return 0, errBad
	}
	return n, nil
}

// maxPart bounds one bulk string, so a corrupt length cannot make recovery
// allocate gigabytes.
const maxPart = 256 << 20

// next parses one command. On errTorn or errBad the reader's position is
// undefined; the caller restarts from a known offset.
func (c *cmdReader) next() (command, error) {
	n, err := c.header('*')
	if err != nil {
		return command{}, err
	}
	if n < 1 || n > 5 {
		return command{}, errBad
	}
	parts := make([]string, 0, n)
	for i := 0; i < n; i++ {
		size, err := c.header('$')
		if err != nil {
			return command{}, err
		}
		if size > maxPart {
			return command{}, errBad
		}
		buf := make([]byte, size+2)
		got, err := io.ReadFull(c.r, buf)
		c.off += int64(got)
		if err != nil {
			return command{}, errTorn
		}
		if buf[size] != '\r' || buf[size+1] != '\n' {
			return command{}, errBad
		}
		parts = append(parts, string(buf[:size]))
		if i == 0 && !knownVerb(parts[0]) {
			return command{}, errBad
		}
	}
	return c.build(parts)
}

func knownVerb(s string) bool {
	switch strings.ToLower(s) {
	case "set", "del", "flushdb":
		return true
	}
	return false
}

// build checks a command's shape exactly as buntdb's loader does.
func (c *cmdReader) build(p []string) (command, error) {
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
			exat = c.mod.Add(time.Duration(ex) * time.Second)
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
	start := int64(0)
	for start < res.size {
		rd := newCmdReader(io.NewSectionReader(f, start, res.size-start), start, res.size, mod)
		for rd.off < res.size {
			at := rd.off
			cmd, err := rd.next()
			if err == errTorn {
				res.torn = true
				res.cut += res.size - at
				if res.badAt < 0 {
					res.goodEnd = at
				}
				return res, nil
			}
			if err == errBad {
				if res.badAt < 0 {
					res.badAt, res.goodEnd = at, at
				}
				next, err := resync(f, at+1, res.size, mod)
				if err != nil {
					return res, err
				}
				res.cut += next - at
				start = next
				break
			}
			res.commands++
			if res.badAt >= 0 {
				res.middle = true
			} else {
				res.goodEnd = rd.off
			}
			if fn != nil {
				fn(cmd)
			}
		}
		if rd.off >= res.size {
			break
		}
	}
	return res, nil
}

// resync finds the first offset at or after from where a complete good
// command starts, or size when there is none.
func resync(f *os.File, from, size int64, mod time.Time) (int64, error) {
	buf := make([]byte, min(1<<16, max(size-from, 1)))
	for off := from; off < size; {
		n, err := f.ReadAt(buf, off)
		if n == 0 && err != nil {
			if err == io.EOF {
				return size, nil
			}
			return 0, err
		}
		for i := 0; i < n; {
			j := bytes.IndexByte(buf[i:n], '*')
			if j < 0 {
				break
			}
			cand := off + int64(i+j)
			rd := newCmdReader(io.NewSectionReader(f, cand, size-cand), cand, size, mod)
			if _, err := rd.next(); err == nil {
				return cand, nil
			}
			i += j + 1
		}
		off += int64(n)
	}
	return size, nil
}
