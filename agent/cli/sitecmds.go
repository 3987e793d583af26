package cli

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/daemon"
)

// The fleet view's commands: the site list's columns, one site's detail,
// diagnostics on request, and the metrics.

// printSites prints the site list as a table.
func printSites(w io.Writer, sites []control.Site) error {
	bw := bufio.NewWriterSize(w, 64<<10) // tabwriter writes a line at a time: 40,000 of them on a national primary
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SYNC ID\tUSER\tHEALTH\tLAST CONTACT\tLAST SUCCESS\tVERSION\tOUTBOX\tQUEUE\tCLOCK SKEW\tHARDWARE ID\tURL")
	for _, s := range sites {
		outbox, skew := "-", "-"
		if s.Outbox != nil {
			outbox = strconv.Itoa(*s.Outbox)
			if s.OutboxAge > 0 {
				outbox += " (" + (time.Duration(s.OutboxAge) * time.Second).String() + ")"
			}
		}
		if s.ClockSkew != nil {
			skew = fmt.Sprintf("%+ds", *s.ClockSkew)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.SyncID, s.User, orDash(s.Verdict), orNever(s.LastContact), orNever(s.LastSuccess),
			orDash(s.Version), outbox, s.QueueLength, skew, orDash(s.HardwareID), orDash(s.URL))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return bw.Flush()
}

func siteArg(arg string) (int, error) {
	id, err := strconv.Atoi(arg)
	if err != nil || id < 2 {
		return 0, usagef("SYNC_ID must be a site's sync ID (a number above 1), not %q", arg)
	}
	return id, nil
}

func init() {
	var asJSON bool
	register(&command{name: "sites show", args: "SYNC_ID [--json]", summary: "one site's detail on the primary: health, pin, stores, queue, recent cycles and errors", nargs: [2]int{1, 1},
		flags: func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "print JSON") },
		run: func(e *env, args []string) error {
			id, err := siteArg(args[0])
			if err != nil {
				return err
			}
			ctx, cancel := e.quick()
			defer cancel()
			d, err := e.client().SiteDetail(ctx, id)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(e.stdout, d)
			}
			printSiteDetail(e.stdout, d)
			return nil
		}})

	var show, diagJSON bool
	var wait time.Duration
	register(&command{name: "sites diagnose", args: "SYNC_ID [--show] [--wait DURATION] [--json]", summary: "ask a site for a diagnostics bundle on its next cycle; --show prints the last one that arrived", nargs: [2]int{1, 1},
		help: `The site answers on its next cycle with a bounded, compressed bundle: recent
log lines, status, history, its prefs without secrets, queue statistics and a
datafile integrity check, uploaded in pieces its link can carry. --wait waits
for it to arrive, then prints it.`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&show, "show", false, "print the last bundle that arrived (ask for none)")
			fs.DurationVar(&wait, "wait", 0, "after asking, wait up to `DURATION` for the bundle, then print it")
			fs.BoolVar(&diagJSON, "json", false, "print JSON")
		},
		run: func(e *env, args []string) error {
			id, err := siteArg(args[0])
			if err != nil {
				return err
			}
			if show {
				return showDiagnostics(e, id, diagJSON)
			}
			ctx, cancel := e.quick()
			d, err := e.client().Diagnose(ctx, id)
			cancel()
			if err != nil {
				return err
			}
			if wait <= 0 {
				if diagJSON {
					return printJSON(e.stdout, d)
				}
				when := "its next cycle"
				if d.Interval != "" {
					when += " (it syncs every " + d.Interval + ")"
				}
				fmt.Fprintf(e.stdout, "site %d: diagnostics requested (%s); the site sends them on %s.\nThen: syncagent sites diagnose %d --show\n", id, d.Request, when, id)
				return nil
			}
			deadline := time.Now().Add(wait)
			for {
				ctx, cancel := e.quick()
				got, err := e.client().Diagnostics(ctx, id)
				cancel()
				if err != nil {
					return err
				}
				if got.BundleRequest == d.Request {
					return showDiagnostics(e, id, diagJSON)
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("site %d has not sent its diagnostics within %s (%d of %d bytes arrived); `syncagent sites diagnose %d --show` prints them once they have", id, wait, got.Received, got.Total, id)
				}
				select {
				case <-e.ctx.Done():
					return e.ctx.Err()
				case <-time.After(time.Second):
				}
			}
		}})

	var metricsJSON bool
	register(&command{name: "metrics", summary: "print this agent's figures (Prometheus text format; the primary's also at /metrics on its admin listener)", nargs: [2]int{0, 0},
		flags: func(fs *flag.FlagSet) { fs.BoolVar(&metricsJSON, "json", false, "print JSON: {\"text\": …}") },
		run: func(e *env, _ []string) error {
			ctx, cancel := e.quick()
			defer cancel()
			b, err := e.client().Metrics(ctx)
			if err != nil {
				return err
			}
			if metricsJSON {
				return printJSON(e.stdout, map[string]string{"text": string(b)})
			}
			_, err = e.stdout.Write(b)
			return err
		}})
}

func showDiagnostics(e *env, id int, asJSON bool) error {
	ctx, cancel := e.quick()
	defer cancel()
	d, err := e.client().Diagnostics(ctx, id)
	if err != nil {
		return err
	}
	if len(d.Bundle) == 0 {
		msg := fmt.Sprintf("site %d has sent no diagnostics yet", id)
		if d.Request != "" {
			msg += fmt.Sprintf(" (request %s waiting since %s; %d of %d bytes arrived)", d.Request, d.RequestedAt.Local().Format(time.DateTime), d.Received, d.Total)
		} else {
			msg += fmt.Sprintf(": ask with `syncagent sites diagnose %d`", id)
		}
		return fmt.Errorf("%s", msg)
	}
	b, err := daemon.DecodeBundle(d.Bundle)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(e.stdout, b)
	}
	printBundle(e.stdout, d, b)
	return nil
}

func printSiteDetail(w io.Writer, d control.SiteDetail) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "site\t%d (%s)\n", d.SyncID, d.User)
	fmt.Fprintf(tw, "health\t%s\n", orDash(d.Verdict))
	fmt.Fprintf(tw, "stores\t%s\n", strings.Join(d.Stores, ", "))
	fmt.Fprintf(tw, "hardware ID\t%s\n", orDash(d.HardwareID))
	fmt.Fprintf(tw, "initialisation\t%s\n", orDash(d.Initialisation))
	fmt.Fprintf(tw, "last contact\t%s\n", orNever(d.LastContact))
	fmt.Fprintf(tw, "queue\t%d records waiting for the site\n", d.QueueLength)
	if d.URL != "" {
		fmt.Fprintf(tw, "url\t%s (a URL on the primary's row disables sync)\n", d.URL)
	}
	if r := d.Refusal; r != nil {
		fmt.Fprintf(tw, "last refused\t%s (%s)\n", r.At.Local().Format(time.DateTime), r.Code)
	}
	if !d.RewoundAt.IsZero() {
		fmt.Fprintf(tw, "restored\tat %s the site reported an older state than the primary had seen; it initialises again\n", d.RewoundAt.Local().Format(time.DateTime))
	}
	if h := d.Health; h != nil {
		fmt.Fprintf(tw, "reported\t%s\n", d.HealthAt.Local().Format(time.DateTime))
		fmt.Fprintf(tw, "  version\t%s\n", h.Version)
		fmt.Fprintf(tw, "  last success\t%s\n", orNever(h.LastSuccess))
		if h.LastError != "" {
			fmt.Fprintf(tw, "  last error\t%s: %s\n", h.LastErrorAt.Local().Format(time.DateTime), h.LastError)
		}
		fmt.Fprintf(tw, "  outbox\t%d waiting, oldest %s; %d set aside\n", h.Outbox, time.Duration(h.OutboxAge)*time.Second, h.SetAside)
		fmt.Fprintf(tw, "  datafile\t%s, %s free\n", bytesText(h.DataBytes), bytesText(h.FreeBytes))
		if d.ClockSkew != nil {
			fmt.Fprintf(tw, "  clock skew\t%+ds\n", *d.ClockSkew)
		}
		fmt.Fprintf(tw, "  uptime\t%s\n", time.Duration(h.Uptime)*time.Second)
		if h.Interval > 0 {
			fmt.Fprintf(tw, "  interval\t%d min\n", h.Interval)
		}
		if h.Link != "" {
			fmt.Fprintf(tw, "  link\t%s\n", h.Link)
		}
	} else {
		fmt.Fprintln(tw, "reported\tno health block (never connected, or a client that does not send one)")
	}
	if dg := d.Diagnostics; dg != nil {
		if dg.Request != "" {
			fmt.Fprintf(tw, "diagnostics\trequested %s, %d of %d bytes arrived\n", dg.RequestedAt.Local().Format(time.DateTime), dg.Received, dg.Total)
		}
		if dg.BundleBytes > 0 {
			fmt.Fprintf(tw, "diagnostics\tlast bundle %s (%s; `syncagent sites diagnose %d --show`)\n", dg.BundleAt.Local().Format(time.DateTime), bytesText(int64(dg.BundleBytes)), d.SyncID)
		}
	}
	tw.Flush()
	if len(d.Cycles) == 0 {
		fmt.Fprintln(w, "\nno cycle seen since the primary started")
		return
	}
	fmt.Fprintln(w, "\nrecent cycles (as the primary served them, newest first):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tREQUESTS\tPUSHED\tPULLED\tACKED\tREACHED END\tERRORS")
	for _, c := range d.Cycles {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%v\t%s\n", c.Started.Local().Format(time.DateTime), c.Requests, c.Pushed, c.Pulled, c.Acked, c.Reached, strings.Join(c.Errors, "; "))
	}
	tw.Flush()
}

func printBundle(w io.Writer, d control.Diagnostics, b daemon.Bundle) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "site\t%d, request %s\n", d.SyncID, b.Request)
	fmt.Fprintf(tw, "made\t%s on the site, arrived %s (%s compressed)\n", b.Made.Local().Format(time.DateTime), d.BundleAt.Local().Format(time.DateTime), bytesText(int64(d.BundleBytes)))
	fmt.Fprintf(tw, "version\t%s, hardware ID %s\n", b.Version, b.HardwareID)
	st := b.Status
	fmt.Fprintf(tw, "role\t%s %d, prefs %s\n", st.Role, st.SyncID, st.Prefs.State)
	if st.LastSync != nil {
		res := "ok"
		if st.LastSync.Error != "" {
			res = "failed: " + st.LastSync.Error
		}
		fmt.Fprintf(tw, "last sync\t%s %s\n", st.LastSync.Finished.Local().Format(time.DateTime), res)
	}
	q := b.Queue
	fmt.Fprintf(tw, "datafile\t%d records, %s, %s free; outbox %d (numbering %s), %d set aside\n", q.Records, bytesText(q.DatafileBytes), bytesText(q.FreeBytes), q.Outbox, q.OutboxNumbers, q.SetAside)
	in := b.Integrity
	verdict := "ok"
	if !in.OK {
		verdict = "PROBLEMS: " + strings.Join(in.Problems, "; ")
	}
	fmt.Fprintf(tw, "integrity\t%s (%d records read, %d counted, %d invalid, %s)\n", verdict, in.Read, in.Counted, in.Invalid, in.Took)
	if in.Recovered != "" {
		fmt.Fprintf(tw, "  recovered\t%s\n", in.Recovered)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nprefs (secrets not sent):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, p := range b.Prefs {
		fmt.Fprintf(tw, "  %s\t%s\n", p.Key, p.Value)
	}
	tw.Flush()
	if len(b.Aside) > 0 {
		fmt.Fprintln(w, "\nset aside:")
		for _, a := range b.Aside {
			fmt.Fprintf(w, "  %s %s: %s\n", a.Table, a.ID, a.Reason)
		}
	}
	fmt.Fprintf(w, "\nhistory (%d cycles, newest first):\n", len(b.History))
	for i, c := range b.History {
		if i == 10 {
			fmt.Fprintf(w, "  … %d more (--json has them all)\n", len(b.History)-i)
			break
		}
		res := "ok"
		if c.Error != "" {
			res = "failed: " + c.Error
		}
		fmt.Fprintf(w, "  %s %s pushed %d pulled %d %s\n", c.Finished.Local().Format(time.DateTime), c.Kind, c.Pushed, c.Pulled, res)
	}
	fmt.Fprintf(w, "\nlog (%d recent lines", len(b.Log))
	if b.LogCut > 0 {
		fmt.Fprintf(w, "; %d older left out to stay within the bound", b.LogCut)
	}
	fmt.Fprintln(w, "):")
	for _, l := range b.Log {
		fmt.Fprintln(w, "  "+l)
	}
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
