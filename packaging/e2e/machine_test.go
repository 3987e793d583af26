package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// workParent holds each run's overlay upper dirs. Not under /tmp (hidden by
// the namespace's own /tmp) and not under an overlaid directory (overlayfs
// refuses an upper dir inside its lower dir); boot.sh hides it from inside.
const workParent = "/var/tmp"

// runPrefix names a run's work dir and cgroup, so a later run can find what
// a killed one left behind.
const runPrefix = "syncagent-e2e-"

// maskedUnits would act on the host or are not wanted: tmpfiles would empty
// directories, sysctl/remount-fs/modules-load would tune the kernel and the
// root mount, the rest start daemons nothing here needs. The test target
// pulls in none of them anyway; masking makes that hold even if something
// asks for them.
var maskedUnits = []string{
	"systemd-tmpfiles-setup.service", "systemd-tmpfiles-setup-dev.service",
	"systemd-tmpfiles-setup-dev-early.service", "systemd-tmpfiles-clean.service",
	"systemd-tmpfiles-clean.timer", "systemd-sysctl.service", "systemd-remount-fs.service",
	"systemd-modules-load.service", "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount",
	"systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
	"systemd-udev-trigger.service", "systemd-hwdb-update.service", "systemd-random-seed.service",
	"systemd-update-utmp.service", "systemd-journald-audit.socket", "systemd-journal-flush.service",
	"systemd-timesyncd.service", "systemd-networkd.service", "systemd-resolved.service",
	"systemd-logind.service", "systemd-firstboot.service", "systemd-machine-id-commit.service",
	"systemd-pstore.service", "systemd-sysusers.service", "systemd-fsck-root.service",
	"console-getty.service", "getty@tty1.service", "getty-static.service",
	"apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
	"fstrim.timer", "man-db.timer", "cron.service", "ssh.service", "postgresql.service",
	"docker.service", "docker.socket", "containerd.service",
}

// testTarget is the only thing systemd is asked to reach: journald, nothing else.
const testTarget = `[Unit]
Description=syncagent end-to-end test (nothing else starts)
DefaultDependencies=no
Wants=systemd-journald.service
After=systemd-journald.service
`

// machine is a systemd booted in its own namespaces.
type machine struct {
	t       *testing.T
	work    string // this run's work dir under workParent
	cgroup  string // host path of this run's cgroup2 subtree
	unshare *exec.Cmd
	waited  chan struct{}
	pid1    int // host PID of the namespaces' PID 1 (systemd)
}

// preflight skips, with the reason, where the test cannot run.
func preflight(t *testing.T) (deb string) {
	t.Helper()
	if os.Getenv("SYNCAGENT_SYSTEMD_E2E") != "1" {
		t.Skip("skipped: boots a real systemd in namespaces; run `make systemd-e2e` (as root), or set SYNCAGENT_SYSTEMD_E2E=1 and SYNCAGENT_E2E_DEB")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root (namespaces, mounts, dpkg)")
	}
	for _, tool := range []string{"/lib/systemd/systemd", "unshare", "nsenter", "dpkg", "mknod", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipped: %s is not installed (`make systemd-e2e` installs what it needs)", tool)
		}
	}
	out, err := exec.Command("unshare", "--fork", "--pid", "--mount", "--mount-proc", "--uts", "--ipc", "--net", "--cgroup", "true").CombinedOutput()
	if err != nil {
		t.Skipf("skipped: cannot create namespaces here: %v: %s", err, bytes.TrimSpace(out))
	}
	if _, err := cgroupParent(); err != nil {
		t.Skipf("skipped: %v", err)
	}
	deb = os.Getenv("SYNCAGENT_E2E_DEB")
	if deb == "" {
		t.Fatal("SYNCAGENT_E2E_DEB is not set: `make systemd-e2e` builds the .deb (with -tags faultinject) and sets it")
	}
	if _, err := os.Stat(deb); err != nil {
		t.Fatalf("the .deb to test: %v", err)
	}
	return deb
}

// cgroupParent is the host path of this process's own cgroup2 directory,
// under which each run makes its subtree.
func cgroupParent() (string, error) {
	mount := ""
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPEROPTS
		fields := strings.Fields(sc.Text())
		i := slices.Index(fields, "-")
		if i > 4 && i+1 < len(fields) && fields[i+1] == "cgroup2" && fields[3] == "/" {
			mount = fields[4]
			break
		}
	}
	if mount == "" {
		return "", errors.New("no cgroup2 hierarchy is mounted (systemd inside needs one)")
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Join(mount, rest), nil
		}
	}
	return "", errors.New("this process is in no cgroup2 cgroup")
}

// removeStale removes what a run killed before its cleanup left: cgroup
// subtrees with no process in them, and their work dirs.
func removeStale(t *testing.T, parent string) {
	dirs, _ := filepath.Glob(filepath.Join(parent, runPrefix+"*"))
	for _, d := range dirs {
		if cgroupPopulated(d) {
			continue // another run, still going
		}
		t.Logf("removing what an earlier run left: %s", d)
		removeCgroup(d)
		os.RemoveAll(filepath.Join(workParent, filepath.Base(d)))
	}
}

func cgroupPopulated(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	return err == nil && bytes.Contains(b, []byte("populated 1"))
}

// removeCgroup removes a cgroup subtree, deepest first.
func removeCgroup(dir string) {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		os.Remove(d)
	}
}

// boot starts systemd in new namespaces with deb staged at /var/cache/syncagent-e2e
// and waits until it has reached the test target. Cleanup kills it and removes
// every trace, whether the test passed or not.
func boot(t *testing.T, deb string) *machine {
	t.Helper()
	parent, err := cgroupParent()
	if err != nil {
		t.Fatal(err)
	}
	removeStale(t, parent)
	var rnd [4]byte
	rand.Read(rnd[:])
	name := runPrefix + hex.EncodeToString(rnd[:])
	m := &machine{t: t, work: filepath.Join(workParent, name), cgroup: filepath.Join(parent, name), waited: make(chan struct{})}
	if err := os.Mkdir(m.work, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(m.cgroup, 0o755); err != nil {
		os.RemoveAll(m.work)
		t.Fatalf("cannot make a cgroup for the run: %v", err)
	}
	m.guardHost()
	t.Cleanup(m.teardown)
	m.stage(deb)

	script, err := filepath.Abs("boot.sh")
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(m.work, "boot.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// The shell moves itself into the run's cgroup, then becomes unshare,
	// whose child becomes PID 1 of the new namespaces (--cgroup makes the
	// run's cgroup their root). --kill-child and Pdeathsig: if this test
	// process dies, unshare dies, and so does the whole PID namespace.
	m.unshare = exec.Command("sh", "-c", `echo $$ >"$1/cgroup.procs" && exec unshare --fork --kill-child --pid --mount --mount-proc --uts --ipc --net --cgroup --propagation private "$2" "$3"`,
		"sh", m.cgroup, script, m.work)
	m.unshare.Stdout, m.unshare.Stderr = logf, logf
	m.unshare.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := m.unshare.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.unshare.Wait(); close(m.waited) }()

	deadline := time.Now().Add(10 * time.Second)
	for m.pid1 == 0 {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", m.unshare.Process.Pid, m.unshare.Process.Pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			m.pid1, _ = strconv.Atoi(f[0])
			break
		}
		select {
		case <-m.waited:
			t.Fatalf("the namespace ended at once: %s", m.bootLog())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare started no PID 1")
		}
	}
	m.waitFor("systemd to reach the test target", 60*time.Second, func() (bool, string) {
		select {
		case <-m.waited:
			t.Fatalf("systemd ended during boot: %s", m.bootLog())
		default:
		}
		out, _ := m.run("", "systemctl", "is-system-running")
		out = strings.TrimSpace(out)
		return out == "running" || out == "degraded", out
	})
	// Holds only if the namespaces work as intended: systemd sees a
	// container, and PID 1 in here is systemd.
	if out, _ := m.run("", "systemd-detect-virt", "--container"); strings.TrimSpace(out) == "none" {
		t.Fatal("systemd does not see a container: refusing to go on")
	}
	return m
}

// guardHost leaves canary files in the host's /tmp, /var/tmp and /run and
// notes whether the host has the package, and checks after the teardown
// that the namespace changed none of that (cleanups run last in, first out,
// so this one runs after teardown).
func (m *machine) guardHost() {
	t := m.t
	var canaries []string
	for _, dir := range []string{"/tmp", "/var/tmp", "/run"} {
		f, err := os.CreateTemp(dir, runPrefix+"canary-")
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		canaries = append(canaries, f.Name())
	}
	hostHas := func() string {
		out, _ := exec.Command("dpkg-query", "-W", "-f", "${Status} ${Version}", "syncagent").CombinedOutput()
		_, binErr := os.Stat("/usr/bin/syncagent")
		return fmt.Sprintf("%s; /usr/bin/syncagent exists: %v", bytes.TrimSpace(out), binErr == nil)
	}
	before := hostHas()
	t.Cleanup(func() {
		for _, c := range canaries {
			if _, err := os.Stat(c); err != nil {
				t.Errorf("the host's %s lost a file during the run: %v", filepath.Dir(c), err)
			}
			os.Remove(c)
		}
		if after := hostHas(); after != before {
			t.Errorf("the host's package state changed: before %q, after %q", before, after)
		}
	})
}

// stage writes the test's systemd configuration and the package into the
// overlay's upper dirs, before the overlay is mounted.
func (m *machine) stage(deb string) {
	t := m.t
	etc := filepath.Join(m.work, "upper", "etc")
	write := func(path, text string) {
		p := filepath.Join(etc, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(path string) {
		p := filepath.Join(etc, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/dev/null", p); err != nil {
			t.Fatal(err)
		}
	}
	write("systemd/system/syncagent-e2e.target", testTarget)
	for _, u := range maskedUnits {
		link("systemd/system/" + u)
	}
	// Generators (fstab, getty, sysv, …) would add units from the host's
	// configuration: none may run.
	for _, dir := range []string{"/lib/systemd/system-generators", "/usr/lib/systemd/system-generators"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if _, err := os.Lstat(filepath.Join(etc, "systemd/system-generators", e.Name())); err != nil {
				link("systemd/system-generators/" + e.Name())
			}
		}
	}
	write("systemd/journald.conf.d/e2e.conf", "[Journal]\nStorage=volatile\nForwardToConsole=no\nForwardToKMsg=no\nForwardToWall=no\n")
	write("systemd/system.conf.d/e2e.conf", "[Manager]\nShowStatus=no\nDefaultTimeoutStartSec=30s\nDefaultTimeoutStopSec=30s\n")

	cache := filepath.Join(m.work, "upper", "var", "cache", "syncagent-e2e")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(deb)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(filepath.Join(cache, "syncagent.deb"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// teardown kills PID 1 of the namespaces (the kernel then kills every
// process in them and drops their mounts), and removes the cgroup subtree
// and the work dir. On failure it first logs what systemd saw.
func (m *machine) teardown() {
	t := m.t
	if m.pid1 != 0 && t.Failed() {
		for _, args := range [][]string{
			{"systemctl", "status", "--no-pager", "-l", "syncagent", "syncagent-e2e-primary"},
			{"systemctl", "list-units", "--no-pager", "--failed"},
			{"journalctl", "--no-pager", "-n", "400", "-o", "short-monotonic"},
		} {
			out, _ := m.run("", args...)
			t.Logf("$ %s\n%s", strings.Join(args, " "), out)
		}
		t.Logf("boot.log and console:\n%s", m.bootLog())
	}
	if m.pid1 != 0 {
		syscall.Kill(m.pid1, syscall.SIGKILL)
	}
	if m.unshare != nil && m.unshare.Process != nil {
		select {
		case <-m.waited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-m.unshare.Process.Pid, syscall.SIGKILL)
			<-m.waited
		}
	}
	// The kernel may take a moment to empty the cgroups.
	for i := 0; i < 100 && cgroupPopulated(m.cgroup); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	removeCgroup(m.cgroup)
	if _, err := os.Stat(m.cgroup); err == nil {
		t.Errorf("could not remove the run's cgroup %s", m.cgroup)
	}
	if err := os.RemoveAll(m.work); err != nil {
		t.Errorf("could not remove the run's work dir: %v", err)
	}
}

func (m *machine) bootLog() string {
	var b strings.Builder
	for _, name := range []string{"boot.log", "console.log"} {
		data, _ := os.ReadFile(filepath.Join(m.work, name))
		if len(data) > 8000 {
			data = data[len(data)-8000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s", name, data)
	}
	return b.String()
}

// run runs a command inside the namespaces (as root, within 60s) and returns
// its combined output.
func (m *machine) run(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nsenter := append([]string{"-t", strconv.Itoa(m.pid1), "-m", "-u", "-i", "-n", "-p", "-C", "--"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", nsenter...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "TERM=dumb"}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s: timed out", strings.Join(args, " "))
	}
	return string(out), err
}

// must runs a command inside and fails the test if it fails.
func (m *machine) must(args ...string) string {
	m.t.Helper()
	out, err := m.run("", args...)
	if err != nil {
		m.t.Fatalf("$ %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// writeFile writes a file inside the namespaces, keeping the owner and mode
// of a file already there.
func (m *machine) writeFile(path, text string) {
	m.t.Helper()
	out, err := m.run(text, "sh", "-c", `mkdir -p "$(dirname "$1")" && cat >"$1"`, "sh", path)
	if err != nil {
		m.t.Fatalf("cannot write %s: %v: %s", path, err, out)
	}
}

// show is one property of a unit.
func (m *machine) show(unit, prop string) string {
	m.t.Helper()
	return strings.TrimSpace(m.must("systemctl", "show", "-p", prop, "--value", unit))
}

// waitFor polls cond until it holds, failing with its last word after limit.
func (m *machine) waitFor(what string, limit time.Duration, cond func() (bool, string)) {
	m.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("waited %v for %s; last: %s", limit, what, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
