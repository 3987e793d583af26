package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/daemon"
	"syncagent/agent/lock"
	"syncagent/agent/prefs"
	"syncagent/agent/unlock"
)

func init() {
	var asJSON, resetClock bool
	var code string
	register(&command{name: "unlock", args: "[--code CODE] [--json] [--reset-clock]", summary: "the technician's unlock: print what to send the vendor, or apply a code", nargs: [2]int{0, 0},
		help: `Without --code: prints this box's hardware ID, the digest of the pending
locked change (the file on disk against the running prefs) and a one-line
request to send to the vendor. With the agent stopped it reads the files on
disk: the prefs file, the last good prefs in the state directory and the
hardware ID the unit wrote (run it as root).

With --code: checks the code first (a refused code never stays in the prefs
file), writes it into [unlock] code, and the agent reloads and applies the
change (or opens a maintenance window); if the agent refuses it anyway, the
file is put back as it was. With the agent stopped, the code is checked and
written, and applies when the agent starts.

With --reset-clock --code: the way out for a box whose unlock ledger trusts a
time ahead of its clock (a clock that once ran ahead, since set right: every
code is refused as "clock behind"). ` + "`syncagent unlock`" + ` prints the digest such a code
must be bound to; set the clock right first. Needs root and the running agent.`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&asJSON, "json", false, `print {"hardware_id": …, "change_digest": …}`)
			fs.StringVar(&code, "code", "", "unlock `CODE` from the vendor")
			fs.BoolVar(&resetClock, "reset-clock", false, "reset the unlock ledger's trusted time with --code")
		},
		run: func(e *env, _ []string) error {
			ctx, cancel := e.quick()
			defer cancel()
			c := e.client()
			if resetClock {
				if code == "" {
					return usagef("--reset-clock needs --code CODE (a code bound to the reset digest `syncagent unlock` prints)")
				}
				u, err := c.ResetClock(ctx, code)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "the unlock ledger's trusted time is now this box's clock (%s)\n", u.UnlockedBy)
				return nil
			}
			if code != "" {
				parsed, err := unlock.ParseCode(code)
				if err != nil {
					return err // a typo is caught here, before the file is touched
				}
				return applyCode(ctx, e, c, parsed.String())
			}
			u, err := c.Unlock(ctx)
			if control.NotRunning(err) {
				u, err = offlineUnlock(e)
			}
			if err != nil {
				return err
			}
			if asJSON {
				out := map[string]any{"hardware_id": u.HardwareID, "change_digest": u.ChangeDigest}
				if u.ClockResetDigest != "" {
					out["clock_reset_digest"] = u.ClockResetDigest
				}
				return printJSON(e.stdout, out)
			}
			fmt.Fprintf(e.stdout, "hardware ID    %s\nchange digest  %s\n", u.HardwareID, u.ChangeDigest)
			if !u.TrustedAhead.IsZero() {
				fmt.Fprintf(e.stdout, "clock reset    %s (the unlock ledger trusts %s, ahead of this box's clock)\n", u.ClockResetDigest, u.TrustedAhead.UTC().Format(time.RFC3339))
			}
			if !u.Pending && u.Provisioned {
				fmt.Fprintln(e.stdout, "(no locked change is pending: edit the prefs file first, or ask for a maintenance-window code)")
			}
			fmt.Fprintf(e.stdout, "send this to the vendor:\n  %s\n", u.Request)
			return nil
		}})

	var out string
	var number int
	register(&command{name: "authcode keygen", args: "--out DIR --number N", summary: "vendor: make a key pair for signing unlock codes", nargs: [2]int{0, 0},
		help: "Writes DIR/vendor-N.key (private, mode 0600: keep it at the vendor) and\nDIR/vendor-N.pub (one keyring line: concatenate such lines into a keyring).",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&out, "out", "", "write the key files into `DIR`")
			fs.IntVar(&number, "number", -1, "key number `N`, 0 to 15")
		},
		run: func(e *env, _ []string) error {
			if out == "" || number < 0 {
				return usagef("authcode keygen needs --out DIR and --number N")
			}
			pub, priv, err := unlock.Keygen(number)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return err
			}
			keyPath := filepath.Join(out, fmt.Sprintf("vendor-%d.key", number))
			f, err := os.OpenFile(keyPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("cannot create %s (an existing key is never overwritten): %w", keyPath, err)
			}
			if _, err := f.Write(priv); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			pubPath := filepath.Join(out, fmt.Sprintf("vendor-%d.pub", number))
			if err := os.WriteFile(pubPath, []byte(pub), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s (secret) and %s\n", keyPath, pubPath)
			return nil
		}})

	var key, hwid, expires, change string
	var seq uint
	register(&command{name: "authcode issue", args: "--key FILE --hwid ID --expires DURATION|TIME --seq N [--change DIGEST]", summary: "vendor: issue an unlock code (prints the code alone)", nargs: [2]int{0, 0},
		help: `With --change the code applies exactly that locked change (the digest
` + "`syncagent unlock`" + ` prints on the box); without it, it opens a maintenance
window: any locked change on that box until it expires. --expires is a
duration from now (90m, 48h) or an RFC 3339 time; a time already past is
issued with a warning, so expiry can be tested.`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&key, "key", "", "private key `FILE`")
			fs.StringVar(&hwid, "hwid", "", "the box's hardware `ID`")
			fs.StringVar(&expires, "expires", "", "`DURATION` from now or RFC 3339 TIME")
			fs.UintVar(&seq, "seq", 0, "sequence number `N` (above the last one used for this box and key)")
			fs.StringVar(&change, "change", "", "change `DIGEST` (omit for a maintenance window)")
		},
		run: func(e *env, _ []string) error {
			if key == "" || hwid == "" || expires == "" || seq == 0 {
				return usagef("authcode issue needs --key, --hwid, --expires and --seq (from 1)")
			}
			if seq > 1<<32-1 {
				return usagef("--seq is at most %d", uint32(1<<32-1))
			}
			exp, err := parseExpiry(expires, time.Now())
			if err != nil {
				return usagef("%v", err)
			}
			priv, err := os.ReadFile(key)
			if err != nil {
				return err
			}
			num, err := unlock.PrivateKeyNumber(priv)
			if err != nil {
				return err
			}
			claims := unlock.Claims{KeyNumber: num, HardwareID: hwid, Expiry: exp, Seq: uint32(seq), Scope: unlock.ScopeWindow}
			if change != "" {
				claims.Scope, claims.ChangeDigest = unlock.ScopeChange, change
			}
			code, err := unlock.Issue(priv, claims)
			if err != nil {
				return err
			}
			if !exp.After(time.Now()) {
				fmt.Fprintf(e.stderr, "warning: this code expired at %s\n", exp.UTC().Format(time.RFC3339))
			}
			fmt.Fprintln(e.stdout, code)
			return nil
		}})
}

// applyCode checks code, writes it into the prefs file and has the agent
// apply it; a code that is refused never stays in the file.
func applyCode(ctx context.Context, e *env, c *control.Client, code string) error {
	err := c.CheckCode(ctx, code)
	if control.NotRunning(err) {
		if err := offlineCheckCode(e, code); err != nil {
			return fmt.Errorf("code refused, %s left as it was: %w", e.prefs, err)
		}
		if err := writeUnlockCode(e.prefs, code); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "code written to %s; the agent is not running, so it applies when it starts\n", e.prefs)
		return nil
	}
	if err != nil {
		return fmt.Errorf("code refused, %s left as it was: %w", e.prefs, err)
	}
	path := e.prefs
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	before, err := prefs.ReadFile(path)
	if err != nil {
		return err
	}
	if err := writeUnlockCode(e.prefs, code); err != nil {
		return err
	}
	r, err := c.Reload(ctx)
	if err != nil {
		return fmt.Errorf("code written to %s, but the agent did not answer: %w", e.prefs, err)
	}
	if !reloadOK(r) {
		restoreFile(path, before, code)
		return fmt.Errorf("code not accepted, %s put back as it was: %s", e.prefs, r.State)
	}
	fmt.Fprintln(e.stdout, "prefs:", r.State)
	return nil
}

// restoreFile puts the prefs file back as it was before the code was
// written, unless someone changed it since (it no longer holds the code).
func restoreFile(path string, before []byte, code string) {
	now, err := prefs.ReadFile(path)
	if err != nil || !strings.Contains(string(now), code) {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	tmp := path + ".syncagent-tmp"
	if os.WriteFile(tmp, before, fi.Mode().Perm()) != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		os.Chown(tmp, int(st.Uid), int(st.Gid))
	}
	if os.Rename(tmp, path) != nil {
		os.Remove(tmp)
	}
}

// offlineLock is the lock of a stopped agent, read from the files on disk,
// never written.
func offlineLock(e *env) (*lock.Lock, *prefs.Prefs, *prefs.Prefs, error) {
	data, err := prefs.ReadFile(e.prefs)
	if err != nil {
		return nil, nil, nil, err
	}
	onDisk, err := prefs.Parse(e.prefs, data)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("the prefs file on disk is invalid, so there is no change to unlock yet: %s", lock.FirstLine(err))
	}
	hwid, err := daemon.OfflineHardwareID()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cannot compute this box's hardware ID: %w", err)
	}
	l := lock.New(lock.Options{Dir: lock.Dir(os.Getenv, onDisk.Paths.StateDir), HardwareID: hwid, ReadOnly: true})
	running, _, err := l.LastGood()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cannot read the last good prefs: %w", err)
	}
	return l, running, onDisk, nil
}

func offlineUnlock(e *env) (control.Unlock, error) {
	l, running, onDisk, err := offlineLock(e)
	if err != nil {
		return control.Unlock{}, err
	}
	in := l.Info(running, onDisk)
	fmt.Fprintln(e.stderr, "(the agent is not running: read from the files on disk)")
	return control.Unlock{HardwareID: in.HardwareID, ChangeDigest: in.ChangeDigest, Pending: in.Pending, Provisioned: in.Provisioned,
		TrustedAhead: in.TrustedAhead, ClockResetDigest: in.ClockResetDigest, Request: in.Request}, nil
}

func offlineCheckCode(e *env, code string) error {
	l, running, onDisk, err := offlineLock(e)
	if err != nil {
		return err
	}
	return l.Preview(running, onDisk, code)
}

// parseExpiry reads a duration from now or an RFC 3339 time.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--expires %q is neither a duration (90m, 48h) nor an RFC 3339 time (2026-12-01T12:00:00Z)", s)
}

// writeUnlockCode puts code into [unlock] code of the prefs file, as an
// editor would: every other line is kept byte for byte, and the new file
// replaces the old by rename.
func writeUnlockCode(path, code string) error {
	if strings.ContainsAny(code, "\"\\\n") {
		return usagef("the code has characters no unlock code has; re-type it")
	}
	// Write where a symlinked prefs file points, not over the link.
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	data, err := prefs.ReadFile(path)
	if err != nil {
		return err
	}
	text := setUnlockCode(string(data), "code = "+strconv.Quote(strings.TrimSpace(code)))
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".syncagent-tmp"
	if err := os.WriteFile(tmp, []byte(text), fi.Mode().Perm()); err != nil {
		return fmt.Errorf("cannot write the code into %s: %w", path, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		os.Chown(tmp, int(st.Uid), int(st.Gid)) // keep root:syncagent
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cannot write the code into %s: %w", path, err)
	}
	return nil
}

// setUnlockCode returns text with line as the code of its [unlock] table,
// replacing an existing code line there or adding the table at the end.
func setUnlockCode(text, line string) string {
	lines := strings.SplitAfter(text, "\n")
	inUnlock, header := false, -1
	for i, l := range lines {
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(trimmed, "[") {
			if inUnlock {
				break // the table ended without a code line
			}
			table := strings.ReplaceAll(strings.SplitN(trimmed, "#", 2)[0], " ", "")
			if inUnlock = table == "[unlock]"; inUnlock {
				header = i
			}
			continue
		}
		if inUnlock && (strings.HasPrefix(trimmed, "code ") || strings.HasPrefix(trimmed, "code=")) {
			lines[i] = line + "\n"
			return strings.Join(lines, "")
		}
	}
	if header >= 0 {
		if !strings.HasSuffix(lines[header], "\n") {
			lines[header] += "\n"
		}
		lines[header] += line + "\n"
		return strings.Join(lines, "")
	}
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	return text + "\n[unlock]\n" + line + "\n"
}
