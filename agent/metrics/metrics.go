// Package metrics is syncagent's figures in the Prometheus text exposition
// format: the primary's at /metrics on its admin listener, a satellite's
// through `syncagent metrics` and, for node_exporter's textfile collector,
// a file written atomically. It is the only package that imports the
// metrics library (github.com/VictoriaMetrics/metrics: maintained, no
// dependencies of note, about 0.3 MB in the binary where the Prometheus
// client would cost several).
package metrics

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
)

// Registry holds the counters and histograms that grow while the agent
// runs; gauges that describe the present are written at each scrape by the
// caller (Snapshot). Safe for concurrent use; a nil *Registry counts
// nothing.
type Registry struct {
	set *vm.Set
}

// New returns an empty registry.
func New() *Registry { return &Registry{set: vm.NewSet()} }

// Request counts one request served (or, on a satellite, made) on
// endpoint with method, with its status (0: no answer came) and how long it
// took.
func (r *Registry) Request(method, endpoint string, status int, took time.Duration) {
	if r == nil {
		return
	}
	r.set.GetOrCreateCounter(fmt.Sprintf(`syncagent_requests_total{method=%q,endpoint=%q,status="%d"}`, method, endpoint, status)).Inc()
	r.set.GetOrCreatePrometheusHistogram(fmt.Sprintf(`syncagent_request_duration_seconds{method=%q,endpoint=%q}`, method, endpoint)).Update(took.Seconds())
}

// Cycle counts one sync cycle by its result ("ok", "failed", "refused").
func (r *Registry) Cycle(result string) {
	if r == nil {
		return
	}
	r.set.GetOrCreateCounter(fmt.Sprintf(`syncagent_cycles_total{result=%q}`, result)).Inc()
}

// Records counts records by what happened to them: "accepted",
// "duplicate", "refused", "delivered", "acknowledged" (primary), "pushed",
// "pulled", "applied", "set_aside" (satellite).
func (r *Registry) Records(what string, n int) {
	if r == nil || n <= 0 {
		return
	}
	r.set.GetOrCreateCounter(fmt.Sprintf(`syncagent_records_total{what=%q}`, what)).Add(n)
}

// Event counts something that happened, such as a rejected health block.
func (r *Registry) Event(what string) {
	if r == nil {
		return
	}
	r.set.GetOrCreateCounter(fmt.Sprintf(`syncagent_events_total{what=%q}`, what)).Inc()
}

// Gauge is one figure of the present, with its labels.
type Gauge struct {
	Name   string
	Help   string
	Labels map[string]string
	Value  float64
}

// Write writes the registry's counters and histograms, then gauges (the
// present: queue depths, per-site health, storage size), then the
// process's own figures (process_*, go_*).
func (r *Registry) Write(w io.Writer, gauges []Gauge) {
	r.WriteFigures(w, gauges)
	vm.WriteProcessMetrics(w)
}

// WriteFigures is Write without the process's own figures: what a textfile
// for node_exporter holds (node_exporter has go_* and process_* of its own,
// and refuses a textfile that repeats them).
func (r *Registry) WriteFigures(w io.Writer, gauges []Gauge) {
	if r != nil {
		r.set.WritePrometheus(w)
	}
	helped := map[string]bool{}
	sort.SliceStable(gauges, func(i, j int) bool { return gauges[i].Name < gauges[j].Name })
	for _, g := range gauges {
		if !helped[g.Name] {
			helped[g.Name] = true
			if g.Help != "" {
				fmt.Fprintf(w, "# HELP %s %s\n", g.Name, g.Help)
			}
			fmt.Fprintf(w, "# TYPE %s gauge\n", g.Name)
		}
		vm.WriteGaugeFloat64(w, g.Name+labels(g.Labels), g.Value)
	}
}

func labels(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, m[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// WriteTextfile writes the figures to dir/syncagent.prom for
// node_exporter's textfile collector: to a temporary file first, fsynced,
// then renamed, so the collector never reads half a file.
func WriteTextfile(dir string, write func(io.Writer)) error {
	f, err := os.CreateTemp(dir, ".syncagent.prom.*")
	if err != nil {
		return fmt.Errorf("cannot write metrics to %s: %w", dir, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	write(f)
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "syncagent.prom"))
}
