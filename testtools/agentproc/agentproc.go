// Package agentproc runs the syncagent binary as a child process for the
// test tools (the benchmarks, the crash soak): started with its output in a
// log, waited for until it answers, stopped as systemd stops it or killed,
// its CPU read from /proc. It is the one place those tools start agents.
package agentproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Proc is one running (or ended) agent process.
type Proc struct {
	Log     string    // where its stdout and stderr go
	Started time.Time // just before exec
	cmd     *exec.Cmd
	done    chan struct{} // closed once it has exited
}

// Start runs bin with args, appending its output to the file log. The
// environment is the caller's without systemd's variables (NOTIFY_SOCKET,
// STATE_DIRECTORY, RUNTIME_DIRECTORY: a test agent is not under systemd),
// then env, whose entries win.
func Start(bin string, args []string, log string, env ...string) (*Proc, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%w (build it first: make build)", err)
	}
	logf, err := os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	p := &Proc{Log: log, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), append([]string{"NOTIFY_SOCKET=", "STATE_DIRECTORY=", "RUNTIME_DIRECTORY="}, env...)...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.Started = time.Now()
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("cannot start %s: %w", bin, err)
	}
	go func() { p.cmd.Wait(); logf.Close(); close(p.done) }()
	return p, nil
}

// Pid is the process's ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitAnswer calls ping (each call given a second) every poll until it
// succeeds; it fails when the process exits first, ctx ends, or limit
// passes, naming the log and its last lines.
func (p *Proc) WaitAnswer(ctx context.Context, limit, poll time.Duration, ping func(context.Context) error) error {
	deadline := time.Now().Add(limit)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("the agent exited at start (%s); %s:\n%s", p.cmd.ProcessState, p.Log, Tail(p.Log, 20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the agent did not answer within %v (see %s): %w", limit, p.Log, err)
		}
	}
}

// Stop sends sig (SIGTERM as `systemctl stop` does, or SIGINT), waits up
// to grace for the process to end, then kills it.
func (p *Proc) Stop(sig os.Signal, grace time.Duration) {
	if p.Exited() {
		return
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Kill sends SIGKILL and waits (up to 10 s) for the process to be gone.
func (p *Proc) Kill() error {
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("cannot kill the agent: %w", err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("the agent did not die within 10s of SIGKILL")
	}
}

// CPU is the CPU time (user + system) the process has used so far, read
// from /proc (0 once it has ended).
func (p *Proc) CPU() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
	if err != nil {
		return 0
	}
	return statCPU(b)
}

// statCPU reads utime and stime from a /proc/<pid>/stat line: the 14th and
// 15th fields, counted after the command's name (which may hold spaces and
// parentheses) closes.
func statCPU(stat []byte) time.Duration {
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times (100 on
// every Linux this runs on).
const clockTicks = 100

// Tail returns the last lines of a file, for error messages.
func Tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	ls := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return string(bytes.Join(ls, []byte("\n")))
}
