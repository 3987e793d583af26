package model

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"syncagent/testtools/pgtest"
)

var (
	seeds    = flag.Int("seeds", 0, "how many seeds to run (0: 200, or 20 with -short)")
	first    = flag.Uint64("seed", 1, "the first seed")
	steps    = flag.Int("steps", 150, "operations per seed before quiescence")
	verbose  = flag.Bool("history", false, "print the trace of every failed seed")
	logs     = flag.Bool("logs", false, "print the agents' logs")
	restores = flag.Bool("restores", true, "include restores of a satellite's datafile")
	backend  = flag.String("backend", BackendBunt, "the primary's storage: buntdb, or pg (a throw-away PostgreSQL, testtools/pgtest)")
	nodes    = flag.Int("nodes", 0, "pg: primary nodes on the one database, 1 or 2 (0: odd seeds 2, even seeds 1)")
	pgSeeds  = flag.Int("pg-seeds", 6, "seeds TestConvergencePostgres runs (2 with -short)")
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestConvergence is the replication property test (docs/replication.md):
// for each seed, a primary and 3–5 satellites sharing stores run random
// concurrent updates and deletes of the same records through a link that
// loses requests and answers, with restarts, initialise and generate
// mid-stream and store moves; after quiescence every site holds the
// primary's value of what it must hold, the primary holds the last change
// it accepted, and no change was dropped. `make soak-model SEEDS=N` runs
// more seeds and prints the ones that failed.
func TestConvergence(t *testing.T) {
	n := *seeds
	if n == 0 {
		n = 200
		if testing.Short() {
			n = 20
		}
	}
	runSeeds(t, *backend, *first, n)
}

// TestConvergencePostgres runs a few seeds of the same test on PostgreSQL
// (one node and two nodes on one database, alternately) in every `make
// test`; `make soak-model BACKEND=pg SEEDS=N` runs many. With -backend pg
// TestConvergence already does.
func TestConvergencePostgres(t *testing.T) {
	if *backend == BackendPG {
		t.Skip("TestConvergence runs on pg (-backend pg)")
	}
	n := *pgSeeds
	if testing.Short() {
		n = min(n, 2)
	}
	runSeeds(t, BackendPG, *first, n)
}

func runSeeds(t *testing.T, backend string, first uint64, n int) {
	var failed []string
	start := time.Now()
	for i := range n {
		seed := first + uint64(i)
		if problems, trace := runSeed(t, backend, seed); len(problems) > 0 {
			failed = append(failed, fmt.Sprint(seed))
			msg := fmt.Sprintf("seed %d: %d problems:\n  %s", seed, len(problems), strings.Join(problems[:min(len(problems), 12)], "\n  "))
			if *verbose {
				msg += "\ntrace:\n  " + strings.Join(trace, "\n  ")
			}
			t.Error(msg)
		}
	}
	t.Logf("%s: %d seeds from %d, %d steps each, in %s", backend, n, first, *steps, time.Since(start).Round(time.Millisecond))
	if len(failed) > 0 {
		t.Logf("failed seeds: %s (rerun one: go test ./testtools/model -run '^TestConvergence$' -backend %s -seeds 1 -seed N -history)", strings.Join(failed, " "), backend)
	}
}

func runSeed(t *testing.T, backend string, seed uint64) ([]string, []string) {
	dir, err := os.MkdirTemp(fastTemp(), "model-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	opts := Options{Seed: seed, Sites: 3 + int(seed%3), Steps: *steps, Faults: 0.15, Restores: *restores, Dir: dir, Backend: backend}
	if backend == BackendPG {
		c := pgtest.Shared(t)
		db, err := c.CreateDatabase(fmt.Sprintf("model_%d", seed))
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := c.DropDatabase(db); err != nil {
				t.Logf("seed %d: %v", seed, err)
			}
		}()
		opts.DSN, opts.Nodes = c.DSN(db), *nodes
		if opts.Nodes == 0 {
			opts.Nodes = 1 + int(seed%2)
		}
	}
	if *logs {
		opts.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w, err := New(opts)
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	defer w.Close()
	if err := w.Run(context.Background()); err != nil {
		return []string{err.Error()}, w.Trace
	}
	return w.check(), w.Trace
}

// fastTemp is a tmpfs when there is one: every commit is fsynced.
func fastTemp() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}
