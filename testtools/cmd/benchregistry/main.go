// Command benchregistry measures the site registry at national scale
// (`make bench-registry`): a real primary (`syncagent run`, BuntDB) gets N
// sites through the real CLI (`syncagent sites import`, one unlock code
// issued with `syncagent authcode issue` for the whole file), then is
// restarted, and the time to start and to list or filter the sites with
// `syncagent sites` is printed as a table with the load average.
//
// Test tooling: nothing that ships imports it.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/loopback"
	"syncagent/agent/passwd"
	"syncagent/agent/primary"
	"syncagent/queue"
	"syncagent/queue/pg"
	"syncagent/testtools/pgtest"
)

func main() {
	bin := flag.String("bin", "bin/syncagent", "the syncagent binary to run")
	sites := flag.Int("sites", 40000, "sites to import")
	runs := flag.Int("runs", 3, "runs of each timed step (the median is shown)")
	keep := flag.Bool("keep", false, "keep the work directory")
	postgres := flag.Bool("postgres", true, "also measure the registry on PostgreSQL (testtools/pgtest), when it is installed")
	flag.Parse()
	if err := run(*bin, *sites, *runs, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "benchregistry:", err)
		os.Exit(1)
	}
	if !*postgres {
		return
	}
	if _, err := pgtest.FindBin(); err != nil {
		fmt.Printf("\nPostgreSQL: skipped (%v)\n", err)
		return
	}
	if err := runPostgres(*sites, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "benchregistry:", err)
		os.Exit(1)
	}
}

type bench struct {
	bin, dir, prefs, socket, addr string
	agent                         *exec.Cmd
	exited                        chan error
}

func run(bin string, n, runs int, keep bool) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "benchregistry-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	b := &bench{bin: bin, dir: dir, prefs: filepath.Join(dir, "prefs.toml"), socket: filepath.Join(dir, "control.sock")}
	if b.addr, err = loopback.FreeAddr(); err != nil {
		return err
	}
	// A vendor key of the bench's own, named by the prefs (root-owned: the
	// bench runs as root, as a test deployment would install it).
	keys := filepath.Join(dir, "keys")
	if _, err := b.cli("authcode", "keygen", "--out", keys, "--number", "9"); err != nil {
		return err
	}
	prefs := fmt.Sprintf("version = 1\n\n[site]\nsync_id = 1\ninterval_minutes = 5\n\n[paths]\nstate_dir = %q\ncontrol_socket = %q\nvendor_keys = %q\n\n[listen]\naddress = %q\n",
		dir, b.socket, filepath.Join(keys, "vendor-9.pub"), b.addr)
	if err := os.WriteFile(b.prefs, []byte(prefs), 0o600); err != nil {
		return err
	}
	file, err := writeSites(dir, n)
	if err != nil {
		return err
	}
	load0 := loadavg()
	if _, err := b.start(); err != nil {
		return err
	}
	defer b.stop()

	// The import: a dry run prints the digest, the vendor issues one code,
	// the import runs with it.
	out, err := b.cli("sites", "import", file, "--dry-run")
	if err != nil {
		return err
	}
	m := regexp.MustCompile(`hardware ID (\S+), change digest ([0-9a-f]{64})`).FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("the dry run printed no hardware ID and digest:\n%s", out)
	}
	code, err := b.cli("authcode", "issue", "--key", filepath.Join(keys, "vendor-9.key"), "--hwid", m[1], "--expires", "1h", "--seq", "1", "--change", m[2])
	if err != nil {
		return err
	}
	t0 := time.Now()
	if _, err := b.cli("sites", "import", file, "--code", strings.TrimSpace(code)); err != nil {
		return err
	}
	importTime := time.Since(t0)
	if err := b.waitSites(n, time.Minute); err != nil {
		return err
	}

	var starts []time.Duration
	for range runs {
		b.stop()
		d, err := b.start()
		if err != nil {
			return err
		}
		starts = append(starts, d)
	}
	timed := func(args ...string) ([]time.Duration, error) {
		var ds []time.Duration
		for range runs {
			t := time.Now()
			if _, err := b.cli(args...); err != nil {
				return nil, err
			}
			ds = append(ds, time.Since(t))
		}
		return ds, nil
	}
	list, err := timed("sites")
	if err != nil {
		return err
	}
	byPrefix, err := timed("sites", "--filter", "3999")
	if err != nil {
		return err
	}
	byStore, err := timed("sites", "--store", fmt.Sprintf("store-%d", n/2))
	if err != nil {
		return err
	}
	fi, _ := os.Stat(filepath.Join(dir, "central.db"))
	size := int64(0)
	if fi != nil {
		size = fi.Size()
	}

	fmt.Printf("site registry, BuntDB primary (syncagent run), %d sites imported by `syncagent sites import` (one code)\n", n)
	fmt.Printf("central.db %.1f MB; load average before %s, after %s; %d runs, median (max)\n\n", float64(size)/1e6, load0, loadavg(), runs)
	row := printTable()
	row("import (validate, write, apply)", []time.Duration{importTime}, 0)
	row("start to serving (sync API and control)", starts, 5*time.Second)
	row("syncagent sites (all "+fmt.Sprint(n)+")", list, 500*time.Millisecond)
	row("syncagent sites --filter 3999", byPrefix, 500*time.Millisecond)
	row("syncagent sites --store NAME", byStore, 500*time.Millisecond)
	return nil
}

// printTable prints the table's header and returns its row printer.
func printTable() func(name string, ds []time.Duration, target time.Duration) {
	fmt.Printf("%-44s %12s %12s %10s %s\n", "step", "median", "max", "target", "")
	return func(name string, ds []time.Duration, target time.Duration) {
		med, worst := median(ds), slices.Max(ds)
		verdict := ""
		if target > 0 {
			verdict = "met"
			if med >= target {
				verdict = "MISSED"
			}
		}
		tgt := "-"
		if target > 0 {
			tgt = "< " + target.String()
		}
		fmt.Printf("%-44s %12s %12s %10s %s\n", name, med.Round(time.Millisecond), worst.Round(time.Millisecond), tgt, verdict)
	}
}

// runPostgres measures the registry on PostgreSQL: the daemon does not
// run on it yet, so the rows go in through the store (one change, as the
// CLI's import makes) and the primary is a primary.Server in this process,
// opened again for each start.
func runPostgres(n, runs int) error {
	cluster, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	db, err := cluster.CreateDatabase("registry")
	if err != nil {
		return err
	}
	hash, err := passwd.Hash(passwd.SHA256Hex("bench-registry"))
	if err != nil {
		return err
	}
	log := slog.New(slog.DiscardHandler)
	open := func() (*pg.Store, *primary.Server, time.Duration, error) {
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		st, err := pg.Open(ctx, cluster.DSN(db), pg.Options{Logger: log, CallTimeout: 2 * time.Minute, StatementTimeout: time.Minute})
		if err != nil {
			return nil, nil, 0, err
		}
		prim, err := primary.New(st, primary.Config{}, log, nil)
		if err != nil {
			st.Close()
			return nil, nil, 0, err
		}
		return st, prim, time.Since(t0), nil
	}
	load0 := loadavg()
	st, _, _, err := open()
	if err != nil {
		return err
	}
	rows := make([]queue.SiteConfig, n)
	for i := range rows {
		id := i + 2
		rows[i] = queue.SiteConfig{SyncID: id, User: fmt.Sprintf("clinic-%d", id), PasswordHash: hash, Stores: []string{fmt.Sprintf("store-%d", id)}}
	}
	t0 := time.Now()
	if _, err := st.ChangeRegistry(0, queue.RegistryEdit{Put: rows}, queue.RegistryChange{By: "benchregistry", What: "import"}); err != nil {
		return err
	}
	importTime := time.Since(t0)
	st.Close()
	// The first start after the import publishes the 40,000 store rows.
	st, _, apply, err := open()
	if err != nil {
		return err
	}
	st.Close()
	var starts, list, byPrefix, byStore []time.Duration
	for range runs {
		st, prim, d, err := open()
		if err != nil {
			return err
		}
		starts = append(starts, d)
		t := time.Now()
		if got := len(prim.Sites()); got != n {
			return fmt.Errorf("the primary lists %d sites, want %d", got, n)
		}
		list = append(list, time.Since(t))
		t = time.Now()
		prim.SitesMatching("3999", "")
		byPrefix = append(byPrefix, time.Since(t))
		t = time.Now()
		prim.SitesMatching("", fmt.Sprintf("store-%d", n/2))
		byStore = append(byStore, time.Since(t))
		st.Close()
	}
	fmt.Printf("\nsite registry, PostgreSQL 15 (testtools/pgtest, same box), %d sites; primary.Server in process (no CLI: the daemon runs on BuntDB only in this branch)\n", n)
	fmt.Printf("load average before %s, after %s; %d runs, median (max)\n\n", load0, loadavg(), runs)
	row := printTable()
	row("import (one registry change, 40,000 rows)", []time.Duration{importTime}, 0)
	row("first start after it (publishes store rows)", []time.Duration{apply}, 0)
	row("start (open, migrate check, configure)", starts, 5*time.Second)
	row("Sites() (all)", list, 500*time.Millisecond)
	row("SitesMatching(\"3999\")", byPrefix, 500*time.Millisecond)
	row("SitesMatching(store NAME)", byStore, 500*time.Millisecond)
	return nil
}

// writeSites writes an import file of n sites, each with its own store.
// They share one password hash: hashing 40,000 passwords at the default
// cost would take hours, and logins are not what is measured.
func writeSites(dir string, n int) (string, error) {
	hash, err := passwd.Hash(passwd.SHA256Hex("bench-registry"))
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "sites.csv")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "sync_id,user,password_hash,stores,hardware_id,url")
	for i := range n {
		id := i + 2
		fmt.Fprintf(w, "%d,clinic-%d,%s,store-%d,,\n", id, id, hash, id)
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		return "", err
	}
	return path, nil
}

// cli runs the syncagent CLI and returns its output.
func (b *bench) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.bin, args...)
	cmd.Env = append(os.Environ(), "SYNCAGENT_PREFS="+b.prefs)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("syncagent %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// start runs the primary and returns how long it took to serve both the
// sync API and the control socket.
func (b *bench) start() (time.Duration, error) {
	t0 := time.Now()
	cmd := exec.Command(b.bin, "run", "--prefs", b.prefs, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	b.agent, b.exited = cmd, make(chan error, 1)
	go func() { b.exited <- cmd.Wait() }()
	c := control.NewClient(b.socket)
	hc := &http.Client{Timeout: time.Second}
	for deadline := t0.Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-b.exited:
			b.agent = nil
			return 0, fmt.Errorf("the primary exited at start: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Status(ctx)
		cancel()
		if err != nil {
			continue
		}
		resp, err := hc.Get("http://" + b.addr + "/sync/v5/site")
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			continue
		}
		resp.Body.Close()
		return time.Since(t0), nil
	}
	return 0, errors.New("the primary did not serve within 2 minutes")
}

// waitSites waits until the primary lists n sites.
func (b *bench) waitSites(n int, within time.Duration) error {
	c := control.NewClient(b.socket)
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := c.Sites(ctx)
		cancel()
		if err == nil && len(s) == n {
			return nil
		}
	}
	return fmt.Errorf("the primary does not list %d sites after %s", n, within)
}

func (b *bench) stop() {
	if b.agent == nil {
		return
	}
	b.agent.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(30 * time.Second):
		b.agent.Process.Kill()
		<-b.exited
	}
	b.agent = nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}
