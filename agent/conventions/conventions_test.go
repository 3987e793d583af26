package conventions

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Doc        string
	Imports    []string
	Deps       []string
	Standard   bool
}

func list(t *testing.T, args ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestPackagesHaveDocs protects the rule that every package says what it is
// and who imports it.
func TestPackagesHaveDocs(t *testing.T) {
	for _, p := range list(t, "./...") {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package doc comment", p.ImportPath)
		}
	}
}

// owners maps each outside dependency to the only package that may import it.
var owners = map[string]string{
	"github.com/jaypipes/ghw":            "syncagent/hw",
	"github.com/tidwall/buntdb":          "syncagent/queue",
	"github.com/coreos/go-systemd/v22":   "syncagent/ops",
	"github.com/fsnotify/fsnotify":       "syncagent/ops",
	"github.com/VictoriaMetrics/metrics": "syncagent/agent/metrics",
	"github.com/jackc/pgx/v5":            "syncagent/queue/pg",
}

// TestDependencyOwners protects the layout of the design card: ghw only in
// hw, BuntDB only in queue, go-systemd and fsnotify only in ops; hw, queue,
// ops and jsonscan import nothing of ours but jsonscan (a JSON walker with
// no imports of its own).
func TestDependencyOwners(t *testing.T) {
	for _, p := range list(t, "./...") {
		for _, imp := range p.Imports {
			for dep, owner := range owners {
				if (imp == dep || strings.HasPrefix(imp, dep+"/")) && p.ImportPath != owner {
					t.Errorf("%s imports %s; only %s may", p.ImportPath, imp, owner)
				}
			}
			for _, leaf := range []string{"syncagent/hw", "syncagent/queue", "syncagent/ops", "syncagent/jsonscan"} {
				if (p.ImportPath == leaf || strings.HasPrefix(p.ImportPath, leaf+"/")) && strings.HasPrefix(imp, "syncagent/") && !strings.HasPrefix(imp, leaf) && imp != "syncagent/jsonscan" {
					t.Errorf("%s imports %s: %s must not depend on the rest of syncagent", p.ImportPath, imp, leaf)
				}
			}
		}
	}
}

// TestBinaryDeps protects the binary's size and attack surface: test-only
// tools (toxiproxy and its metrics stack, the browser driver, our own test
// tooling) never reach syncagent itself.
func TestBinaryDeps(t *testing.T) {
	banned := []string{"github.com/Shopify/toxiproxy", "github.com/prometheus/", "github.com/gorilla/mux", "github.com/rs/zerolog", "github.com/goreleaser/",
		"github.com/chromedp/", "syncagent/testtools/"}
	for _, p := range list(t, "-deps", "./agent/cmd/syncagent") {
		for _, b := range banned {
			if strings.HasPrefix(p.ImportPath, b) {
				t.Errorf("the syncagent binary depends on %s", p.ImportPath)
			}
		}
	}
}

// importers are the packages a package may be imported by (its tests
// aside): the claims "Imported only by …" in package docs, checked so they
// stay true. The wiring is imported by the command line only; tools by
// their commands.
var importers = map[string][]string{
	"syncagent/agent/daemon":         {"syncagent/agent/cli", "syncagent/agent/demo"},
	"syncagent/agent/demo":           {"syncagent/agent/cli"},
	"syncagent/testtools/soak":       {"syncagent/testtools/cmd/soak"},
	"syncagent/packaging/vendorkeys": {"syncagent/agent/lock", "syncagent/agent/unlock"},
}

// TestImporters protects the "Imported only by" claims of package docs.
func TestImporters(t *testing.T) {
	for _, p := range list(t, "./...") {
		for _, imp := range p.Imports {
			allowed, ok := importers[imp]
			if !ok {
				continue
			}
			if !slices.Contains(allowed, p.ImportPath) {
				t.Errorf("%s imports %s; only %v may (fix the import, or this table and the package doc)", p.ImportPath, imp, allowed)
			}
		}
	}
}
