package ops

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// ops sits below every other package (DESIGN.md, layout): it may use the
// standard library and the two system libraries it wraps, nothing of ours.
func TestImports_onlyStdlibAndWrappedLibraries(t *testing.T) {
	allowed := []string{
		"github.com/coreos/go-systemd/v22/",
		"github.com/fsnotify/fsnotify",
		"golang.org/x/sys/unix", // tests read the monotonic clock
	}
	files, err := filepath.Glob("*.go")
	must(t, err)
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		must(t, err)
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			if !strings.Contains(first, ".") && first != "syncagent" {
				continue // standard library
			}
			ok := false
			for _, prefix := range allowed {
				ok = ok || strings.HasPrefix(path, prefix)
			}
			if !ok {
				t.Errorf("%s imports %s; ops may import only the standard library, go-systemd and fsnotify", name, path)
			}
		}
	}
}
