// Package cli is syncagent's command line. Commands that act on the running
// agent talk to it over the control socket; only offline commands (prefs
// check, hwid, passwd, authcode, version) read disk.
//
// Imported only by agent/cmd/syncagent.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"syncagent/agent/daemon"
	"syncagent/ops"
)

// DefaultPrefs is where the installed agent's prefs live.
const DefaultPrefs = "/etc/syncagent/prefs.toml"

// env is what every command gets.
type env struct {
	ctx    context.Context
	prefs  string // --prefs
	socket string // --socket, overriding the prefs' control_socket
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	fs     *flag.FlagSet
}

// command is one subcommand ("status", "sites clear-hwid").
type command struct {
	name    string
	args    string // synopsis of positional arguments
	summary string
	help    string
	nargs   [2]int // min, max positional arguments (max -1: any)
	flags   func(fs *flag.FlagSet)
	run     func(e *env, args []string) error
}

var commands []*command

func register(c *command) { commands = append(commands, c) }

// usageError is a mistake in how a command was called (exit 2).
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// Main runs the command line and returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := dispatch(ctx, args, stdin, stdout, stderr)
	if err == nil {
		return ops.ExitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return ops.ExitOK
	}
	fmt.Fprintf(stderr, "syncagent: %s\n", oneLine(err.Error()))
	var ue usageError
	var xe *daemon.ExitError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "Run `syncagent --help` for the list of commands.")
		return ops.ExitUsage
	case errors.As(err, &xe):
		return xe.Code
	}
	return ops.ExitError
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " (…)"
	}
	return s
}

func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	e := &env{ctx: ctx, prefs: DefaultPrefs, stdin: stdin, stdout: stdout, stderr: stderr}
	if v := os.Getenv("SYNCAGENT_PREFS"); v != "" {
		e.prefs = v
	}
	rest, help, err := takeGlobal(args, e)
	if err != nil {
		return err
	}
	cmd, cmdArgs := findCommand(rest)
	if cmd == nil {
		if len(rest) == 0 || help {
			printUsage(stdout)
			if len(rest) == 0 && !help {
				return usagef("no command given")
			}
			return nil
		}
		return usagef("unknown command %q", strings.Join(words(rest), " "))
	}
	fs := flag.NewFlagSet("syncagent "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&e.prefs, "prefs", e.prefs, "prefs `FILE`")
	fs.StringVar(&e.socket, "socket", e.socket, "control socket `PATH` (default: the prefs' control_socket)")
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	e.fs = fs
	if help {
		printCommandHelp(stdout, cmd, fs)
		return nil
	}
	pos, err := parseInterspersed(fs, cmdArgs)
	if errors.Is(err, flag.ErrHelp) {
		printCommandHelp(stdout, cmd, fs)
		return nil
	}
	if err != nil {
		return usagef("%s: %v", cmd.name, err)
	}
	if len(pos) < cmd.nargs[0] || (cmd.nargs[1] >= 0 && len(pos) > cmd.nargs[1]) {
		return usagef("usage: syncagent %s %s", cmd.name, cmd.args)
	}
	return cmd.run(e, pos)
}

// takeGlobal pulls --prefs/--socket given before the command, and notes
// --help anywhere before it.
func takeGlobal(args []string, e *env) (rest []string, help bool, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case a == "-h" || a == "--help" || a == "-help":
			help = true
		case strings.HasPrefix(a, "-") && (name == "prefs" || name == "socket") && len(rest) == 0:
			if !hasVal {
				if i+1 >= len(args) {
					return nil, false, usagef("--%s needs a value", name)
				}
				i++
				val = args[i]
			}
			if name == "prefs" {
				e.prefs = val
			} else {
				e.socket = val
			}
		default:
			rest = append(rest, a)
		}
	}
	return rest, help, nil
}

// findCommand matches the longest command name at the start of args.
func findCommand(args []string) (*command, []string) {
	w := words(args)
	var best *command
	bestLen := 0
	for _, c := range commands {
		parts := strings.Fields(c.name)
		if len(parts) > len(w) || len(parts) <= bestLen {
			continue
		}
		match := true
		for i, p := range parts {
			if w[i] != p {
				match = false
				break
			}
		}
		if match {
			best, bestLen = c, len(parts)
		}
	}
	if best == nil {
		return nil, nil
	}
	// Remove the command's words, wherever flags sit among them.
	out, dropped := make([]string, 0, len(args)), 0
	for _, a := range args {
		if dropped < bestLen && !strings.HasPrefix(a, "-") {
			dropped++
			continue
		}
		out = append(out, a)
	}
	return best, out
}

// words are the leading arguments that are not flags.
func words(args []string) []string {
	var w []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			continue
		}
		w = append(w, a)
	}
	return w
}

// parseInterspersed parses flags anywhere among positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `syncagent keeps a clinic box's medical-supply records in step with a central
primary server over bad links, and is that primary when sync_id = 1.

Usage: syncagent [--prefs FILE] COMMAND [ARGS] [FLAGS]

Commands:
`)
	sorted := append([]*command(nil), commands...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-20s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
Every command takes --prefs FILE (default %s, or $SYNCAGENT_PREFS)
before or after it, and --help. Commands other than run, hwid, passwd,
prefs check, authcode and version talk to the running agent over its
control socket.

Exit status: 0 success, 1 failure, 2 usage error, 3 invalid prefs at start.
`, DefaultPrefs)
}

func printCommandHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: syncagent %s %s\n\n%s\n", c.name, c.args, c.summary)
	if c.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.help))
	}
	fmt.Fprintln(w, "\nFlags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}
