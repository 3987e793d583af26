package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"syncagent/agent/passwd"
	"syncagent/testtools/loadgen"

	"syncagent/testtools/benchtable"
)

// runSetup measures one setup: held records, rates, ingest, the kill run.
// It prints the rates' rows as it goes and returns the summary lines.
func (b *bench) runSetup(st *setup) ([]string, error) {
	ctx := context.Background()
	o := b.o
	var summary []string
	started := st.nodes[0].started
	for _, n := range st.nodes {
		started = max(started, n.started)
	}
	summary = append(summary, fmt.Sprintf("%s: node start %s (empty)", st.name, started.Round(time.Millisecond)))
	held := int64(0)
	if o.held > 0 || (o.bulk > 0 && st.kind == "pg") {
		want := max(o.held, 5000)
		t0 := time.Now()
		// Batches small enough that the loaders' first round does not
		// overshoot a small target.
		batch := int(min(5000, max(100, want/loaders)))
		res := loadgen.Run(ctx, loadgen.Config{URLs: st.urls(), Sites: b.loaders, Rate: 1000, Duration: time.Hour, Records: batch,
			Payload: o.payload, Workers: loaders, PushOnly: true, Distinct: true, Limit: want})
		if res.Failed > 0 {
			return nil, fmt.Errorf("%s: pushing the held records: %d failed: %v", st.name, res.Failed, res.FirstErrors)
		}
		held = res.Accepted
		took := time.Since(t0)
		settled := ""
		if st.kind == "pg" && o.bulk <= held { // a bulk copy settles after itself
			// Pushed in seconds, the held rows leave the checkpoint of
			// their gigabyte of WAL and the autovacuum of a million
			// fresh inserts to run in the measurement window; a
			// database that grew to them over months had both long
			// before.
			t1 := time.Now()
			for _, sql := range []string{"VACUUM (ANALYZE)", "CHECKPOINT"} {
				if err := b.cluster.Exec(st.db, sql); err != nil {
					return nil, fmt.Errorf("%s: %s after the held records: %w", st.name, sql, err)
				}
			}
			settled = fmt.Sprintf(", vacuumed, analysed and checkpointed in %s", time.Since(t1).Round(100*time.Millisecond))
		}
		restart, err := st.restart()
		if err != nil {
			return nil, err
		}
		now, _ := st.memory()
		summary = append(summary, fmt.Sprintf("%s: %d records pushed in %s (%.0f records/s)%s, then node start %s, node RSS %d MiB; load %s",
			st.name, held, took.Round(time.Second), float64(held)/took.Seconds(), settled, restart.Round(time.Millisecond), now, benchtable.LoadAvg()))
	}
	if o.bulk > held && st.kind == "pg" {
		t0 := time.Now()
		n, err := b.bulk(st, o.bulk-held)
		if err != nil {
			return nil, err
		}
		held += n
		restart, err := st.restart()
		if err != nil {
			return nil, err
		}
		now, _ := st.memory()
		mem, size := b.dbMemory(st)
		summary = append(summary, fmt.Sprintf("%s: copied by SQL to %d records in %s; node start %s, node RSS %d MiB, database %d MiB on disk, its processes %d MiB; load %s",
			st.name, held, time.Since(t0).Round(time.Second), restart.Round(time.Millisecond), now, size, mem, benchtable.LoadAvg()))
	}
	if o.warm {
		res := loadgen.Run(ctx, loadgen.Config{URLs: st.urls(), Sites: b.sites, Rate: 5000, Duration: time.Hour, Workers: 64, Login: true, ToHead: true, Each: true})
		if res.Failed > 0 {
			return nil, fmt.Errorf("%s: first logins: %d failed: %v", st.name, res.Failed, res.FirstErrors)
		}
		summary = append(summary, fmt.Sprintf("%s: every site's first login (pin, password check; central cursor to the head) in %s", st.name, res.Took.Round(time.Millisecond)))
	}
	if o.pgStats && st.kind == "pg" {
		b.cluster.Query(st.db, "SELECT pg_stat_statements_reset()")
	}
	fmt.Fprintln(b.out, "setup\theld\trate\tcycles/s\terrors\tskipped\tendpoint\tp50\tp99\tmax\taccepted/s\tdelivered/s\tnode RSS MiB\tdb MiB\tnode CPU\tdb CPU\tload\t")
	saturation := 0.0
	for _, rate := range o.rates {
		cpu0, db0 := st.cpu(), b.dbCPU(st)
		res := loadgen.Run(ctx, loadgen.Config{URLs: st.urls(), Sites: b.sites, Rate: rate, Duration: o.step, Records: o.records, Payload: o.payload})
		cpu, dbCPU := st.cpu()-cpu0, b.dbCPU(st)-db0
		rss, _ := st.memory()
		mem, _ := b.dbMemory(st)
		for i, ep := range res.Endpoints() {
			ds := res.Latency[ep]
			if i == 0 {
				fmt.Fprintf(b.out, "%s\t%d\t%.0f\t%.1f\t%d\t%d\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%d\t%d\t%s\t%s\t%s\t\n", st.name, held, rate, res.CyclesPerSecond, res.Failed, res.Skipped, ep,
					ms(loadgen.Percentile(ds, .5)), ms(loadgen.Percentile(ds, .99)), ms(ds[len(ds)-1]), res.AcceptedPerSec, res.DeliveredPerSec, rss, mem,
					pct(cpu, res.Took), pct(dbCPU, res.Took), benchtable.LoadAvg())
			} else {
				fmt.Fprintf(b.out, "\t\t\t\t\t\t%s\t%s\t%s\t%s\t\t\t\t\t\t\t\t\n", ep, ms(loadgen.Percentile(ds, .5)), ms(loadgen.Percentile(ds, .99)), ms(ds[len(ds)-1]))
			}
		}
		for _, e := range res.FirstErrors {
			fmt.Fprintf(b.out, "\t\t\t\t\t\terror: %.100s\t\t\t\t\t\t\t\t\t\t\t\n", e)
		}
		b.out.Flush()
		if res.Failed == 0 && res.WorstEndpointP99 < 200*time.Millisecond && res.CyclesPerSecond >= 0.9*rate {
			saturation = rate
		}
	}
	summary = append(summary, fmt.Sprintf("%s: saturation (no error, every p99 < 200 ms, >= 90%% of the rate): %.0f cycles/s of those tried", st.name, saturation))
	if o.pgStats && st.kind == "pg" {
		b.printStatements(st, "the rates")
	}
	if o.ingest > 0 {
		if o.pgStats && st.kind == "pg" {
			b.cluster.Query(st.db, "SELECT pg_stat_statements_reset()")
		}
		s, err := b.ingestRun(ctx, st)
		if err != nil {
			return nil, err
		}
		summary = append(summary, s...)
		if o.pgStats && st.kind == "pg" {
			b.printStatements(st, "the ingest")
		}
	}
	if o.kill && len(st.nodes) > 1 {
		s, err := b.killRun(ctx, st)
		if err != nil {
			return nil, err
		}
		summary = append(summary, s)
	}
	return summary, nil
}

func pct(cpu, wall time.Duration) string {
	if wall <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*cpu.Seconds()/wall.Seconds())
}

func (b *bench) dbCPU(st *setup) time.Duration {
	if st.kind != "pg" {
		return 0
	}
	return b.cluster.CPU()
}

// bulk copies one held record n times in the database, a million rows a
// statement, each copy a new record of the same loader's store with its own
// version (what n pushes of that record's data under new ids would leave),
// then vacuums and analyses, as the autovacuum of a database that grew
// slowly would have.
func (b *bench) bulk(st *setup, n int64) (int64, error) {
	tmpl, err := b.cluster.Query(st.db, "SELECT id FROM records WHERE tbl = 'item_line' AND id LIKE 'held-%' LIMIT 1")
	if err != nil || tmpl == "" {
		return 0, fmt.Errorf("no held record to copy (%v)", err)
	}
	done := int64(0)
	for done < n {
		k := min(1_000_000, n-done)
		sql := fmt.Sprintf(`INSERT INTO records (tbl, id, version, action, deleted, owner, central, holders, parent_tbl, parent_id, held, marks, data, log_cursor)
			SELECT r.tbl, r.id || '-c' || (g + %d), nextval('versions'), r.action, r.deleted, r.owner, r.central, r.holders, r.parent_tbl, r.parent_id, r.held, NULL, r.data, r.log_cursor
			FROM records r, generate_series(1, %d) g WHERE r.tbl = 'item_line' AND r.id = '%s'`, done, k, tmpl)
		if err := b.cluster.Exec(st.db, sql); err != nil {
			return done, err
		}
		done += k
		fmt.Printf("  %s: %d of %d records copied; load %s\n", st.name, done, n, benchtable.LoadAvg())
	}
	return done, b.cluster.Exec(st.db, "VACUUM (ANALYZE) records")
}

// printStatements prints the ten statements that took the database's
// time since the last reset, during what.
func (b *bench) printStatements(st *setup, what string) {
	out, err := b.cluster.Query(st.db, `SELECT round(total_exec_time)::bigint, calls, round(mean_exec_time::numeric, 3), rows,
		left(regexp_replace(query, '\s+', ' ', 'g'), 110) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 10`)
	if err != nil {
		fmt.Println("pg_stat_statements:", err)
		return
	}
	fmt.Printf("\n%s: statements by total time over %s (pg_stat_statements)\n", st.name, what)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "total ms\tcalls\tmean ms\trows\tstatement")
	for _, line := range strings.Split(out, "\n") {
		fmt.Fprintln(tw, strings.ReplaceAll(line, "|", "\t"))
	}
	tw.Flush()
	fmt.Println()
}

// ingestRun pushes 500-record batches from 50 sites as fast as they are
// answered, at the raw baseline (once per bench) and at the setup.
func (b *bench) ingestRun(ctx context.Context, st *setup) ([]string, error) {
	sites := b.sites[:min(50, len(b.sites))]
	cfg := loadgen.Config{Sites: sites, Rate: 2000, Duration: b.o.ingest, Records: 500, Payload: 300, Workers: 50, PushOnly: true, Distinct: b.o.ingestNew}
	var out []string
	kind := "ingest"
	if b.o.ingestNew {
		kind = "ingest of new records"
	}
	if b.baseline == 0 {
		raw, err := startNode("-serve", "raw", "-dir", b.tmp)
		if err != nil {
			return nil, err
		}
		cfg.URLs = []string{raw.url}
		cpu0 := raw.cpu()
		res := loadgen.Run(ctx, cfg)
		cpu := raw.cpu() - cpu0
		raw.stop()
		b.baseline = res.AcceptedPerSec
		push := res.Latency["POST queued_records"]
		out = append(out, fmt.Sprintf("%s, raw JSON + append + fsync: %.0f records/s, push p50 %s p99 %s, %.1f µs CPU/record; load %s",
			kind, res.AcceptedPerSec, ms(loadgen.Percentile(push, .5)), ms(loadgen.Percentile(push, .99)), perRecord(cpu, res.Accepted), benchtable.LoadAvg()))
	}
	cfg.URLs = st.urls()
	cpu0, db0 := st.cpu(), b.dbCPU(st)
	res := loadgen.Run(ctx, cfg)
	cpu, dbCPU := st.cpu()-cpu0, b.dbCPU(st)-db0
	push := res.Latency["POST queued_records"]
	line := fmt.Sprintf("%s, %s: %.0f records/s (%.2f× the baseline), push p50 %s p99 %s, node %.1f µs CPU/record",
		kind, st.name, res.AcceptedPerSec, res.AcceptedPerSec/b.baseline, ms(loadgen.Percentile(push, .5)), ms(loadgen.Percentile(push, .99)), perRecord(cpu, res.Accepted))
	if st.kind == "pg" {
		line += fmt.Sprintf(", database %.1f µs CPU/record", perRecord(dbCPU, res.Accepted))
	}
	if res.Failed > 0 {
		line += fmt.Sprintf(", %d failed (%v)", res.Failed, res.FirstErrors)
	}
	return append(out, line+"; load "+benchtable.LoadAvg()), nil
}

func perRecord(cpu time.Duration, n int64) float64 {
	if n == 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / float64(n)
}

// killRun pushes new records at the kill rate while the second node is
// killed (SIGKILL) a third of the way in and started again at two thirds;
// sites of a node that is down go to the next one (loadgen's failover).
// Then every queue is drained and every accepted record must have reached
// the other site of its store, once.
func (b *bench) killRun(ctx context.Context, st *setup) (string, error) {
	ledger := loadgen.NewLedger(b.sites)
	cfg := loadgen.Config{URLs: st.urls(), Sites: b.sites, Rate: b.o.killRate, Duration: b.o.step, Records: b.o.records, Payload: b.o.payload,
		Distinct: true, Ledger: ledger}
	// Whatever the rates left queued is not this run's: drain it first.
	if err := loadgen.Drain(ctx, cfg); err != nil {
		return "", err
	}
	victim := st.nodes[1]
	var restartErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(b.o.step / 3)
		victim.kill()
		time.Sleep(b.o.step / 3)
		restartErr = victim.start()
	}()
	res := loadgen.Run(ctx, cfg)
	<-done
	if restartErr != nil {
		return "", fmt.Errorf("restarting the killed node: %w", restartErr)
	}
	if err := loadgen.Drain(ctx, cfg); err != nil {
		return "", err
	}
	v := ledger.Check()
	line := fmt.Sprintf("kill, %s: node 2 SIGKILLed at %s and restarted (in %s) at %s of a %s run at %.0f cycles/s: %d cycles, %d errors, %d failovers; %d new records accepted, %d deliveries expected, %d lost, %d duplicated; load %s",
		st.name, b.o.step/3, victim.started.Round(time.Millisecond), 2*b.o.step/3, b.o.step, b.o.killRate, res.Cycles, res.Failed, res.Failovers, v.Accepted, v.Deliveries, v.Lost, v.Duplicated, benchtable.LoadAvg())
	for _, e := range res.FirstErrors {
		line += "\n    error: " + e
	}
	for _, e := range v.Examples {
		line += "\n    lost: " + e
	}
	return line, nil
}

// authRestartAll times, for each one-node setup, a restart with every site
// known. The storage is first given what a running fleet leaves in it: each
// site pinned, and the token its last verified password left (with the
// node's auth key). The site rows carry hashes with the agent's iteration
// count that no password matches: a login that fell back to the slow hash
// would cost its 115 ms and then fail, so "0 errors" means every site got in
// by its token. Then the node starts, and every site logs in once, as fast
// as it is answered.
func (b *bench) authRestartAll() error {
	ctx := context.Background()
	n := len(b.sites)
	h, err := passwdHashReal()
	if err != nil {
		return err
	}
	fmt.Printf("one check of a password hashed as the agent does (%d iterations): %s, so %d sites would cost %s of the two slow-hash slots\n\n",
		agentIterations, h.Round(time.Millisecond), n, (time.Duration(n) * h / 2).Round(time.Second))
	rows, err := unmatchableRows(b.rows)
	if err != nil {
		return err
	}
	key, _ := hex.DecodeString(b.authKey)
	for _, name := range b.o.setups {
		if name == "pg3" {
			continue
		}
		st, err := b.open(name, true) // makes the storage; stopped at once
		if err != nil {
			return err
		}
		st.stop()
		t0 := time.Now()
		if err := b.seedFleet(st, rows, key); err != nil {
			return err
		}
		seeded := time.Since(t0)
		for _, nd := range st.nodes {
			nd.args = append(nd.args, "-rows", rows.file) // the later -rows wins
		}
		restart, err := st.restart()
		if err != nil {
			return err
		}
		cpu0 := st.cpu()
		res := loadgen.Run(ctx, loadgen.Config{URLs: st.urls(), Sites: b.sites, Rate: 5000, Duration: time.Hour, Workers: 64, Login: true, Each: true})
		cpu := st.cpu() - cpu0
		st.stop()
		p := res.Latency["GET site"]
		fmt.Printf("auth restart, %s: %d sites pinned and given their tokens (in %s); node started in %s; then %d of %d let in within %s, %d errors, GET site p50 %s p99 %s, node CPU %s (%.0f µs a login); load %s\n",
			st.name, n, seeded.Round(time.Millisecond), restart.Round(time.Millisecond), res.Cycles-res.Failed, n, res.Took.Round(time.Millisecond), res.Failed,
			ms(loadgen.Percentile(p, .5)), ms(loadgen.Percentile(p, .99)), cpu.Round(10*time.Millisecond), perRecord(cpu, int64(res.Cycles)), benchtable.LoadAvg())
		for _, e := range res.FirstErrors {
			fmt.Println("    error:", e)
		}
	}
	return nil
}

// agentIterations is the count the agent hashes with (the bench's own site
// rows use 1,000).
var agentIterations = passwd.Iterations

// passwdHashReal times one verification of a password hashed with the
// agent's iteration count.
func passwdHashReal() (time.Duration, error) {
	saved := passwd.Iterations
	defer func() { passwd.Iterations = saved }()
	passwd.Iterations = agentIterations
	pw := passwd.SHA256Hex("x")
	h, err := passwd.Hash(pw)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if ok, err := passwd.Verify(h, pw); !ok || err != nil {
		return 0, fmt.Errorf("verify: %v %v", ok, err)
	}
	return time.Since(t0), nil
}

// profile starts a CPU profile into path ("" none) and returns its stop.
func profile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchprimary:", err)
		return func() {}
	}
	pprof.StartCPUProfile(f)
	return func() { pprof.StopCPUProfile(); f.Close() }
}
