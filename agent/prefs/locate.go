package prefs

import (
	"strconv"
	"strings"
)

// The TOML library keeps key positions private, so lines for rule violations
// (found after decoding) come from this small scanner. It runs only on text
// the TOML parser has accepted, understands just enough TOML to follow table
// headers, arrays of tables, dotted keys, inline tables, arrays and every
// string form, and records the line where each key path is first written.
// On anything unexpected it skips a byte: it cannot fail, loop or panic, and
// at worst a line number falls back to the enclosing table's.

// keyPath names a value in the file the way error messages and Change keys
// do: "site.sync_id", "sync_with[2].url" (rows counted from 0 in file order).
// A key that is not a bare TOML key is quoted: `site."odd key"`.
func keyPath(parent, key string) string {
	k := key
	if !isBareKey(key) {
		k = strconv.Quote(key)
	}
	if parent == "" {
		return k
	}
	return parent + "." + k
}

func indexPath(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isBareKeyByte(s[i]) {
			return false
		}
	}
	return true
}

func isBareKeyByte(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// lineIndex maps key paths to 1-based line numbers.
type lineIndex map[string]int

// find returns the line of path, or of its nearest enclosing table or row
// that was written in the file, or 0.
func (ix lineIndex) find(path string) int {
	for path != "" {
		if n, ok := ix[path]; ok {
			return n
		}
		path = parentPath(path)
	}
	return 0
}

// parentPath strips the last ".key" or "[i]" from path.
func parentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	// The last '.' outside quotes.
	last, inQuote := -1, false
	for i := 0; i < len(path); i++ {
		switch {
		case path[i] == '\\' && inQuote:
			i++
		case path[i] == '"':
			inQuote = !inQuote
		case path[i] == '.' && !inQuote:
			last = i
		}
	}
	if last < 0 {
		return ""
	}
	return path[:last]
}

type locator struct {
	src  string
	pos  int
	line int
	ix   lineIndex
	aot  map[string]int // array-of-tables path -> rows seen so far
}

func locate(src string) lineIndex {
	l := &locator{src: src, line: 1, ix: lineIndex{}, aot: map[string]int{}}
	l.top()
	return l.ix
}

func (l *locator) eof() bool { return l.pos >= len(l.src) }

func (l *locator) peek() byte {
	if l.eof() {
		return 0
	}
	return l.src[l.pos]
}

func (l *locator) advance() {
	if l.eof() {
		return
	}
	if l.src[l.pos] == '\n' {
		l.line++
	}
	l.pos++
}

func (l *locator) record(path string, line int) {
	if _, ok := l.ix[path]; !ok {
		l.ix[path] = line
	}
}

// skipSpace skips blanks, and also newlines and comments when multiline.
func (l *locator) skipSpace(multiline bool) {
	for !l.eof() {
		switch c := l.peek(); {
		case c == ' ' || c == '\t':
			l.advance()
		case multiline && (c == '\n' || c == '\r'):
			l.advance()
		case multiline && c == '#':
			l.skipComment()
		default:
			return
		}
	}
}

func (l *locator) skipComment() {
	for !l.eof() && l.peek() != '\n' {
		l.advance()
	}
}

func (l *locator) top() {
	table := ""
	for !l.eof() {
		l.skipSpace(true)
		if l.eof() {
			return
		}
		start := l.pos
		line := l.line
		if l.peek() == '[' {
			l.advance()
			isArray := l.peek() == '['
			if isArray {
				l.advance()
			}
			parts := l.keyParts()
			table = l.resolve("", parts, !isArray)
			if isArray {
				n := l.aot[table]
				l.aot[table] = n + 1
				l.record(table, line)
				table = indexPath(table, n)
			}
			l.record(table, line)
			// The closing bracket(s) and the rest of the line.
			for !l.eof() && l.peek() != '\n' && l.peek() != '#' {
				l.advance()
			}
		} else if parts := l.keyParts(); len(parts) > 0 {
			l.skipSpace(false)
			if l.peek() == '=' {
				l.advance()
				l.skipSpace(false)
				l.value(l.resolve(table, parts, false), line)
			}
		}
		if l.pos == start {
			l.advance() // unexpected byte: never stall
		}
	}
}

// resolve joins key parts onto base. Parts naming an array of tables refer to
// its latest row, except the last part when it names the array itself.
func (l *locator) resolve(base string, parts []string, lastToRow bool) string {
	path := base
	for i, p := range parts {
		path = keyPath(path, p)
		if n := l.aot[path]; n > 0 && (i < len(parts)-1 || lastToRow) {
			path = indexPath(path, n-1)
		}
	}
	return path
}

// keyParts reads a possibly dotted key: bare, "basic" or 'literal' parts.
func (l *locator) keyParts() []string {
	var parts []string
	for {
		l.skipSpace(false)
		var part string
		switch c := l.peek(); {
		case c == '"':
			part = l.basicString()
		case c == '\'':
			part = l.literalString()
		case isBareKeyByte(c):
			start := l.pos
			for !l.eof() && isBareKeyByte(l.peek()) {
				l.advance()
			}
			part = l.src[start:l.pos]
		default:
			return parts
		}
		parts = append(parts, part)
		l.skipSpace(false)
		if l.peek() != '.' {
			return parts
		}
		l.advance()
	}
}

// value skips one value, recording path (at the key's line) and, inside
// arrays and inline tables, the paths of their elements.
func (l *locator) value(path string, line int) {
	l.record(path, line)
	switch c := l.peek(); c {
	case '"':
		l.basicString()
	case '\'':
		l.literalString()
	case '[':
		l.advance()
		for i := 0; ; i++ {
			l.skipSpace(true)
			if l.eof() || l.peek() == ']' {
				l.advance()
				return
			}
			start := l.pos
			l.value(indexPath(path, i), l.line)
			l.skipSpace(true)
			if l.peek() == ',' {
				l.advance()
			}
			if l.pos == start {
				l.advance()
			}
		}
	case '{':
		l.advance()
		for {
			l.skipSpace(true)
			if l.eof() || l.peek() == '}' {
				l.advance()
				return
			}
			start := l.pos
			kline := l.line
			parts := l.keyParts()
			l.skipSpace(false)
			if len(parts) > 0 && l.peek() == '=' {
				l.advance()
				l.skipSpace(false)
				l.value(l.resolve(path, parts, false), kline)
			}
			l.skipSpace(true)
			if l.peek() == ',' {
				l.advance()
			}
			if l.pos == start {
				l.advance()
			}
		}
	default:
		// Number, boolean or date-time (which may hold a space).
		for !l.eof() {
			switch l.peek() {
			case ',', ']', '}', '#', '\n', '\r':
				return
			}
			l.advance()
		}
	}
}

// basicString skips a "..." or """...""" string and returns its contents,
// unescaped as far as Go's rules agree with TOML's (only keys need it).
func (l *locator) basicString() string {
	if strings.HasPrefix(l.src[l.pos:], `"""`) {
		l.pos += 3
		for !l.eof() {
			switch {
			case l.peek() == '\\':
				l.advance()
				l.advance()
			case strings.HasPrefix(l.src[l.pos:], `"""`):
				l.pos += 3
				for i := 0; i < 2 && l.peek() == '"'; i++ { // """" and """"" end with quotes
					l.advance()
				}
				return ""
			default:
				l.advance()
			}
		}
		return ""
	}
	l.advance()
	start := l.pos
	for !l.eof() {
		switch l.peek() {
		case '\\':
			l.advance()
			l.advance()
		case '"', '\n':
			raw := l.src[start:l.pos]
			l.advance()
			if s, err := strconv.Unquote(`"` + raw + `"`); err == nil {
				return s
			}
			return raw
		default:
			l.advance()
		}
	}
	return l.src[start:]
}

// literalString skips a '...' or ”'...”' string and returns its contents.
func (l *locator) literalString() string {
	if strings.HasPrefix(l.src[l.pos:], `'''`) {
		l.pos += 3
		end := strings.Index(l.src[l.pos:], `'''`)
		if end < 0 {
			end = len(l.src) - l.pos
		}
		for target := l.pos + end; l.pos < target; {
			l.advance()
		}
		l.pos = min(l.pos+3, len(l.src))
		for i := 0; i < 2 && l.peek() == '\''; i++ {
			l.advance()
		}
		return ""
	}
	l.advance()
	start := l.pos
	for !l.eof() && l.peek() != '\'' && l.peek() != '\n' {
		l.advance()
	}
	s := l.src[start:l.pos]
	l.advance()
	return s
}
