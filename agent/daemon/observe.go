package daemon

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"syncagent/agent/metrics"
	"syncagent/agent/prefs"
	"syncagent/agent/version"
)

// observability is what the agent shows of itself beyond status: its
// metrics (the registry, the [metrics] textfile for node_exporter, `syncagent
// metrics`), the primary's admin listener ([admin]: the site list as a web
// page, its JSON, /metrics), and the ring of recent log lines a
// diagnostics bundle carries. It takes part in prefs changes as a component.
type observability struct {
	a     *Agent
	log   *slog.Logger
	reg   *metrics.Registry
	logs  *logRing
	admin *adminListener // the primary's, when [admin] has credentials at start; nil otherwise
	cfg   atomic.Pointer[prefs.Prefs]
	poke  chan struct{} // write the textfile now (a cycle ended)

	lastTextfileErr string // owned by Run
}

// textfileEvery is how often the metrics textfile is written (and after
// every cycle).
var textfileEvery = time.Minute

func newObservability(a *Agent, logs *logRing, p *prefs.Prefs) *observability {
	o := &observability{a: a, log: a.log.With("component", "metrics"), reg: metrics.New(), logs: logs, poke: make(chan struct{}, 1)}
	o.cfg.Store(p)
	switch r := a.role.(type) {
	case *primaryRole:
		r.prim.UseMetrics(o.reg)
		if p.Admin.Enabled() {
			o.admin = newAdminListener(r, p, o.write, a.log)
		}
	case *satelliteRole:
		r.fleet.reg.Store(o.reg)
		r.fleet.cycled = func() { poke(o.poke) }
		r.fleet.build = o.bundle
	}
	return o
}

// bind acquires the admin listener, with the role's (before the start is
// committed: a port in use fails the start).
func (o *observability) bind() error {
	if o.admin == nil {
		return nil
	}
	err := o.admin.bind()
	if r, ok := o.a.role.(*primaryRole); ok && err != nil && r.ln != nil {
		r.ln.Close() // the start fails: the sync listener is not served either
	}
	return err
}

// Run serves the admin listener and writes the textfile until ctx ends.
func (o *observability) Run(ctx context.Context) error {
	done := make(chan error, 1)
	if o.admin != nil {
		go func() { done <- o.admin.serve(ctx) }()
	} else {
		done <- nil
	}
	tick := time.NewTicker(textfileEvery)
	defer tick.Stop()
	o.writeTextfile()
	for {
		select {
		case <-ctx.Done():
			return <-done
		case <-tick.C:
			o.writeTextfile()
		case <-o.poke:
			o.writeTextfile()
		}
	}
}

// writeTextfile writes the metrics for node_exporter when [metrics]
// textfile_dir is set; a failure is logged once until it changes.
func (o *observability) writeTextfile() {
	dir := o.cfg.Load().Metrics.TextfileDir
	if dir == "" {
		return
	}
	err := metrics.WriteTextfile(dir, func(w io.Writer) { o.write(w, true) })
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != o.lastTextfileErr {
		if err != nil {
			o.log.Warn("cannot write the metrics textfile", "dir", dir, "err", err)
		} else {
			o.log.Info("metrics textfile written again", "dir", dir)
		}
		o.lastTextfileErr = msg
	}
}

// Metrics is the Prometheus text exposition of `syncagent metrics`.
func (o *observability) Metrics() []byte {
	var b bytes.Buffer
	o.write(&b, false)
	return b.Bytes()
}

// write writes the registry's counters, the role's gauges and, unless
// figuresOnly (a textfile), the process's own figures.
func (o *observability) write(w io.Writer, figuresOnly bool) {
	gauges := o.gauges()
	if figuresOnly {
		o.reg.WriteFigures(w, gauges)
		return
	}
	o.reg.Write(w, gauges)
}

func (o *observability) gauges() []metrics.Gauge {
	st := o.a.Status()
	var out []metrics.Gauge
	add := func(name, help string, value float64) {
		out = append(out, metrics.Gauge{Name: name, Help: help, Value: value})
	}
	out = append(out, metrics.Gauge{Name: "syncagent_build_info", Help: "the running release and build", Value: 1,
		Labels: map[string]string{"release": version.Release, "version": version.Version, "role": st.Role}})
	add("syncagent_start_time_seconds", "when the agent started", float64(st.StartedAt.Unix()))
	add("syncagent_sync_enabled", "1 when sync runs (0: disabled or paused)", b2f(st.SyncEnabled))
	add("syncagent_prefs_ok", "1 when the prefs on disk are what runs", b2f(st.Prefs.State == "ok"))
	if fi, err := os.Stat(o.a.role.datafile()); err == nil {
		add("syncagent_datafile_bytes", "the datafile's size (on the primary: the storage's)", float64(fi.Size()))
	}
	switch r := o.a.role.(type) {
	case *primaryRole:
		out = append(out, r.prim.Gauges()...)
	case *satelliteRole:
		add("syncagent_outbox_records", "changes waiting to be pushed", float64(st.OutboxLength))
		add("syncagent_set_aside_records", "records set aside (refused by the primary)", float64(st.SetAside))
		add("syncagent_datafile_records", "records in the datafile", float64(st.Records))
		h := r.health()
		add("syncagent_outbox_age_seconds", "how long the oldest waiting change has waited", float64(h.OutboxAge))
		add("syncagent_free_bytes", "free space in the state directory", float64(h.FreeBytes))
		if !st.LastSuccess.IsZero() {
			add("syncagent_last_success_timestamp_seconds", "the last successful cycle", float64(st.LastSuccess.Unix()))
		}
		if st.LastFailure != nil {
			add("syncagent_last_failure_timestamp_seconds", "the last failed cycle", float64(st.LastFailure.Finished.Unix()))
		}
		if st.LastSync != nil {
			add("syncagent_last_sync_ok", "1 when the last cycle succeeded", b2f(st.LastSync.Error == ""))
		}
		if !st.NextSync.IsZero() {
			add("syncagent_next_sync_timestamp_seconds", "when the next cycle is planned", float64(st.NextSync.Unix()))
		}
		if sat := r.sat.Load(); sat != nil {
			e := sat.Status().Link
			add("syncagent_link_rtt_seconds", "the request sizer's estimate of a request's fixed cost", e.RTT.Seconds())
			add("syncagent_link_bytes_per_second", "the request sizer's estimate of the link's throughput", e.BytesPerSec)
			add("syncagent_link_failures_per_second", "the request sizer's estimate of failures per second of exposure", e.FailuresPerSec)
			add("syncagent_push_batch_bytes", "the next push batch's byte bound", float64(e.Bytes))
		}
	default:
		add("syncagent_outbox_records", "changes waiting (sync disabled)", float64(st.OutboxLength))
		add("syncagent_datafile_records", "records in the datafile", float64(st.Records))
	}
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// The settings observability applies while running: the textfile
// directory (the next write uses it); the admin credentials while the
// admin listener runs (it is closed when they are removed); every admin
// setting on a box that is not the primary (none of them is used there).
func (o *observability) live(setting string) bool {
	switch {
	case setting == "metrics.textfile_dir":
		return true
	case !strings.HasPrefix(setting, "admin."):
		return false
	case o.a.role.kind() != prefs.RolePrimary:
		return true
	}
	return o.admin != nil && (setting == "admin.user" || setting == "admin.password_hash")
}

func (o *observability) verify(*prefs.Prefs) error { return nil }

func (o *observability) commit(next *prefs.Prefs) string {
	o.cfg.Store(next)
	if o.admin != nil {
		o.admin.configure(next)
	}
	poke(o.poke)
	return ""
}
