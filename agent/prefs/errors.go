package prefs

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Error is one problem in a prefs file. Parse returns every problem it finds
// as errors.Join of *Error, ordered by line; use Errors to get them back.
type Error struct {
	File string // the name given to Parse (Load gives the path)
	Line int    // 1-based; 0 when the problem has no single place (a missing key)
	Key  string // "site.request_size", "sync_with[2].url"; "" for syntax errors
	Msg  string // what was expected and what to do
}

// Error formats as "prefs.toml:12: site.request_size: expected ...".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.File == "" {
		b.WriteString("prefs")
	}
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors returns the *Error values inside err (as returned by Parse or Load),
// in order. It returns nil when err holds none.
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if e, ok := err.(*Error); ok {
			out = append(out, e)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// problems collects the errors of one parse.
type problems struct {
	file  string
	lines lineIndex
	list  []*Error
}

// at records a problem with key, placed at key's line (or its table's).
func (p *problems) at(key, format string, args ...any) {
	p.list = append(p.list, &Error{File: p.file, Line: p.lines.find(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

// missing records a required key that is absent: placed at its table's line.
func (p *problems) missing(key, format string, args ...any) {
	p.list = append(p.list, &Error{File: p.file, Line: p.lines.find(parentPath(key)), Key: key, Msg: "missing: " + fmt.Sprintf(format, args...)})
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	sort.SliceStable(p.list, func(i, j int) bool { return p.list[i].Line < p.list[j].Line })
	errs := make([]error, len(p.list))
	for i, e := range p.list {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// aliases are names people reach for that are not keys here, and the key
// they probably meant.
var aliases = map[string]string{
	"password":  "password_sha256",
	"pass":      "password_sha256",
	"passwd":    "password_sha256",
	"username":  "user",
	"user_name": "user",
	"name":      "user",
	"id":        "sync_id",
	"site_id":   "sync_id",
	"interval":  "interval_minutes",
	"store":     "stores",
	"hwid":      "hardware_id",
	"host":      "url",
	"port":      "address",
}

// suggest returns, quoted for a message, the valid key that key was probably
// meant to be, or "".
func suggest(key string, valid []string) string {
	norm := strings.ToLower(strings.ReplaceAll(key, "-", "_"))
	if a, ok := aliases[norm]; ok && contains(valid, a) {
		if a == "password_sha256" && contains(valid, "password_hash") {
			return `password_sha256 (on a satellite) or password_hash (on the primary), both printed by "syncagent passwd"`
		}
		return strconv.Quote(a)
	}
	best, bestDist := "", 3
	for _, v := range valid {
		if norm == v {
			return strconv.Quote(v)
		}
		d := editDistance(norm, v)
		limit := 2
		if len(v) < 6 {
			limit = 1
		}
		if d <= limit && d < bestDist {
			best, bestDist = v, d
		}
	}
	if best == "" {
		return ""
	}
	return strconv.Quote(best)
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
