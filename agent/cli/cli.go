// Package cli is syncagent's command line. Commands that act on the running
// agent talk to it over the control socket; only offline commands (prefs
// check, hwid, passwd, authcode, version) read disk.
//
// Imported by agent/cmd/syncagent.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"

	"syncagent/agent/daemon"
	"syncagent/agent/version"
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
	var le linesError
	if errors.As(err, &le) {
		fmt.Fprintf(stderr, "syncagent: %s\n", strings.TrimSpace(err.Error()))
	} else {
		fmt.Fprintf(stderr, "syncagent: %s\n", oneLine(err.Error()))
	}
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

// linesError is an error every line of which is printed: the refusals of
// an import, one per line of the file.
type linesError struct{ error }

func (e linesError) Unwrap() error { return e.error }

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
	rest, g, err := takeGlobal(args, e)
	if err != nil {
		return err
	}
	if g.version && len(words(rest)) == 0 {
		fmt.Fprintln(stdout, "syncagent", version.Version)
		return nil
	}
	if w := words(rest); len(w) > 0 && w[0] == "help" { // `syncagent help [COMMAND]`
		rest, g.help = dropFirstWord(rest), true
	}
	cmd, cmdArgs := findCommand(rest)
	if cmd == nil {
		if group := words(rest); len(group) > 0 && printGroup(stdout, group) {
			return nil
		}
		if len(rest) == 0 || g.help {
			printUsage(stdout)
			if len(rest) == 0 && !g.help {
				return usagef("no command given")
			}
			return nil
		}
		return usagef("unknown command %q", strings.Join(words(rest), " "))
	}
	fs := flag.NewFlagSet("syncagent "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	fs.StringVar(&e.prefs, "prefs", e.prefs, "prefs `FILE`")
	fs.StringVar(&e.socket, "socket", e.socket, "control socket `PATH` (default: the prefs' control_socket)")
	e.fs = fs
	if g.help {
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

// globals are the flags that may come before the command.
type globals struct{ help, version bool }

// takeGlobal pulls --prefs/--socket given before the command, and notes
// --help and --version anywhere before it (and before a `--`).
func takeGlobal(args []string, e *env) (rest []string, g globals, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(rest, args[i:]...), g, nil
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case a == "-h" || a == "--help" || a == "-help":
			g.help = true
		case (a == "--version" || a == "-version") && len(words(rest)) == 0:
			g.version = true
		case strings.HasPrefix(a, "-") && (name == "prefs" || name == "socket") && len(rest) == 0:
			if !hasVal {
				if i+1 >= len(args) {
					return nil, g, usagef("--%s needs a value", name)
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
	return rest, g, nil
}

func dropFirstWord(args []string) []string {
	for i, a := range args {
		if !strings.HasPrefix(a, "-") {
			return append(append([]string(nil), args[:i]...), args[i+1:]...)
		}
	}
	return args
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

// words are the arguments that are not flags, up to a `--`.
func words(args []string) []string {
	var w []string
	for _, a := range args {
		if a == "--" {
			break
		}
		if strings.HasPrefix(a, "-") {
			continue
		}
		w = append(w, a)
	}
	return w
}

// parseInterspersed parses flags anywhere among positional arguments; after
// a `--` everything is positional (an ID that starts with "-").
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos, after []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, after = args[:i], args[i+1:]
	}
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return append(pos, after...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// subcommands are the commands whose name starts with the words prefix.
func subcommands(prefix []string) []*command {
	var out []*command
	for _, c := range commands {
		parts := strings.Fields(c.name)
		if len(parts) > len(prefix) && slices.Equal(parts[:len(prefix)], prefix) {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// printGroup lists the subcommands of a group given alone (`syncagent
// record`), and reports whether there were any.
func printGroup(w io.Writer, group []string) bool {
	subs := subcommands(group)
	if len(subs) == 0 {
		return false
	}
	fmt.Fprintf(w, "Usage: syncagent %s COMMAND [ARGS] [FLAGS]\n\nCommands:\n", strings.Join(group, " "))
	for _, c := range subs {
		fmt.Fprintf(w, "  %-20s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun `syncagent %s COMMAND --help` for a command's flags.\n", strings.Join(group, " "))
	return true
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
before or after it, and --help; `+"`syncagent help COMMAND`"+` is the same. Put --
before an argument that starts with "-". Commands other than run, hwid,
passwd, prefs check, authcode and version talk to the running agent over its
control socket (unlock reads the files on disk when the agent is stopped).
syncagent --version prints the version.

Exit status: 0 success, 1 failure, 2 usage error, 3 invalid prefs at start; status: 5 agent not running, 6 last sync failed, 7 prefs not applied.
`, DefaultPrefs)
}

func printCommandHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: syncagent %s %s\n\n%s\n", c.name, c.args, c.summary)
	if c.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.help))
	}
	if subs := subcommands(strings.Fields(c.name)); len(subs) > 0 {
		fmt.Fprintln(w, "\nSubcommands:")
		for _, s := range subs {
			fmt.Fprintf(w, "  %-20s %s\n", s.name, s.summary)
		}
	}
	own := false
	fs.VisitAll(func(f *flag.Flag) { own = own || !globalFlag[f.Name] })
	if own {
		fmt.Fprintln(w, "\nFlags:")
		printFlags(w, fs, func(name string) bool { return !globalFlag[name] })
	}
	fmt.Fprintln(w, "\nGlobal flags:")
	printFlags(w, fs, func(name string) bool { return globalFlag[name] })
	fmt.Fprintln(w, "  --help\n    \tprint this help")
}

var globalFlag = map[string]bool{"prefs": true, "socket": true}

// printFlags prints the flags keep selects as flag.PrintDefaults does, but
// in the --flag form the commands are written with.
func printFlags(w io.Writer, fs *flag.FlagSet, keep func(string) bool) {
	fs.VisitAll(func(f *flag.Flag) {
		if !keep(f.Name) {
			return
		}
		arg, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if arg != "" {
			line += " " + arg
		}
		if d := f.DefValue; d != "" && d != "false" && d != "0" {
			usage += fmt.Sprintf(" (default %q)", d)
		}
		fmt.Fprintf(w, "%s\n    \t%s\n", line, usage)
	})
}
