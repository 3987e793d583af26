package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"syncagent/agent/daemon"
	"syncagent/agent/demo"
	"syncagent/agent/passwd"
	"syncagent/agent/prefs"
	"syncagent/agent/version"
	"syncagent/hw"
)

func init() {
	var level string
	register(&command{name: "run", summary: "run the agent (the daemon systemd starts)", nargs: [2]int{0, 0},
		help: `Serves the control socket (and, on the primary, the sync API), runs sync
cycles every interval_minutes, reloads the prefs on change or SIGHUP, and tells
systemd READY=1, STATUS= and WATCHDOG=1 while its sync loop is healthy.`,
		flags: func(fs *flag.FlagSet) { fs.StringVar(&level, "log-level", "info", "debug, info, warn or error") },
		run: func(e *env, _ []string) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(level)); err != nil {
				return usagef("--log-level must be debug, info, warn or error")
			}
			log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: lv}))
			return daemon.Run(e.ctx, daemon.Options{PrefsPath: e.prefs, Log: log})
		}})

	var explain bool
	var writeTo string
	register(&command{name: "hwid", args: "[--explain] [--write FILE]", summary: "print this box's hardware ID (only a hash of its identifiers)", nargs: [2]int{0, 0},
		help: `DMI serials and the product UUID are readable by root only, so run it as
root to see the ID the agent presents. Without flags it prints the ID of the
running agent when one answers, and probes the hardware otherwise; --explain
always probes. --write FILE stores the ID in FILE
(atomically, mode 0644) instead of printing it: the unit runs
` + "`+/usr/bin/syncagent hwid --write /run/syncagent/hardware-id`" + ` as root before
the agent starts, and the agent, running as user syncagent, reads it from there.`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&explain, "explain", false, "also say which kinds of identifier fed it")
			fs.StringVar(&writeTo, "write", "", "write the ID to `FILE` instead of printing it")
		},
		run: func(e *env, _ []string) error {
			if writeTo == "" && !explain {
				// The ID the running agent presents, which is what a primary pins;
				// a probe by an unprivileged user could differ from it.
				ctx, cancel := e.quick()
				st, err := e.client().Status(ctx)
				cancel()
				if err == nil && st.HardwareID != "" {
					fmt.Fprintln(e.stdout, st.HardwareID)
					return nil
				}
			}
			fp, err := hw.Probe("/")
			if err != nil {
				return fmt.Errorf("cannot compute the hardware ID: %w", err)
			}
			if writeTo != "" {
				if err := writeFileAtomic(writeTo, []byte(fp.ID+"\n"), 0o644); err != nil {
					return fmt.Errorf("cannot write the hardware ID: %w", err)
				}
			} else {
				fmt.Fprintln(e.stdout, fp.ID)
			}
			if explain {
				fmt.Fprintf(e.stdout, "from: %s\n", strings.Join(fp.Sources, ", "))
			}
			return nil
		}})

	register(&command{name: "prefs check", args: "[FILE]", summary: "validate a prefs file offline and list every problem", nargs: [2]int{0, 1},
		run: func(e *env, args []string) error {
			path := e.prefs
			if len(args) == 1 {
				path = args[0]
			}
			p, err := prefs.Load(path)
			if err != nil {
				fmt.Fprintln(e.stderr, err)
				n := strings.Count(strings.TrimSpace(err.Error()), "\n") + 1
				return fmt.Errorf("%s: %d problem(s); nothing was changed", path, n)
			}
			fmt.Fprintf(e.stdout, "%s: ok — %s, sync_id %d, locked digest %s\n", path, p.Role(), p.Site.SyncID, p.LockedDigest())
			if why := p.SyncDisabledReason(); why != "" {
				fmt.Fprintf(e.stdout, "note: sync is off: %s\n", why)
			}
			return nil
		}})

	register(&command{name: "passwd", summary: "hash a site password: prints password_sha256 (satellite) and password_hash (primary)", nargs: [2]int{0, 0},
		help: "Reads the password from the terminal (twice, without echo), or from stdin when it is not a terminal.",
		run: func(e *env, _ []string) error {
			pw, err := readPassword(e.stdin, e.stderr)
			if err != nil {
				return err
			}
			sum := passwd.SHA256Hex(pw)
			h, err := passwd.Hash(sum)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "password_sha256 = %q\npassword_hash = %q\n", sum, h)
			return nil
		}})

	register(&command{name: "version", summary: "print the version", nargs: [2]int{0, 0},
		run: func(e *env, _ []string) error {
			fmt.Fprintln(e.stdout, "syncagent", version.Version)
			return nil
		}})
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, fsynced, given mode perm whatever the umask, renamed over path.
// A reader sees the old file or the new one, never a part.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readPassword reads a password from a terminal without echo (asking twice),
// or the first line of a non-terminal stdin.
func readPassword(in io.Reader, prompt io.Writer) (string, error) {
	f, isFile := in.(*os.File)
	if isFile {
		if t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			return readTerminalPassword(f, t, prompt)
		}
	}
	line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("cannot read the password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("empty password: give it on stdin, e.g. `printf '%s\\n' \"$PW\" | syncagent passwd`")
	}
	return pw, nil
}

func readTerminalPassword(f *os.File, t *unix.Termios, prompt io.Writer) (string, error) {
	fd := int(f.Fd())
	quiet := *t
	quiet.Lflag &^= unix.ECHO
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", fmt.Errorf("cannot turn off echo: %w", err)
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, t)
	r := bufio.NewReader(f)
	ask := func(p string) (string, error) {
		fmt.Fprint(prompt, p)
		s, err := r.ReadString('\n')
		fmt.Fprintln(prompt)
		return strings.TrimRight(s, "\r\n"), err
	}
	a, err := ask("Password: ")
	if err != nil {
		return "", fmt.Errorf("cannot read the password: %w", err)
	}
	b, err := ask("Again: ")
	if err != nil {
		return "", fmt.Errorf("cannot read the password: %w", err)
	}
	if a != b {
		return "", errors.New("the two passwords differ; nothing printed")
	}
	if a == "" {
		return "", errors.New("empty password")
	}
	return a, nil
}

func init() {
	register(&command{name: "demo", summary: "start a primary and two satellites on loopback, write, sync, and show what arrived where", nargs: [2]int{0, 0},
		run: func(e *env, _ []string) error {
			ctx, cancel := context.WithTimeout(e.ctx, 5*time.Minute)
			defer cancel()
			return demo.Run(ctx, e.stdout, e.stderr)
		}})
}
