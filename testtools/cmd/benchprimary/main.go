// Command benchprimary is `make bench-primary`: N simulated sites speaking
// v5 over real HTTP (testtools/loadgen: distinct users and hardware IDs,
// full cycles, each store on two sites for fan-out) against each setup of
// the primary — BuntDB with one node, PostgreSQL with one node and with
// three nodes on one database (a throw-away cluster, testtools/pgtest) —
// every node a process of its own serving the real agent/primary code. Per
// setup and rate it prints cycles/s, p50/p99/max per endpoint, records
// accepted and delivered per second, errors, node and database memory, and
// the saturation point: the highest rate served with no error, every
// endpoint's p99 under 200 ms and at least 90 % of the rate. Then an ingest
// run (50 sites pushing 500-record batches back to back) beside a baseline
// HTTP server that decodes each batch as JSON, appends it and fsyncs; and,
// with three nodes, a run of new records during which one node is killed
// and restarted, checked end to end (lost, duplicated).
//
// Other modes: -held N first pushes N records that stay held (p99 at 10k
// against 1M records), -bulk N copies records in the database by SQL to
// reach N (PostgreSQL: node memory and start at 10M), -auth-restart N
// times a restart with N sites that have their own passwords.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"syncagent/agent/passwd"
	"syncagent/agent/primary"
	"syncagent/testtools/loadgen"
	"syncagent/testtools/pgtest"

	"syncagent/testtools/benchtable"
)

type options struct {
	setups      []string
	sites       int
	rates       []float64
	step        time.Duration
	records     int
	payload     int
	ingest      time.Duration
	ingestNew   bool
	held        int64
	bulk        int64
	kill        bool
	killRate    float64
	authRestart int
	pgStats     bool
	warm        bool
	cpuProfile  string
	bin         string
}

func main() {
	var sf serveFlags
	flag.StringVar(&sf.kind, "serve", "", "run one node: bunt, pg, or the baseline (raw); used by the bench itself")
	flag.StringVar(&sf.addr, "addr", "127.0.0.1:0", "listen address of -serve")
	flag.StringVar(&sf.dir, "dir", "", "state directory of -serve")
	flag.StringVar(&sf.dsn, "dsn", "", "database of -serve pg")
	flag.StringVar(&sf.rows, "rows", "", "site rows (JSON) of -serve")
	flag.StringVar(&sf.name, "name", "benchprimary", "-serve pg: application_name")
	flag.StringVar(&sf.authKey, "auth-key", "", "-serve: primary.Config.AuthKey, hex")
	var o options
	setups := flag.String("setups", "bunt,pg,pg3", "setups to run: bunt (BuntDB, one node), pg (PostgreSQL, one node), pg3 (three nodes, one database)")
	flag.IntVar(&o.sites, "sites", 1000, "simulated sites")
	rates := flag.String("rates", "50,133,300,600", "cycles per second to try, in order")
	flag.DurationVar(&o.step, "step", 20*time.Second, "how long each rate runs")
	flag.IntVar(&o.records, "records", 10, "records a push carries")
	flag.IntVar(&o.payload, "payload", 300, "bytes of each record")
	flag.DurationVar(&o.ingest, "ingest", 15*time.Second, "how long each ingest run lasts (0: none)")
	flag.BoolVar(&o.ingestNew, "ingest-new", false, "ingest pushes only new records (by default each site updates 50 records over and over, so a 500-record batch holds each 10 times)")
	flag.Int64Var(&o.held, "held", 0, "records pushed before the rates and held (by loader sites whose stores no other site has, so nothing is queued)")
	flag.Int64Var(&o.bulk, "bulk", 0, "PostgreSQL: copy held records by SQL until the database holds this many, then restart the nodes (start time, memory)")
	flag.BoolVar(&o.kill, "kill", true, "three nodes: kill one during a run of new records and check every record arrives once")
	flag.Float64Var(&o.killRate, "kill-rate", 133, "cycles per second of the kill run")
	flag.IntVar(&o.authRestart, "auth-restart", 0, "only time a restart with this many sites with their own passwords (auth key on), per setup")
	flag.BoolVar(&o.warm, "warm", true, "before the rates, every site logs in once (its pin and password check done) and moves its central cursor to the head, as in a fleet that has been running")
	flag.BoolVar(&o.pgStats, "pg-stats", false, "print the statements that took the database's time (pg_stat_statements)")
	flag.StringVar(&o.bin, "bin", "", "run every node as this syncagent program (a primary from prefs: [[sync_with]] rows, [central] database), not as a -serve child; up to about 20,000 sites (the prefs' 4 MiB)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "-serve: write a CPU profile of the node to this file")
	flag.Parse()
	if sf.kind != "" {
		stopProfile := profile(o.cpuProfile)
		err := serveOne(sf)
		stopProfile()
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchprimary:", err)
			os.Exit(1)
		}
		return
	}
	o.setups = strings.Split(*setups, ",")
	for _, rs := range strings.Split(*rates, ",") {
		r, err := loadgen.ParseRate(rs)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchprimary: -rates:", err)
			os.Exit(2)
		}
		o.rates = append(o.rates, r)
	}
	if err := runBench(o); err != nil {
		fmt.Fprintln(os.Stderr, "benchprimary:", err)
		os.Exit(2)
	}
}

// maxPrefsSites is about what [[sync_with]] rows fit in the prefs' 4 MiB.
const maxPrefsSites = 20000

// loaders are the sites that push the held records: each has a store of
// its own, so what they push is held and queued to nobody.
const loaders = 10

// siteRows: sites 2..n+1, store k active on sites 2k and 2k+1 (each store
// on two sites), then the loaders. Passwords are distinct; their hashes use
// 1,000 iterations (the hash records its count), so setting up 40,000
// sites does not take hours.
func siteRows(n int) ([]primary.SiteRow, []*loadgen.Site, []*loadgen.Site, error) {
	passwd.Iterations = 1000
	var rows []primary.SiteRow
	var sites, load []*loadgen.Site
	for id := 2; id < n+2+loaders; id++ {
		pw := passwd.SHA256Hex(fmt.Sprintf("password of site %d", id))
		h, err := passwd.Hash(pw)
		if err != nil {
			return nil, nil, nil, err
		}
		stores := []string{fmt.Sprintf("store-%d", id/2)}
		if id >= n+2 {
			stores = []string{fmt.Sprintf("held-%d", id)}
		}
		rows = append(rows, primary.SiteRow{SyncID: id, User: fmt.Sprintf("site-%d", id), PasswordHash: h, Stores: stores})
		s := &loadgen.Site{ID: id, User: fmt.Sprintf("site-%d", id), Password: pw, HWID: fmt.Sprintf("hw-%d", id), Stores: stores}
		if id < n+2 {
			sites = append(sites, s)
		} else {
			load = append(load, s)
		}
	}
	return rows, sites, load, nil
}

// setup is one primary deployment under test.
type setup struct {
	name  string
	kind  string // bunt or pg
	nodes []*node
	dir   string
	db    string // pg: its database in the cluster
}

func (st *setup) urls() []string {
	var out []string
	for _, n := range st.nodes {
		out = append(out, n.url)
	}
	return out
}

// memory is the nodes' resident sets added up, now and at their peaks (MiB).
func (st *setup) memory() (now, peak int) {
	for _, n := range st.nodes {
		a, b := n.memory()
		now, peak = now+a, peak+b
	}
	return now, peak
}

func (st *setup) cpu() time.Duration {
	var d time.Duration
	for _, n := range st.nodes {
		d += n.cpu()
	}
	return d
}

func (st *setup) stop() {
	for _, n := range st.nodes {
		n.stop()
	}
}

// restart stops every node and starts it again; it returns the slowest
// start.
func (st *setup) restart() (time.Duration, error) {
	st.stop()
	var slowest time.Duration
	for _, n := range st.nodes {
		if err := n.start(); err != nil {
			return 0, err
		}
		slowest = max(slowest, n.started)
	}
	return slowest, nil
}

// bench is the whole run.
type bench struct {
	o        options
	rows     string // the site rows' file
	sites    []*loadgen.Site
	loaders  []*loadgen.Site
	tmp      string
	cluster  *pgtest.Cluster
	authKey  string
	baseline float64 // the raw server's records/s in the ingest run
	out      *tabwriter.Writer
}

func runBench(o options) error {
	tmp, err := os.MkdirTemp("", "benchprimary-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	b := &bench{o: o, tmp: tmp}
	n := o.sites
	if o.authRestart > 0 {
		n = o.authRestart
	}
	t0 := time.Now()
	rows, sites, load, err := siteRows(n)
	if err != nil {
		return err
	}
	b.sites, b.loaders = sites, load
	if o.bin != "" && (n > maxPrefsSites || o.authRestart > 0) {
		// The prefs file is capped at 4 MiB; -auth-restart seeds the
		// storage of -serve nodes.
		fmt.Printf("nodes run as -serve children (the agent/primary code in this program), not %s: %d sites\n", o.bin, n)
		b.o.bin = ""
	}
	b.rows = filepath.Join(tmp, "rows.json")
	js, _ := json.Marshal(rows)
	if err := os.WriteFile(b.rows, js, 0o600); err != nil {
		return err
	}
	key := make([]byte, 32)
	rand.Read(key)
	b.authKey = hex.EncodeToString(key)
	nodesAre := "-serve children (agent/primary in this program)"
	if b.o.bin != "" {
		nodesAre = "the syncagent program " + b.o.bin
	}
	fmt.Printf("nodes: %s\n", nodesAre)
	fmt.Printf("bench-primary: %d sites (each store on 2 sites, passwords hashed in %s), %d records of %d B a push, %s a rate; %s; load %s\n",
		n, time.Since(t0).Round(time.Millisecond), o.records, o.payload, o.step, time.Now().UTC().Format(time.RFC3339), benchtable.LoadAvg())
	if slices.ContainsFunc(o.setups, func(s string) bool { return strings.HasPrefix(s, "pg") }) {
		settings := map[string]string{"shared_buffers": "256MB", "max_connections": "100"}
		if v := os.Getenv("BENCH_PG_SET"); v != "" {
			k, val, _ := strings.Cut(v, "=")
			settings[k] = val
		}
		if o.pgStats {
			// And the plans of statements over 50 ms in the server's log,
			// copied out at the end.
			settings["shared_preload_libraries"] = "pg_stat_statements,auto_explain"
			settings["auto_explain.log_min_duration"] = "50ms"
			settings["auto_explain.log_analyze"] = "on"
		}
		if b.cluster, err = pgtest.Start(pgtest.Options{Settings: settings}); err != nil {
			return err
		}
		defer b.cluster.Stop()
		if o.pgStats {
			defer func() {
				log, _ := os.ReadFile(filepath.Join(b.cluster.Dir(), "server.log"))
				os.WriteFile("benchprimary-server.log", log, 0o644)
				fmt.Println("the server's log (plans of statements over 50 ms): benchprimary-server.log")
			}()
		}
		fmt.Printf("PostgreSQL: %s (fsync on, synchronous_commit on, shared_buffers 256MB), on the same 2 cores\n", b.cluster.Dir())
	}
	if o.authRestart > 0 {
		return b.authRestartAll()
	}
	fmt.Println()
	b.out = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	var summary []string
	for _, name := range o.setups {
		st, err := b.open(name, false)
		if err != nil {
			return err
		}
		s, err := b.runSetup(st)
		st.stop()
		if err != nil {
			return err
		}
		summary = append(summary, s...)
	}
	fmt.Println()
	for _, s := range summary {
		fmt.Println(s)
	}
	return nil
}

// open makes the storage of a setup and starts its nodes.
func (b *bench) open(name string, auth bool) (*setup, error) {
	st := &setup{name: name}
	count := 1
	switch name {
	case "bunt":
		st.kind, st.name = "bunt", "bunt, 1 node"
	case "pg":
		st.kind, st.name = "pg", "pg, 1 node"
	case "pg3":
		st.kind, st.name, count = "pg", "pg, 3 nodes", 3
	default:
		return nil, fmt.Errorf("unknown setup %q (bunt, pg or pg3)", name)
	}
	st.dir = filepath.Join(b.tmp, name)
	if err := os.MkdirAll(st.dir, 0o700); err != nil {
		return nil, err
	}
	var dsn string
	if st.kind == "pg" {
		db, err := b.cluster.CreateDatabase("bench_" + name)
		if err != nil {
			return nil, err
		}
		st.db, dsn = db, b.cluster.DSN(db)
		if b.o.pgStats {
			if err := b.cluster.Exec(db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
				return nil, err
			}
		}
	}
	for i := range count {
		if b.o.bin != "" {
			n, err := b.realNode(st, i, dsn)
			if err != nil {
				st.stop()
				return nil, err
			}
			st.nodes = append(st.nodes, n)
			continue
		}
		args := []string{"-serve", st.kind, "-dir", st.dir, "-rows", b.rows, "-dsn", dsn, "-name", fmt.Sprintf("node-%d", i+1)}
		if auth {
			args = append(args, "-auth-key", b.authKey)
		}
		if b.o.cpuProfile != "" {
			args = append(args, "-cpuprofile", fmt.Sprintf("%s.%s.%d", b.o.cpuProfile, name, i+1))
		}
		n, err := startNode(args...)
		if err != nil {
			st.stop()
			return nil, err
		}
		st.nodes = append(st.nodes, n)
	}
	return st, nil
}

// dbMemory is the database's memory (MiB, Pss of its processes) and size on
// disk (MiB), or zeros for BuntDB.
func (b *bench) dbMemory(st *setup) (mem, size int) {
	if st.kind != "pg" {
		return 0, 0
	}
	var bytes int64
	if out, err := b.cluster.Query(st.db, "SELECT pg_database_size(current_database())"); err == nil {
		fmt.Sscan(out, &bytes)
	}
	return int(b.cluster.Memory() >> 20), int(bytes >> 20)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
