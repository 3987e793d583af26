package prefs

import (
	"testing"

	"github.com/BurntSushi/toml"
)

// The line scanner follows the TOML forms that could mislead it: brackets and
// '=' inside strings, multi-line strings and arrays, quoted keys, dotted
// headers, arrays of tables and inline tables spread over lines.
func TestLocate(t *testing.T) {
	src := `# [not] = a table
version = 1
text = """
[fake]
x = 1
"""
lit = '''
[[fake]]'''
[site]
sync_id = 12 # [comment]
stores = [
  "a", # ]
  'b',
]
"quoted.key" = "v"
[ paths ]
state_dir = "/x"
[[sync_with]]
sync_id = 1
[[sync_with]]
user = "u\"]"
url = "http://h"
[sync_with.extra]
deep = 1
[unlock]
inline = { a = 1,
  b = { c = 2 } }
when = 1979-05-27 07:32:00Z
`
	var m map[string]any
	if _, err := toml.Decode(src, &m); err != nil {
		t.Fatalf("fixture is not valid TOML: %v", err)
	}
	ix := locate(src)
	tests := map[string]int{
		"version":                 2,
		"text":                    3,
		"lit":                     7,
		"site":                    9,
		"site.sync_id":            10,
		"site.stores":             11,
		"site.stores[0]":          12,
		"site.stores[1]":          13,
		`site."quoted.key"`:       15,
		"paths":                   16,
		"paths.state_dir":         17,
		"sync_with":               18,
		"sync_with[0]":            18,
		"sync_with[0].sync_id":    19,
		"sync_with[1]":            20,
		"sync_with[1].user":       21,
		"sync_with[1].url":        22,
		"sync_with[1].extra":      23,
		"sync_with[1].extra.deep": 24,
		"unlock.inline":           26,
		"unlock.inline.b.c":       27,
		"unlock.when":             28,
	}
	for path, want := range tests {
		if got := ix.find(path); got != want {
			t.Errorf("line of %s = %d, want %d", path, got, want)
		}
	}
	if _, ok := ix["fake"]; ok {
		t.Error("a header inside a multi-line string was taken for a table")
	}
	// A key that is not written falls back to its table's line.
	if got := ix.find("sync_with[1].password_sha256"); got != 20 {
		t.Errorf("fallback line = %d, want 20", got)
	}
}

func TestParentPath(t *testing.T) {
	tests := map[string]string{
		"a.b":         "a",
		"a[2]":        "a",
		"a[2].b":      "a[2]",
		`a."x.y"`:     "a",
		`"x.y"`:       "",
		"a":           "",
		`a."q\".z".b`: `a."q\".z"`,
	}
	for in, want := range tests {
		if got := parentPath(in); got != want {
			t.Errorf("parentPath(%q) = %q, want %q", in, got, want)
		}
	}
}
