package prefs

import "fmt"

// Format versions migrate through a table of converters (as syncthing does):
// migrations[v] rewrites a decoded version-v file, in place, into version v+1.
// Parse runs every converter from the file's version up to CurrentVersion
// before it validates, so old files keep working; each converter must come
// with a testdata/migrate/v<v>.toml file that TestMigrations parses. Version 1
// is the first format, so the table is empty today.
var migrations = map[int]func(raw map[string]any) error{}

// readVersion reads the required top-level version. It returns false when the
// rest of the file cannot be read with this syncagent's rules.
func readVersion(p *problems, raw map[string]any) (int, bool) {
	v, ok := raw["version"]
	if !ok {
		p.missing("version", "add `version = %d` as the first line of the file", CurrentVersion)
		return CurrentVersion, true // check the rest as if it were current
	}
	n, isInt := v.(int64)
	switch {
	case !isInt || n < 1:
		p.at("version", "expected the format version %d, got %s", CurrentVersion, describe(v))
		return CurrentVersion, true
	case n > CurrentVersion:
		p.at("version", "version %d is newer than this syncagent understands (it reads versions up to %d); upgrade syncagent", n, CurrentVersion)
		return 0, false
	}
	return int(n), true
}

// migrate brings raw from version up to CurrentVersion.
func migrate(raw map[string]any, version int) error {
	for v := version; v < CurrentVersion; v++ {
		convert, ok := migrations[v]
		if !ok {
			return fmt.Errorf("no converter from version %d to %d (a bug in syncagent)", v, v+1)
		}
		if err := convert(raw); err != nil {
			return fmt.Errorf("cannot convert from version %d to %d: %w", v, v+1, err)
		}
	}
	return nil
}
