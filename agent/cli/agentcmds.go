package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/BurntSushi/toml"

	"syncagent/agent/control"
	"syncagent/agent/daemon"
	"syncagent/agent/prefs"
	"syncagent/ops"
)

// client connects to the running agent named by --socket or the prefs.
func (e *env) client() *control.Client {
	if e.socket != "" {
		return control.NewClient(e.socket)
	}
	data, err := prefs.ReadFile(e.prefs) // bounded, never a FIFO
	if err == nil {
		if p, err := prefs.Parse(e.prefs, data); err == nil {
			return control.NewClient(p.Paths.ControlSocket)
		}
	}
	// The file may be invalid while the agent runs its last good prefs: read
	// just the socket path, leniently.
	var loose struct {
		Paths struct {
			ControlSocket string `toml:"control_socket"`
		} `toml:"paths"`
	}
	if _, err := toml.Decode(string(data), &loose); err == nil && loose.Paths.ControlSocket != "" {
		return control.NewClient(loose.Paths.ControlSocket)
	}
	return control.NewClient("/run/syncagent/control.sock")
}

// quick bounds calls that should answer at once.
func (e *env) quick() (context.Context, context.CancelFunc) {
	return context.WithTimeout(e.ctx, control.DefaultTimeout)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func init() {
	var asJSON bool
	jsonFlag := func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "print JSON") }

	register(&command{name: "status", summary: "show role, last sync, outbox and queues, request size and prefs state", nargs: [2]int{0, 0}, flags: jsonFlag,
		help: `Exits 0 when the agent runs and is healthy (a paused or disabled sync is
healthy), 5 when no agent answers, 6 when its last sync failed (the link is
down, or the primary refused), 7 when the prefs file on disk is not what runs
(rejected, or restart needed); the first that applies. --json always prints
JSON, {"running": false, "error": …} when no agent answers.`,
		run: func(e *env, _ []string) error {
			ctx, cancel := e.quick()
			defer cancel()
			st, err := e.client().Status(ctx)
			if err != nil {
				if asJSON {
					printJSON(e.stdout, map[string]any{"running": false, "error": err.Error()})
				}
				if control.NotRunning(err) {
					return &daemon.ExitError{Code: ops.StatusNotRunning, Err: err}
				}
				return err
			}
			if asJSON {
				printJSON(e.stdout, st)
			} else {
				printStatus(e.stdout, st, time.Now())
			}
			return unhealthy(st)
		}})

	var timeout time.Duration
	var progress bool
	cycleFlags := func(fs *flag.FlagSet) {
		jsonFlag(fs)
		fs.DurationVar(&timeout, "timeout", 30*time.Minute, "give up waiting after `DURATION`")
		fs.BoolVar(&progress, "progress", false, "show how far a first sync has got while it runs (a live line on a terminal)")
	}
	cycle := func(retrieve bool) func(e *env, _ []string) error {
		return func(e *env, _ []string) error {
			ctx, cancel := context.WithTimeout(e.ctx, timeout)
			defer cancel()
			if progress {
				stop := showProgress(ctx, e)
				defer stop()
			}
			c, err := e.client().Sync(ctx, retrieve)
			if err != nil {
				return err
			}
			if asJSON {
				printJSON(e.stdout, c)
			} else {
				fmt.Fprintf(e.stdout, "%s: pushed %d, pulled %d, applied %d, set aside %d, took %s\n", c.Kind, c.Pushed, c.Pulled, c.Applied, c.SetAside, c.Finished.Sub(c.Started).Round(time.Millisecond))
			}
			if c.Error != "" {
				return fmt.Errorf("%s failed: %s%s", c.Kind, c.Error, adviceSuffix(c.Advice))
			}
			return nil
		}
	}
	register(&command{name: "sync", summary: "run a full sync cycle now (push, then pull) and wait for its result", nargs: [2]int{0, 0}, flags: cycleFlags, run: cycle(false)})
	register(&command{name: "retrieve", summary: "pull the records waiting for this site on the primary now", nargs: [2]int{0, 0}, flags: cycleFlags, run: cycle(true)})

	register(&command{name: "check", summary: "check the connection to the primary: reachable, TLS, login, hardware ID, round trip", nargs: [2]int{0, 0}, flags: jsonFlag,
		help: `Works whatever the lock state, with the URL, user and password of the prefs
in force. Each step says ok, failed, or not tried (an earlier step failed);
TLS says "not used" for an http URL, and the round trip is measured only when
the primary answered. Refuses with the reason when sync is disabled.`,
		run: func(e *env, _ []string) error {
			ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
			defer cancel()
			c, err := e.client().Check(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				printJSON(e.stdout, c)
			} else {
				printCheck(e.stdout, c)
			}
			if c.Error != "" {
				what := "connection check failed"
				if c.Refused {
					what = "the primary refused the check"
				}
				return fmt.Errorf("%s: %s%s", what, c.Error, adviceSuffix(c.Advice))
			}
			return nil
		}})

	var fresh, existing bool
	register(&command{name: "generate", args: "--new | --existing", summary: "generate sync records: re-queue this site's data (on the primary: refill every site's queue)", nargs: [2]int{0, 0},
		help: `On a satellite, --existing re-queues the store data of its active stores;
--new does that too and also re-reads central data and asks the primary to
refill this site's queue (a full refresh). On the primary both refill every
site's queue with the store data it should hold. --new needs root (sudo).`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&fresh, "new", false, "system and store data: a full refresh")
			fs.BoolVar(&existing, "existing", false, "store data of the active stores only")
		},
		run: func(e *env, _ []string) error {
			if fresh == existing {
				return usagef("generate needs exactly one of --new or --existing")
			}
			ctx, cancel := context.WithTimeout(e.ctx, 30*time.Minute)
			defer cancel()
			g, err := e.client().Generate(ctx, fresh)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "queued %d records; they go out with the next sync (or run `syncagent sync`)\n", g.Queued)
			return nil
		}})

	register(&command{name: "prefs reload", summary: "re-read the prefs file now (also on SIGHUP and when the file changes)", nargs: [2]int{0, 0},
		run: func(e *env, _ []string) error {
			ctx, cancel := e.quick()
			defer cancel()
			r, err := e.client().Reload(ctx)
			if err != nil {
				return err
			}
			if !reloadOK(r) {
				return fmt.Errorf("prefs not applied: %s", r.State)
			}
			fmt.Fprintln(e.stdout, "prefs:", r.State)
			return nil
		}})
}

// unhealthy is status's verdict: nil when healthy, else the exit code and
// the one line that says why.
func unhealthy(st control.Status) error {
	if st.Opening != "" {
		return &daemon.ExitError{Code: ops.StatusStarting, Err: fmt.Errorf("the agent is starting: %s", st.Opening)}
	}
	if c := st.LastSync; c != nil && c.Error != "" {
		what := "the last sync failed"
		if c.Refused {
			what = "the primary refused the last sync"
		}
		return &daemon.ExitError{Code: ops.StatusSyncFailing, Err: fmt.Errorf("%s: %s%s", what, c.Error, adviceSuffix(c.Advice))}
	}
	if st.Prefs.State != "ok" {
		return &daemon.ExitError{Code: ops.StatusPrefsNotApplied, Err: fmt.Errorf("prefs %s: %s", st.Prefs.State, st.Prefs.Error)}
	}
	return nil
}

func adviceSuffix(a string) string {
	if a == "" {
		return ""
	}
	return " — " + a
}

// reloadOK reports whether a reload applied ("ok", or "ok (applies when …)").
func reloadOK(r control.Reload) bool { return r.State == "ok" || strings.HasPrefix(r.State, "ok (") }

// stepLabels name the check steps as a technician reads them.
var stepLabels = map[string]string{"reachable": "reachable", "tls": "tls", "authenticated": "authenticated",
	"hardware_id": "hardware ID accepted", "stores": "stores active"}

func printCheck(w io.Writer, c control.Check) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "primary\t%s\n", c.URL)
	fmt.Fprintf(tw, "user\t%s\n", c.User)
	for _, s := range c.Steps {
		res := s.Result
		if s.Detail != "" && s.Result != control.StepOK {
			res += " (" + s.Detail + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\n", stepLabels[s.Name], res)
	}
	if c.RoundTripMS != nil {
		fmt.Fprintf(tw, "round trip\t%d ms\n", *c.RoundTripMS)
	} else {
		fmt.Fprintf(tw, "round trip\tnot measured (no answer)\n")
	}
	tw.Flush()
}

func printStatus(w io.Writer, st control.Status, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "role\t%s (sync_id %d)\n", st.Role, st.SyncID)
	fmt.Fprintf(tw, "hardware ID\t%s\n", st.HardwareID)
	fmt.Fprintf(tw, "version\t%s, up since %s\n", st.Version, st.StartedAt.Local().Format(time.DateTime))
	if st.Opening != "" {
		fmt.Fprintf(tw, "starting\t%s; records and sync wait until it is open\n", st.Opening)
		tw.Flush()
		return
	}
	if st.SyncEnabled {
		fmt.Fprintf(tw, "sync\ton, every %s\n", st.Interval)
	} else {
		fmt.Fprintf(tw, "sync\toff: %s\n", st.DisabledReason)
	}
	if st.Storage != "" {
		fmt.Fprintf(tw, "storage\t%s\n", st.Storage)
	}
	if st.PrimaryURL != "" {
		fmt.Fprintf(tw, "primary\t%s as %s\n", st.PrimaryURL, st.PrimaryUser)
	}
	if st.LastSync != nil {
		c := st.LastSync
		res := fmt.Sprintf("ok (pushed %d, pulled %d, applied %d)", c.Pushed, c.Pulled, c.Applied)
		switch {
		case c.Refused:
			res = "refused by the primary: " + c.Error + adviceSuffix(c.Advice)
		case c.Error != "":
			res = "failed: " + c.Error + adviceSuffix(c.Advice)
		case c.Truncated:
			res += "; cut by its round cap, the next cycle started at once"
		}
		if c.Busy {
			res += "; the primary was busy, the next cycle comes soon"
		}
		fmt.Fprintf(tw, "last sync\t%s, %s\n", c.Finished.Local().Format(time.DateTime), res)
		for _, n := range c.Notes {
			fmt.Fprintf(tw, "note\t%s\n", n)
		}
	} else if st.Role == "satellite" {
		fmt.Fprintf(tw, "last sync\tnone yet\n")
	}
	if st.Role == "satellite" {
		fmt.Fprintf(tw, "last success\t%s\n", orNever(st.LastSuccess))
		if f := st.LastFailure; f != nil {
			fmt.Fprintf(tw, "last failure\t%s, %s\n", f.Finished.Local().Format(time.DateTime), f.Error)
		}
		if !st.FailingSince.IsZero() {
			fmt.Fprintf(tw, "failing since\t%s\n", st.FailingSince.Local().Format(time.DateTime))
		}
		fmt.Fprintf(tw, "last contact\t%s\n", orNever(st.LastContact))
		if st.Initialisation != "" {
			fmt.Fprintf(tw, "initialisation\t%s\n", st.Initialisation)
		}
		if p := st.FirstSync; p != nil {
			fmt.Fprintf(tw, "first sync\t%s, since %s\n", p.Line(), p.Started.Local().Format(time.DateTime))
		}
		if !st.Rewound.IsZero() {
			fmt.Fprintf(tw, "warning\tthe primary saw this box's outbox numbering go back at %s (datafile restored from a copy?); its changes were taken\n", st.Rewound.Local().Format(time.DateTime))
		}
		if !st.CentralReread.IsZero() {
			fmt.Fprintf(tw, "warning\tthe primary's central data went back at %s (primary restored from a backup?); it was read again from the start\n", st.CentralReread.Local().Format(time.DateTime))
		}
	}
	if !st.NextSync.IsZero() {
		fmt.Fprintf(tw, "next sync\t%s (in %s)\n", st.NextSync.Local().Format(time.DateTime), st.NextSync.Sub(now).Round(time.Second))
	}
	if st.Role != "primary" {
		fmt.Fprintf(tw, "outbox\t%d records waiting to be pushed\n", st.OutboxLength)
		if st.SetAside > 0 {
			fmt.Fprintf(tw, "set aside\t%d records (refused or failing alone; see the journal)\n", st.SetAside)
		}
		fmt.Fprintf(tw, "records\t%d in the datafile\n", st.Records)
	}
	fmt.Fprintf(tw, "request size\t%s\n", st.RequestSize)
	if st.PushSizer != "" {
		fmt.Fprintf(tw, "  push\t%s\n", st.PushSizer)
		fmt.Fprintf(tw, "  pull\t%s\n", st.PullSizer)
	}
	if st.Role == "primary" {
		fmt.Fprintf(tw, "sites\t%d, %d records queued in all (`syncagent sites` lists them all)\n", st.SitesTotal, st.QueuedTotal)
		queues := append([]control.Site(nil), st.Queues...)
		sort.SliceStable(queues, func(i, j int) bool { return queues[i].QueueLength > queues[j].QueueLength })
		for i, q := range queues {
			if i == 10 {
				fmt.Fprintf(tw, "  …\t%d more\n", st.SitesTotal-i)
				break
			}
			fmt.Fprintf(tw, "  site %d\tqueue %d, last contact %s\n", q.SyncID, q.QueueLength, orNever(q.LastContact))
		}
	}
	p := st.Prefs
	state := p.State
	if p.Error != "" {
		state += ": " + p.Error
	}
	if p.Pending != "" {
		state += " (" + p.Pending + ")"
	}
	fmt.Fprintf(tw, "prefs\t%s (%s)\n", state, p.File)
	fmt.Fprintf(tw, "locked digest\t%s\n", p.Digest)
	if p.UnlockedBy != "" {
		fmt.Fprintf(tw, "unlocked by\t%s\n", p.UnlockedBy)
	}
	if !p.WindowUntil.IsZero() {
		fmt.Fprintf(tw, "window open until\t%s\n", p.WindowUntil.Local().Format(time.DateTime))
	}
	tw.Flush()
}

func init() {
	var filter, sortBy, store string
	var reverse, asJSON bool
	register(&command{name: "sites", summary: "list the sites this box syncs with (on the primary: every site, its health, last contact and success, version, outbox, queue, clock skew)", nargs: [2]int{0, 0},
		help: "On the primary every configured site is listed, those that never connected\nincluded, with a verdict: ok, late (the cycle it owed did not come), failing\n(refused, or its last cycle failed) or never connected.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&filter, "filter", "", "only sites whose sync ID, user name or verdict starts with `PREFIX` (any letter case)")
			fs.StringVar(&store, "store", "", "only sites where store `NAME` is active")
			fs.StringVar(&sortBy, "sort", "id", "order by `ORDER`: id, user or last-sync")
			fs.BoolVar(&reverse, "reverse", false, "reverse the order")
			fs.BoolVar(&asJSON, "json", false, "print JSON")
		},
		run: func(e *env, _ []string) error {
			less, ok := siteOrders[sortBy]
			if !ok {
				return usagef("--sort must be id, user or last-sync, not %q", sortBy)
			}
			ctx, cancel := e.quick()
			defer cancel()
			sites, err := e.client().SitesMatching(ctx, filter, store)
			if err != nil {
				return err
			}
			sites = filterSites(sites, filter) // an agent that cannot filter sent them all
			if store != "" {
				sites = slices.DeleteFunc(sites, func(s control.Site) bool { return !slices.Contains(s.Stores, store) })
			}
			sort.SliceStable(sites, func(i, j int) bool {
				if reverse {
					return less(sites[j], sites[i])
				}
				return less(sites[i], sites[j])
			})
			if asJSON {
				return printJSON(e.stdout, sites)
			}
			return printSites(e.stdout, sites)
		}})

	var code string
	register(&command{name: "sites clear-hwid", args: "SYNC_ID [--code CODE]", summary: "clear a site's pinned hardware ID on the primary, so a replaced box can sync", nargs: [2]int{1, 1},
		help:  "Needs root (sudo) and an unlock code bound to this operation, or an open\nmaintenance window. Without --code it prints the change digest to send to the vendor.",
		flags: func(fs *flag.FlagSet) { fs.StringVar(&code, "code", "", "unlock `CODE` for this operation") },
		run: func(e *env, args []string) error {
			id, err := strconv.Atoi(args[0])
			if err != nil || id < 2 {
				return usagef("SYNC_ID must be a site's sync ID (a number above 1), not %q", args[0])
			}
			ctx, cancel := e.quick()
			defer cancel()
			if err := e.client().ClearHardwareID(ctx, id, code); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "site %d: hardware ID pin cleared; the next box to sync as this site will be pinned\n", id)
			return nil
		}})
}

var siteOrders = map[string]func(a, b control.Site) bool{
	"id":        func(a, b control.Site) bool { return a.SyncID < b.SyncID },
	"user":      func(a, b control.Site) bool { return a.User < b.User },
	"last-sync": func(a, b control.Site) bool { return a.LastContact.Before(b.LastContact) },
}

func filterSites(sites []control.Site, prefix string) []control.Site {
	if prefix == "" {
		return sites
	}
	out := sites[:0]
	for _, s := range sites {
		if strings.HasPrefix(strconv.Itoa(s.SyncID), prefix) || strings.HasPrefix(strings.ToLower(s.User), strings.ToLower(prefix)) ||
			s.Verdict != "" && strings.HasPrefix(s.Verdict, strings.ToLower(prefix)) {
			out = append(out, s)
		}
	}
	return out
}

func orNever(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format(time.DateTime)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func init() {
	var asJSON bool
	var limit int
	register(&command{name: "history", summary: "list the last sync cycles (kept in the datafile across restarts), newest first", nargs: [2]int{0, 0},
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&asJSON, "json", false, "print JSON")
			fs.IntVar(&limit, "limit", 0, "at most `N` cycles (default all kept)")
		},
		run: func(e *env, _ []string) error {
			ctx, cancel := e.quick()
			defer cancel()
			cycles, err := e.client().History(ctx)
			if err != nil {
				return err
			}
			if limit > 0 && len(cycles) > limit {
				cycles = cycles[:limit]
			}
			if asJSON {
				return printJSON(e.stdout, cycles)
			}
			if len(cycles) == 0 {
				fmt.Fprintln(e.stdout, "no sync cycle yet")
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "FINISHED\tKIND\tRESULT\tPUSHED\tPULLED\tAPPLIED\tTOOK\tERROR")
			for _, c := range cycles {
				res := "ok"
				switch {
				case c.Refused:
					res = "refused"
				case c.Error != "":
					res = "failed"
				case c.Truncated:
					res = "ok, cut"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", c.Finished.Local().Format(time.DateTime), c.Kind, res, c.Pushed, c.Pulled, c.Applied,
					c.Finished.Sub(c.Started).Round(time.Millisecond), c.Error)
			}
			return tw.Flush()
		}})
}
