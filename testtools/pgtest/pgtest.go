// Package pgtest starts throw-away PostgreSQL clusters for tests: initdb in
// a temporary directory, the server run as an unprivileged user (nobody when
// the tests run as root), listening on 127.0.0.1 on a free port with its
// unix socket in the same directory, stopped and removed when the tests end.
// A test binary shares one cluster, each test gets its own database:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestX(t *testing.T) { dsn := pgtest.DSN(t) … }
//
// Where PostgreSQL is not installed, DSN skips the test with the reason,
// unless SYNCAGENT_PG_REQUIRED=1 (CI sets it), where it fails instead. The
// binaries are found through SYNCAGENT_PG_BIN (a directory), then initdb on
// PATH, then /usr/lib/postgresql/<highest version>/bin (Debian's layout).
// It talks to the server only through PostgreSQL's own programs (psql,
// pg_isready), so it imports no driver. Test tooling: nothing that ships
// imports it.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Options tune a cluster.
type Options struct {
	// Settings are extra server settings (postgres -c name=value), applied
	// after the defaults (fsync on, max_connections 200, shared_buffers
	// 64MB).
	Settings map[string]string
}

// Cluster is one running throw-away PostgreSQL server.
type Cluster struct {
	dir  string // temporary directory: data/, the socket, server.log
	bin  string
	port int
	cred *syscall.Credential // nil: run as the current user
	proc *os.Process
	done chan struct{} // closed when the server process has exited
	n    atomic.Int64  // databases created
}

// Env names.
const (
	EnvBin      = "SYNCAGENT_PG_BIN"      // directory holding initdb, postgres, psql, pg_isready
	EnvRequired = "SYNCAGENT_PG_REQUIRED" // "1": a missing PostgreSQL fails instead of skipping
)

const superuser = "postgres"

// FindBin returns the directory of PostgreSQL's server programs, or an
// error saying where it looked.
func FindBin() (string, error) {
	if d := os.Getenv(EnvBin); d != "" {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
			return "", fmt.Errorf("%s=%s has no initdb: %w", EnvBin, d, err)
		}
		return d, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var best string
	bestVer := -1
	for _, d := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if _, serr := os.Stat(filepath.Join(d, "initdb")); err == nil && serr == nil && v > bestVer {
			best, bestVer = d, v
		}
	}
	if best == "" {
		return "", errors.New("PostgreSQL is not installed: no initdb on PATH, in $" + EnvBin + " or in /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)")
	}
	return best, nil
}

// Start initialises and starts a cluster. Stop it with Stop.
func Start(opts Options) (*Cluster, error) {
	bin, err := FindBin()
	if err != nil {
		return nil, err
	}
	removeStale()
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, bin: bin, done: make(chan struct{})}
	if err := c.start(opts); err != nil {
		c.Stop()
		return nil, fmt.Errorf("cannot start a test PostgreSQL in %s: %w", dir, err)
	}
	return c, nil
}

func (c *Cluster) start(opts Options) error {
	if os.Geteuid() == 0 {
		// The server refuses to run as root.
		u, err := user.Lookup("nobody")
		if err != nil {
			return fmt.Errorf("running as root needs an unprivileged user to run the server: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(c.dir, uid, gid); err != nil {
			return err
		}
	}
	data := filepath.Join(c.dir, "data")
	if out, err := c.run("initdb", "-D", data, "-U", superuser, "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	settings := map[string]string{
		"listen_addresses": "127.0.0.1", "unix_socket_directories": c.dir, "fsync": "on",
		"max_connections": "200", "shared_buffers": "64MB", "log_min_messages": "warning",
		"log_min_error_statement": "panic",
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var lastErr error
	for range 5 { // the free port may be taken between choosing and binding it
		port, err := freePort()
		if err != nil {
			return err
		}
		args := []string{"-D", data, "-p", strconv.Itoa(port)}
		for _, k := range keys {
			args = append(args, "-c", k+"="+settings[k])
		}
		if err := c.spawn(args); err != nil {
			return err
		}
		c.port = port
		if lastErr = c.waitReady(30 * time.Second); lastErr == nil {
			return nil
		}
		c.stopServer()
		c.done = make(chan struct{})
	}
	return fmt.Errorf("server did not become ready: %w\n%s", lastErr, c.logTail())
}

// spawn starts postgres from a goroutine locked to its OS thread, so the
// server gets SIGQUIT (immediate shutdown) if this process dies without
// stopping it (Pdeathsig follows the thread that started the child).
func (c *Cluster) spawn(args []string) error {
	logf, err := os.OpenFile(filepath.Join(c.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	started := make(chan error, 1)
	done := c.done
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the server
		defer close(done)
		defer logf.Close()
		cmd := exec.Command(filepath.Join(c.bin, "postgres"), args...)
		cmd.Dir, cmd.Stdout, cmd.Stderr, cmd.Env = c.dir, logf, logf, []string{"LANG=C", "LC_ALL=C", "PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		c.proc = cmd.Process
		started <- nil
		cmd.Wait()
	}()
	return <-started
}

func (c *Cluster) waitReady(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		out, err := c.runQuiet("pg_isready", "-q", "-h", c.dir, "-p", strconv.Itoa(c.port), "-U", superuser)
		if err == nil {
			return nil
		}
		select {
		case <-c.done:
			return errors.New("server exited")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pg_isready: %v %s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// run runs one of PostgreSQL's programs as the server's user.
func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Dir, cmd.Env = c.dir, []string{"LANG=C", "LC_ALL=C", "PATH=/usr/bin:/bin", "PGCONNECT_TIMEOUT=10"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	return cmd.CombinedOutput()
}

func (c *Cluster) runQuiet(name string, args ...string) ([]byte, error) { return c.run(name, args...) }

// Exec runs SQL as the superuser in database db (through psql).
func (c *Cluster) Exec(db, sql string) error {
	out, err := c.run("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", c.dir, "-p", strconv.Itoa(c.port),
		"-U", superuser, "-d", db, "-c", sql)
	if err != nil {
		return fmt.Errorf("psql %q: %w: %s", sql, err, bytes.TrimSpace(out))
	}
	return nil
}

// Query runs SQL as the superuser in database db and returns psql's
// unaligned output (fields separated by |, one row a line, no header).
func (c *Cluster) Query(db, sql string) (string, error) {
	out, err := c.run("psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", c.dir, "-p", strconv.Itoa(c.port),
		"-U", superuser, "-d", db, "-c", sql)
	if err != nil {
		return "", fmt.Errorf("psql %q: %w: %s", sql, err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)), nil
}

// Memory is the memory the server's processes (the postmaster and the
// backends now running) hold, in bytes: the sum of their proportional set
// sizes (Pss), so shared buffers mapped by every backend count once.
func (c *Cluster) Memory() int64 {
	var total int64
	for _, pid := range c.pids() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				total += kb << 10
			}
		}
	}
	return total
}

// pids are the server's processes: the postmaster and its children.
func (c *Cluster) pids() []int {
	if c.proc == nil {
		return nil
	}
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		end := bytes.LastIndexByte(b, ')')
		if end < 0 {
			continue
		}
		f := strings.Fields(string(b[end+1:]))
		if len(f) < 2 {
			continue
		}
		pid, _ := strconv.Atoi(strings.Fields(string(b))[0])
		ppid, _ := strconv.Atoi(f[1])
		if pid == c.proc.Pid || ppid == c.proc.Pid {
			out = append(out, pid)
		}
	}
	return out
}

// CPU is the processor time the server's processes have used so far (the
// postmaster and the backends now running; exited backends are counted by
// the postmaster only once reaped, so measure with sessions open).
func (c *Cluster) CPU() time.Duration {
	var total time.Duration
	for _, pid := range c.pids() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid … utime stime cutime cstime: fields 14-17.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 15 {
			continue
		}
		for _, i := range []int{11, 12, 13, 14} {
			n, _ := strconv.ParseInt(f[i], 10, 64)
			total += time.Duration(n) * time.Second / 100 // USER_HZ
		}
	}
	return total
}

// Port is the TCP port the server listens on (127.0.0.1).
func (c *Cluster) Port() int { return c.port }

// Dir is the cluster's temporary directory (data/, server.log, the socket).
func (c *Cluster) Dir() string { return c.dir }

// DSN is the URL of database db over TCP on loopback, as the superuser.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", superuser, c.port, db)
}

// SocketDSN is the URL of database db over the unix socket.
func (c *Cluster) SocketDSN(db string) string {
	return fmt.Sprintf("postgres://%s@/%s?host=%s&port=%d", superuser, db, c.dir, c.port)
}

// CreateDatabase creates a fresh database and returns its name.
func (c *Cluster) CreateDatabase(prefix string) (string, error) {
	name := fmt.Sprintf("%s_%d_%d", sanitize(prefix), os.Getpid(), c.n.Add(1))
	if err := c.Exec("postgres", "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		return "", err
	}
	return name, nil
}

// DropDatabase drops db, ending its sessions.
func (c *Cluster) DropDatabase(db string) error {
	return c.Exec("postgres", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)")
}

// Stop shuts the server down (fast shutdown) and removes its directory.
func (c *Cluster) Stop() error {
	c.stopServer()
	return os.RemoveAll(c.dir)
}

func (c *Cluster) stopServer() {
	if c.proc == nil {
		return
	}
	c.proc.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.proc.Signal(syscall.SIGQUIT)
		<-c.done
	}
	c.proc = nil
}

func (c *Cluster) logTail() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// removeStale removes the directories of clusters whose test binary died
// (its server went with it: Pdeathsig) more than a minute ago.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "pgtest-*"))
	for _, d := range dirs {
		st, err := os.Stat(d)
		if err != nil || time.Since(st.ModTime()) < time.Minute {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(d, "data", "postmaster.pid")); err == nil {
			pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
			if pid > 0 && syscall.Kill(pid, 0) == nil {
				continue // still running
			}
		}
		os.RemoveAll(d)
	}
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 30 {
			break
		}
	}
	if b.Len() == 0 || b.String()[0] < 'a' {
		return "t" + b.String()
	}
	return b.String()
}

// The cluster shared by one test binary.
var (
	sharedOnce sync.Once
	shared     *Cluster
	sharedErr  error
)

// Shared returns the test binary's cluster, starting it on first use. tb is
// skipped when PostgreSQL is not installed (failed when EnvRequired is set).
func Shared(tb testing.TB) *Cluster {
	tb.Helper()
	sharedOnce.Do(func() { shared, sharedErr = Start(Options{}) })
	if sharedErr != nil {
		if _, notInstalled := FindBin(); notInstalled != nil && os.Getenv(EnvRequired) != "1" {
			tb.Skipf("skipped: %v", sharedErr)
		}
		tb.Fatalf("%v", sharedErr)
	}
	return shared
}

// DSN returns the URL of a fresh database for tb in the shared cluster,
// dropped when tb ends.
func DSN(tb testing.TB) string {
	tb.Helper()
	c := Shared(tb)
	db, err := c.CreateDatabase(tb.Name())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := c.DropDatabase(db); err != nil {
			tb.Logf("cannot drop test database: %v", err)
		}
	})
	return c.DSN(db)
}

// Main runs the tests and then stops the shared cluster, if one was started.
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: cannot remove %s: %v\n", shared.dir, err)
		}
	}
	return code
}
