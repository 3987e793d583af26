package ops

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
)

func keys(m map[string]bool, root string) []string {
	var out []string
	for k := range m {
		rel, err := filepath.Rel(root, k)
		if err != nil {
			rel = k
		}
		out = append(out, rel)
	}
	sort.Strings(out)
	return out
}

func TestResolveChain(t *testing.T) {
	for _, tc := range []struct {
		name      string
		setup     func(t *testing.T, root string)
		path      string
		wantDirs  []string
		wantNames []string
	}{
		{
			name:      "regular file",
			setup:     func(t *testing.T, root string) { write(t, filepath.Join(root, "prefs.toml"), "") },
			path:      "prefs.toml",
			wantDirs:  []string{"."},
			wantNames: []string{"prefs.toml"},
		},
		{
			name:      "missing file",
			setup:     func(t *testing.T, root string) {},
			path:      "prefs.toml",
			wantDirs:  []string{"."},
			wantNames: []string{"prefs.toml"},
		},
		{
			name:      "missing directory",
			setup:     func(t *testing.T, root string) {},
			path:      "etc/syncagent/prefs.toml",
			wantDirs:  []string{"."},
			wantNames: []string{"etc"},
		},
		{
			name: "relative symlink into another directory",
			setup: func(t *testing.T, root string) {
				must(t, os.Mkdir(filepath.Join(root, "data"), 0o755))
				write(t, filepath.Join(root, "data", "v1.toml"), "")
				must(t, os.Symlink("data/v1.toml", filepath.Join(root, "prefs.toml")))
			},
			path:      "prefs.toml",
			wantDirs:  []string{".", "data"},
			wantNames: []string{"data/v1.toml", "prefs.toml"},
		},
		{
			name: "absolute symlink",
			setup: func(t *testing.T, root string) {
				must(t, os.Mkdir(filepath.Join(root, "data"), 0o755))
				write(t, filepath.Join(root, "data", "v1.toml"), "")
				must(t, os.Symlink(filepath.Join(root, "data", "v1.toml"), filepath.Join(root, "prefs.toml")))
			},
			path:      "prefs.toml",
			wantDirs:  []string{".", "data"},
			wantNames: []string{"data/v1.toml", "prefs.toml"},
		},
		{
			name: "ConfigMap layout",
			setup: func(t *testing.T, root string) {
				must(t, os.Mkdir(filepath.Join(root, "..v1"), 0o755))
				write(t, filepath.Join(root, "..v1", "prefs.toml"), "")
				must(t, os.Symlink("..v1", filepath.Join(root, "..data")))
				must(t, os.Symlink("..data/prefs.toml", filepath.Join(root, "prefs.toml")))
			},
			path:      "prefs.toml",
			wantDirs:  []string{".", "..v1"},
			wantNames: []string{"..data", "..v1/prefs.toml", "prefs.toml"},
		},
		{
			name: "symlinked parent directory",
			setup: func(t *testing.T, root string) {
				must(t, os.MkdirAll(filepath.Join(root, "real", "conf"), 0o755))
				write(t, filepath.Join(root, "real", "conf", "prefs.toml"), "")
				must(t, os.Symlink("real/conf", filepath.Join(root, "etc")))
			},
			path:      "etc/prefs.toml",
			wantDirs:  []string{".", "real/conf"},
			wantNames: []string{"etc", "real/conf/prefs.toml"},
		},
		{
			name: "dangling symlink",
			setup: func(t *testing.T, root string) {
				must(t, os.Symlink("gone/prefs.toml", filepath.Join(root, "prefs.toml")))
			},
			path:      "prefs.toml",
			wantDirs:  []string{"."},
			wantNames: []string{"gone", "prefs.toml"},
		},
		{
			// As the kernel does: ".." in a link target leaves the directory
			// the previous link resolved to.
			name: "dot-dot inside a link target is physical",
			setup: func(t *testing.T, root string) {
				must(t, os.MkdirAll(filepath.Join(root, "real", "deep"), 0o755))
				write(t, filepath.Join(root, "real", "v1.toml"), "")
				must(t, os.Symlink("real/deep", filepath.Join(root, "sub")))
				must(t, os.Symlink("sub/../v1.toml", filepath.Join(root, "prefs.toml")))
			},
			path:      "prefs.toml",
			wantDirs:  []string{".", "real"},
			wantNames: []string{"prefs.toml", "real/v1.toml", "sub"},
		},
		{
			// Like filepath.Abs, and like the path WatchFile reads.
			name: "dot-dot is cleaned lexically",
			setup: func(t *testing.T, root string) {
				must(t, os.MkdirAll(filepath.Join(root, "real", "sub"), 0o755))
				write(t, filepath.Join(root, "prefs.toml"), "")
				must(t, os.Symlink("real/sub", filepath.Join(root, "link")))
			},
			path:      "link/../prefs.toml",
			wantDirs:  []string{"."},
			wantNames: []string{"prefs.toml"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, err := filepath.EvalSymlinks(t.TempDir())
			must(t, err)
			tc.setup(t, root)
			c, err := resolveChain(filepath.Join(root, tc.path))
			must(t, err)
			if got := keys(c.dirs, root); !slices.Equal(got, tc.wantDirs) {
				t.Errorf("dirs = %q, want %q", got, tc.wantDirs)
			}
			if got := keys(c.names, root); !slices.Equal(got, tc.wantNames) {
				t.Errorf("names = %q, want %q", got, tc.wantNames)
			}
		})
	}
}

func TestResolveChain_loop(t *testing.T) {
	root := t.TempDir()
	must(t, os.Symlink("b", filepath.Join(root, "a")))
	must(t, os.Symlink("a", filepath.Join(root, "b")))
	if _, err := resolveChain(filepath.Join(root, "a")); err == nil {
		t.Error("a symlink loop resolved without error")
	}
}
