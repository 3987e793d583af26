// Package jsonscan walks JSON that json.Valid has accepted, without
// reflection: the members of an object and the elements of an array, as
// slices of the input. It is for the hot paths that read a few fields of
// many small objects (a pushed batch, a record's routing fields); each
// caller decides what it reads itself and hands anything unusual (an
// escaped key, a value of the wrong kind) back to encoding/json, so answers
// stay exactly encoding/json's.
//
// Every function assumes valid JSON: on anything else its results are
// meaningless (but it never panics or loops).
package jsonscan

import "bytes"

// Members calls fn with each member of the object b, in order: the key
// without its quotes (escaped tells whether it holds a backslash) and the
// value as it stands. It stops at the first fn that returns false, and
// reports false when b is not an object or fn stopped.
func Members(b []byte, fn func(key []byte, escaped bool, value []byte) bool) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			return true
		}
		if b[i] != '"' {
			return false
		}
		end := StringEnd(b, i)
		key := b[i+1 : max(end-1, i+1)]
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		vs := i
		i = ValueEnd(b, i)
		if i <= vs {
			return false
		}
		if !fn(key, bytes.IndexByte(key, '\\') >= 0, b[vs:i]) {
			return false
		}
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i++
		}
	}
}

// Elements calls fn with each element of the array b, in order. It stops at
// the first fn that returns false, and reports false when b is not an array
// or fn stopped.
func Elements(b []byte, fn func(elem []byte) bool) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return false
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) {
			return false
		}
		if b[i] == ']' {
			return true
		}
		vs := i
		i = ValueEnd(b, i)
		if i <= vs || !fn(b[vs:i]) {
			return false
		}
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i++
		}
	}
}

// PlainString returns the contents of the JSON string v when it holds no
// escape and only ASCII (so it reads the same through encoding/json, which
// would replace invalid UTF-8); ok is false otherwise.
func PlainString(v []byte) (s string, ok bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	in := v[1 : len(v)-1]
	for _, c := range in {
		if c == '\\' || c >= 0x80 {
			return "", false
		}
	}
	return string(in), true
}

// Object reads the top-level string members named in want from the object
// b (keys matched case-insensitively, the last one winning, as
// encoding/json does). ok is false when b is not an object or a member it
// must read is not a plain string (see PlainString) or null: then ask
// encoding/json.
func Object(b []byte, want []string, out []string) (ok bool) {
	for i := range out {
		out[i] = ""
	}
	return Members(b, func(key []byte, escaped bool, v []byte) bool {
		if escaped {
			return false
		}
		for i, w := range want {
			if len(key) != len(w) || !bytes.EqualFold(key, []byte(w)) {
				continue
			}
			if s, plain := PlainString(v); plain {
				out[i] = s
				return true
			}
			return false
		}
		return true
	})
}

// StringEnd returns the index after the JSON string that starts at b[i].
func StringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// ValueEnd returns the index after the JSON value that starts at b[i].
func ValueEnd(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return StringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = StringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	for j := i; j < len(b); j++ {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j
		}
	}
	return len(b)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
