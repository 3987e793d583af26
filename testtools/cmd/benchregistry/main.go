// Command benchregistry measures the site registry at national scale
// (`make bench-registry`): a real primary (`syncagent run`, on BuntDB, then
// on PostgreSQL from testtools/pgtest) gets N sites through the real CLI
// (`syncagent sites import`, one unlock code issued with `syncagent
// authcode issue` for the whole file), then is restarted, and the time to
// start and to list or filter the sites with `syncagent sites` is printed
// as a table with the load average. On PostgreSQL a second node serves the
// same database, and the time until it serves a site added on the first is
// measured too.
//
// Test tooling: nothing that ships imports it.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
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
	"syncagent/testtools/pgtest"

	"syncagent/testtools/benchtable"
)

func main() {
	bin := flag.String("bin", "bin/syncagent", "the syncagent binary to run")
	sites := flag.Int("sites", 40000, "sites to import")
	runs := flag.Int("runs", 3, "runs of each timed step (the median is shown)")
	keep := flag.Bool("keep", false, "keep the work directories")
	postgres := flag.Bool("postgres", true, "measure a primary on PostgreSQL (testtools/pgtest) too, when it is installed")
	buntdb := flag.Bool("buntdb", true, "measure a primary on BuntDB")
	flag.StringVar(&logLevel, "log-level", "warn", "the primaries' log level (their log goes to stderr)")
	flag.Parse()
	if err := run(*bin, *sites, *runs, *keep, *buntdb, *postgres); err != nil {
		fmt.Fprintln(os.Stderr, "benchregistry:", err)
		os.Exit(1)
	}
}

var logLevel string

func run(bin string, n, runs int, keep, buntdb, postgres bool) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "benchregistry-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(work)
	}
	v := &vendor{bin: bin, keys: filepath.Join(work, "keys")}
	if _, err := cli(bin, "", "authcode", "keygen", "--out", v.keys, "--number", "9"); err != nil {
		return err
	}
	file, err := writeSites(work, n)
	if err != nil {
		return err
	}
	if buntdb {
		if err := measure("BuntDB", v, file, n, runs, "", filepath.Join(work, "bunt")); err != nil {
			return err
		}
	}
	if !postgres {
		return nil
	}
	if _, err := pgtest.FindBin(); err != nil {
		fmt.Printf("\nPostgreSQL: skipped (%v)\n", err)
		return nil
	}
	cluster, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	db, err := cluster.CreateDatabase("registry")
	if err != nil {
		return err
	}
	return measure("PostgreSQL 15 (testtools/pgtest, same box)", v, file, n, runs, cluster.DSN(db), filepath.Join(work, "pg"))
}

// measure imports file into a primary at dir (on dsn when not "") and
// prints the table.
func measure(backend string, v *vendor, file string, n, runs int, dsn, dir string) error {
	a, err := newNode(v.bin, dir, "a", dsn, v.keys)
	if err != nil {
		return err
	}
	load0 := benchtable.LoadAvg()
	if _, err := a.start(); err != nil {
		return err
	}
	defer a.stop()
	t0, err := v.change(a, "sites", "import", file)
	if err != nil {
		return err
	}
	importTime := time.Since(t0)
	if err := a.waitSites(n, time.Minute); err != nil {
		return err
	}
	var starts []time.Duration
	for range runs {
		a.stop()
		d, err := a.start()
		if err != nil {
			return err
		}
		starts = append(starts, d)
	}
	timed := func(args ...string) ([]time.Duration, error) {
		var ds []time.Duration
		for range runs {
			t := time.Now()
			if _, err := cli(a.bin, a.prefs, args...); err != nil {
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
	// A second node on the same database serves a site the first added.
	var agree, added []time.Duration
	if dsn != "" {
		b, err := newNode(v.bin, dir, "b", dsn, v.keys)
		if err != nil {
			return err
		}
		if _, err := b.start(); err != nil {
			return err
		}
		defer b.stop()
		hash, err := passwd.Hash(passwd.SHA256Hex("bench-registry"))
		if err != nil {
			return err
		}
		c := control.NewClient(b.socket)
		for i := range runs {
			id := n + 2 + i
			t, err := v.change(a, "sites", "add", fmt.Sprint(id), "--user", fmt.Sprintf("clinic-%d", id), "--password-hash", hash, "--stores", "late")
			if err != nil {
				return err
			}
			added = append(added, time.Since(t))
			for time.Since(t) < time.Minute {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				got, err := c.SitesMatching(ctx, fmt.Sprint(id), "")
				cancel()
				if err == nil && len(got) == 1 {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			agree = append(agree, time.Since(t))
		}
	}
	size := ""
	if fi, err := os.Stat(filepath.Join(a.dir, "central.db")); err == nil {
		size = fmt.Sprintf("; central.db %.1f MB", float64(fi.Size())/1e6)
	}
	fmt.Printf("\nsite registry on %s: `syncagent run`, %d sites imported by `syncagent sites import` (one code)%s\n", backend, n, size)
	fmt.Printf("load average before %s, after %s; %d runs, median (max)\n\n", load0, benchtable.LoadAvg(), runs)
	row := printTable()
	row("syncagent sites import FILE --code CODE", []time.Duration{importTime}, 0)
	row("start to serving (sync API and control)", starts, 5*time.Second)
	row("syncagent sites (all "+fmt.Sprint(n)+")", list, 500*time.Millisecond)
	row("syncagent sites --filter 3999", byPrefix, 500*time.Millisecond)
	row("syncagent sites --store NAME", byStore, 500*time.Millisecond)
	if agree != nil {
		row("sites add --code on node A (the command)", added, 0)
		row("sites add --code on node A until B lists it", agree, 2*time.Second)
	}
	return nil
}

// printTable prints the table's header and returns its row printer.
func printTable() func(name string, ds []time.Duration, target time.Duration) {
	fmt.Printf("%-44s %12s %12s %10s %s\n", "step", "median", "max", "target", "")
	return func(name string, ds []time.Duration, target time.Duration) {
		med, worst := median(ds), slices.Max(ds)
		verdict, tgt := "", "-"
		if target > 0 {
			verdict, tgt = "met", "< "+target.String()
			if med >= target {
				verdict = "MISSED"
			}
		}
		fmt.Printf("%-44s %12s %12s %10s %s\n", name, med.Round(time.Millisecond), worst.Round(time.Millisecond), tgt, verdict)
	}
}

// vendor issues the bench's unlock codes, as the vendor would.
type vendor struct {
	bin, keys string
	seq       int
}

// change runs a site change on node n as an operator does: a dry run
// prints the hardware ID and digest, the vendor issues a code for them, the
// change runs with it. It returns when that last command started.
func (v *vendor) change(n *node, args ...string) (time.Time, error) {
	out, err := cli(n.bin, n.prefs, append(args, "--dry-run")...)
	if err != nil {
		return time.Time{}, err
	}
	m := regexp.MustCompile(`hardware ID (\S+), change digest ([0-9a-f]{64})`).FindStringSubmatch(out)
	if m == nil {
		return time.Time{}, fmt.Errorf("the dry run printed no hardware ID and digest:\n%s", out)
	}
	v.seq++
	code, err := cli(v.bin, "", "authcode", "issue", "--key", filepath.Join(v.keys, "vendor-9.key"), "--hwid", m[1], "--expires", "1h", "--seq", fmt.Sprint(v.seq), "--change", m[2])
	if err != nil {
		return time.Time{}, err
	}
	t := time.Now()
	_, err = cli(n.bin, n.prefs, append(args, "--code", strings.TrimSpace(code))...)
	return t, err
}

// writeSites writes an import file of n sites, each with its own store
// and a hardware ID to pre-pin.
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
		fmt.Fprintf(w, "%d,clinic-%d,%s,store-%d,hw-%d,\n", id, id, hash, id, id) // each pre-pinned
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		return "", err
	}
	return path, nil
}

// cli runs the syncagent CLI (with prefs, when not "") and returns its
// output.
func cli(bin, prefs string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = os.Environ()
	if prefs != "" {
		cmd.Env = append(cmd.Env, "SYNCAGENT_PREFS="+prefs)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("syncagent %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// node is one primary process.
type node struct {
	bin, dir, prefs, socket, addr string
	agent                         *exec.Cmd
	exited                        chan error
}

// newNode writes the prefs of a primary in dir/name: no prefs rows, the
// bench's vendor key (root-owned: the bench runs as root, as a test
// deployment would install it), on dsn when not "".
func newNode(bin, dir, name, dsn, keys string) (*node, error) {
	n := &node{bin: bin, dir: filepath.Join(dir, name)}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return nil, err
	}
	n.prefs, n.socket = filepath.Join(n.dir, "prefs.toml"), filepath.Join(n.dir, "control.sock")
	var err error
	if n.addr, err = loopback.FreeAddr(); err != nil {
		return nil, err
	}
	prefs := fmt.Sprintf("version = 1\n\n[site]\nsync_id = 1\ninterval_minutes = 5\n\n[paths]\nstate_dir = %q\ncontrol_socket = %q\nvendor_keys = %q\n\n[listen]\naddress = %q\n",
		n.dir, n.socket, filepath.Join(keys, "vendor-9.pub"), n.addr)
	if dsn != "" {
		key := filepath.Join(dir, "auth.key")
		if _, err := os.Stat(key); err != nil {
			if err := os.WriteFile(key, []byte(strings.Repeat("k", 32)), 0o600); err != nil {
				return nil, err
			}
		}
		prefs += fmt.Sprintf("\n[central]\ndatabase = %q\nauth_key_file = %q\n", dsn, key)
	}
	return n, os.WriteFile(n.prefs, []byte(prefs), 0o600)
}

// start runs the primary and returns how long it took to serve both the
// sync API and the control socket.
func (n *node) start() (time.Duration, error) {
	t0 := time.Now()
	cmd := exec.Command(n.bin, "run", "--prefs", n.prefs, "--log-level", logLevel)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	n.agent, n.exited = cmd, make(chan error, 1)
	go func() { n.exited <- cmd.Wait() }()
	c := control.NewClient(n.socket)
	hc := &http.Client{Timeout: time.Second}
	for deadline := t0.Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-n.exited:
			n.agent = nil
			return 0, fmt.Errorf("the primary exited at start: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ready(ctx)
		cancel()
		if err != nil {
			continue
		}
		resp, err := hc.Get("http://" + n.addr + "/sync/v5/site")
		if err != nil {
			continue
		}
		resp.Body.Close()
		return time.Since(t0), nil
	}
	return 0, errors.New("the primary did not serve within 2 minutes")
}

// waitSites waits until the primary lists n sites.
func (n *node) waitSites(want int, within time.Duration) error {
	c := control.NewClient(n.socket)
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := c.Sites(ctx)
		cancel()
		if err == nil && len(s) == want {
			return nil
		}
	}
	return fmt.Errorf("the primary does not list %d sites after %s", want, within)
}

func (n *node) stop() {
	if n.agent == nil {
		return
	}
	n.agent.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(30 * time.Second):
		n.agent.Process.Kill()
		<-n.exited
	}
	n.agent = nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
