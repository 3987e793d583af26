package prefs

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// table reads the values of one decoded TOML table, checking their types and
// reporting problems at their lines. Every key it is asked about, present or
// not, counts as valid there; unknown reports the others.
type table struct {
	p       *problems
	path    string // key path of the table; "" at the top level
	where   string // how messages place it: "in [site]", "at the top level"
	m       map[string]any
	present map[string]bool // shared: every key path seen in the file
	lens    map[string]int  // shared: the number of elements of each list read
	valid   []string
}

func (t *table) key(k string) string { return keyPath(t.path, k) }

// get returns the raw value of k and whether it is in the file.
func (t *table) get(k string) (any, bool) {
	t.valid = append(t.valid, k)
	v, ok := t.m[k]
	if ok {
		t.present[t.key(k)] = true
	}
	return v, ok
}

// int reads a whole number in lo..hi; hint ends the message.
func (t *table) int(k string, dst *int, lo, hi int, hint string) {
	v, ok := t.get(k)
	if !ok {
		return
	}
	n, isInt := v.(int64)
	if !isInt || n < int64(lo) || n > int64(hi) {
		t.p.at(t.key(k), "expected a whole number from %d to %d%s, got %s", lo, hi, hint, describe(v))
		return
	}
	*dst = int(n)
}

// string reads a string without control characters.
func (t *table) string(k string, dst *string) {
	v, ok := t.get(k)
	if !ok {
		return
	}
	s, isStr := v.(string)
	if !isStr {
		t.p.at(t.key(k), "expected a string, got %s", describe(v))
		return
	}
	if hasControl(s) {
		t.p.at(t.key(k), "contains a control character; remove it")
		return
	}
	*dst = s
}

// names reads a list of names (stores): non-empty, trimmed, unique strings.
func (t *table) names(k string, dst *[]string) {
	v, ok := t.get(k)
	if !ok {
		return
	}
	key := t.key(k)
	list, isList := v.([]any)
	if !isList {
		t.p.at(key, `expected a list of names such as ["store-a", "store-b"], got %s`, describe(v))
		return
	}
	t.lens[key] = len(list)
	out := make([]string, 0, len(list))
	seen := map[string]bool{}
	for i, e := range list {
		ekey := indexPath(key, i)
		s, isStr := e.(string)
		switch {
		case !isStr:
			t.p.at(ekey, "expected a name in quotes, got %s", describe(e))
		case s == "":
			t.p.at(ekey, "a name cannot be empty")
		case strings.TrimSpace(s) != s:
			t.p.at(ekey, "%s has leading or trailing spaces; remove them", quoteShort(s))
		case hasControl(s):
			t.p.at(ekey, "%s contains a control character; remove it", quoteShort(s))
		case seen[s]:
			t.p.at(ekey, "%s is listed twice; list each once", quoteShort(s))
		default:
			seen[s] = true
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		out = nil
	}
	*dst = out
}

// sub returns the table under k, or nil when it is absent or not a table.
func (t *table) sub(k, what string) *table {
	v, ok := t.get(k)
	if !ok {
		return nil
	}
	m, isTable := v.(map[string]any)
	if !isTable {
		t.p.at(t.key(k), "expected a table %s, got %s", what, describe(v))
		return nil
	}
	return &table{p: t.p, path: t.key(k), where: "in " + what, m: m, present: t.present, lens: t.lens}
}

// rows returns the tables of the array of tables under k.
func (t *table) rows(k string) []*table {
	v, ok := t.get(k)
	if !ok {
		return nil
	}
	key := t.key(k)
	var maps []map[string]any
	switch v := v.(type) {
	case []map[string]any:
		maps = v
	case []any: // sync_with = [{...}, {...}]: the same thing written inline
		for i, e := range v {
			m, isTable := e.(map[string]any)
			if !isTable {
				t.p.at(indexPath(key, i), "expected a [[%s]] row (a table), got %s", k, describe(e))
				return nil
			}
			maps = append(maps, m)
		}
	default:
		t.p.at(key, "expected [[%s]] rows (write each row under its own [[%s]] line), got %s", k, k, describe(v))
		return nil
	}
	t.lens[key] = len(maps)
	out := make([]*table, len(maps))
	for i, m := range maps {
		out[i] = &table{p: t.p, path: indexPath(key, i), where: fmt.Sprintf("in [[%s]] rows", k), m: m, present: t.present, lens: t.lens}
	}
	return out
}

// unknown reports every key of the table that no getter asked about.
func (t *table) unknown() {
	var keys []string
	for k := range t.m {
		if !contains(t.valid, k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		kind := "key"
		if _, isTable := t.m[k].(map[string]any); isTable {
			kind = "table"
		}
		hint := ""
		if s := suggest(k, t.valid); s != "" {
			hint = "; did you mean " + s + "?"
		} else if h, ok := homes[k]; ok && t.path != "" {
			hint = "; " + k + " belongs " + h
		}
		t.p.at(t.key(k), "unknown %s %s%s (valid keys there: %s)", kind, t.where, hint, strings.Join(t.valid, ", "))
	}
}

// homes says where keys belong, for a key written under the wrong table
// (often a top-level key written after a [table] line, which TOML puts in
// that table).
var homes = map[string]string{
	"version":                     "at the top level: move it above the first [table] line",
	"site":                        "at the top level: move it above the first [table] line",
	"paths":                       "at the top level: move it above the first [table] line",
	"listen":                      "at the top level: move it above the first [table] line",
	"limits":                      "at the top level: move it above the first [table] line",
	"sync_with":                   "at the top level: move it above the first [table] line, or write each row under a [[sync_with]] line",
	"unlock":                      "at the top level: move it above the first [table] line",
	"admin":                       "at the top level: move it above the first [table] line",
	"metrics":                     "at the top level: move it above the first [table] line",
	"central":                     "at the top level: move it above the first [table] line",
	"database":                    "in [central]",
	"database_password_file":      "in [central]",
	"max_connections":             "in [central]",
	"auth_key_file":               "in [central]",
	"trusted_proxies":             "in [listen]",
	"textfile_dir":                "in [metrics]",
	"interval_minutes":            "in [site]",
	"request_size":                "in [site]",
	"state_dir":                   "in [paths]",
	"control_socket":              "in [paths]",
	"vendor_keys":                 "in [paths]",
	"address":                     "in [listen]",
	"tls_cert":                    "in [listen]",
	"tls_key":                     "in [listen]",
	"omsupply_central_server_url": "in [listen]",
	"outbox_max_records":          "in [limits]",
	"user":                        "in a [[sync_with]] row",
	"password_sha256":             "in a [[sync_with]] row",
	"password_hash":               "in a [[sync_with]] row",
	"url":                         "in a [[sync_with]] row",
	"hardware_id":                 "in a [[sync_with]] row",
	"code":                        "in [unlock]",
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

// describe names a decoded TOML value's type and value for messages.
func describe(v any) string {
	switch v := v.(type) {
	case int64:
		return "the integer " + strconv.FormatInt(v, 10)
	case float64:
		if !math.IsInf(v, 0) && !math.IsNaN(v) && v == math.Trunc(v) && math.Abs(v) < 1e15 {
			return "the decimal " + strconv.FormatFloat(v, 'f', 1, 64) + " (write whole numbers without a decimal point)"
		}
		return "the decimal " + strconv.FormatFloat(v, 'g', -1, 64)
	case string:
		return "the string " + quoteShort(v)
	case bool:
		return "the boolean " + strconv.FormatBool(v)
	case time.Time:
		return "a date-time"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// quoteShort quotes s for a message, cut to a readable length.
func quoteShort(s string) string {
	const max = 40
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "…"
	}
	return strconv.Quote(s)
}
