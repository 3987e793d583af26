package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"syncagent/agent/control"
)

// The site registry's commands (the primary's; docs/registry.md): add,
// edit, remove, import and the change log. Each change is validated whole
// by the running primary, then needs root and an unlock code bound to its
// digest (one code for a change of any size) or an open maintenance window.
// --dry-run validates and prints the digest to send the vendor.

// changeTimeout bounds a change: an import of 40,000 rows is validated,
// written and applied to the site table in a few seconds.
const changeTimeout = 5 * time.Minute

// changeFlags are the flags every change takes.
type changeFlags struct {
	code   string
	dryRun bool
}

func (f *changeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.code, "code", "", "unlock `CODE` bound to this change (see --dry-run)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "validate the change and print the change digest to send the vendor; change nothing")
}

// rowFlags are the fields of a site row given as flags.
type rowFlags struct {
	user, hash, stores, hwid, url string
}

func (f *rowFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.user, "user", "", "the site's user `NAME`")
	fs.StringVar(&f.hash, "password-hash", "", "the site's password `HASH`, made by `syncagent passwd`")
	fs.StringVar(&f.stores, "stores", "", "the stores active on the site, comma separated (`LIST`)")
	fs.StringVar(&f.hwid, "hardware-id", "", "pre-pin the site to this hardware `ID`")
	fs.StringVar(&f.url, "url", "", "a `URL` on a site's row disables sync for it")
}

func (f *rowFlags) row(id int) control.SiteRow {
	r := control.SiteRow{SyncID: id, User: f.user, PasswordHash: f.hash, HardwareID: f.hwid, URL: f.url}
	if f.stores != "" {
		for _, s := range strings.Split(f.stores, ",") {
			if s = strings.TrimSpace(s); s != "" {
				r.Stores = append(r.Stores, s)
			}
		}
	}
	return r
}

// change sends c and prints what it did.
func change(e *env, c control.SitesChange, f changeFlags) error {
	c.Code, c.DryRun = f.code, f.dryRun
	ctx, cancel := context.WithTimeout(e.ctx, changeTimeout)
	defer cancel()
	out, err := e.client().ChangeSites(ctx, c)
	var ce *control.Error
	if errors.As(err, &ce) && ce.Status == http.StatusUnprocessableEntity {
		return linesError{err} // every refused row, each naming its line
	}
	if err != nil {
		return err
	}
	if out.DryRun {
		fmt.Fprintf(e.stdout, "valid: %s\nchange digest: %s\n%s\n", out.What, out.ChangeDigest, out.Request)
		return nil
	}
	fmt.Fprintf(e.stdout, "site registry generation %d: %s (unlocked by %s)\n", out.Generation, out.What, out.UnlockedBy)
	return nil
}

func init() {
	const lockHelp = "\n\nNeeds root (sudo) and an unlock code bound to this change, or an open\nmaintenance window: run it with --dry-run first, send the vendor the\nhardware ID and change digest it prints, then run it again with --code."

	var addRow rowFlags
	var addChange changeFlags
	register(&command{name: "sites add", args: "SYNC_ID --user NAME --password-hash HASH --stores LIST [--hardware-id ID] [--url URL] [--code CODE] [--dry-run]",
		summary: "add a site to the primary's site registry", nargs: [2]int{1, 1},
		help:  "The site's sync ID must be above 1 and used by no other site, in the\nregistry or in the prefs' [[sync_with]] rows." + lockHelp,
		flags: func(fs *flag.FlagSet) { addRow.register(fs); addChange.register(fs) },
		run: func(e *env, args []string) error {
			id, err := siteArg(args[0])
			if err != nil {
				return err
			}
			return change(e, control.SitesChange{Op: "add", Rows: []control.SiteRow{addRow.row(id)}}, addChange)
		}})

	var editRow rowFlags
	var editChange changeFlags
	var clear string
	register(&command{name: "sites edit", args: "SYNC_ID [--user NAME] [--password-hash HASH] [--stores LIST] [--hardware-id ID] [--url URL] [--clear FIELDS] [--code CODE] [--dry-run]",
		summary: "change a site of the primary's site registry", nargs: [2]int{1, 1},
		help: "Fields not given keep their value; --clear hardware_id,url empties those." + lockHelp,
		flags: func(fs *flag.FlagSet) {
			editRow.register(fs)
			editChange.register(fs)
			fs.StringVar(&clear, "clear", "", "empty these `FIELDS` (comma separated: hardware_id, url)")
		},
		run: func(e *env, args []string) error {
			id, err := siteArg(args[0])
			if err != nil {
				return err
			}
			c := control.SitesChange{Op: "edit", Rows: []control.SiteRow{editRow.row(id)}}
			for _, f := range strings.Split(clear, ",") {
				switch f = strings.TrimSpace(f); f {
				case "":
				case "hardware_id", "url":
					c.Clear = append(c.Clear, f)
				default:
					return usagef("--clear takes hardware_id and url, not %q", f)
				}
			}
			return change(e, c, editChange)
		}})

	var removeChange changeFlags
	register(&command{name: "sites remove", args: "SYNC_ID... [--code CODE] [--dry-run]",
		summary: "remove sites from the primary's site registry (their queues are emptied)", nargs: [2]int{1, -1},
		help:  "A removed site's queue is emptied; if it comes back it initialises again." + lockHelp,
		flags: func(fs *flag.FlagSet) { removeChange.register(fs) },
		run: func(e *env, args []string) error {
			c := control.SitesChange{Op: "remove"}
			for _, a := range args {
				id, err := siteArg(a)
				if err != nil {
					return err
				}
				c.Remove = append(c.Remove, id)
			}
			return change(e, c, removeChange)
		}})

	var importChange changeFlags
	register(&command{name: "sites import", args: "FILE|- [--code CODE] [--dry-run]",
		summary: "add or replace many sites of the primary's site registry from a CSV or JSON-lines file", nargs: [2]int{1, 1},
		help: `CSV with a header line, columns sync_id, user, password_hash, stores (required;
stores separated by ';'), hardware_id, url; or JSON lines, one object a line:
  {"sync_id":12,"user":"clinic-12","password_hash":"pbkdf2-sha256$…","stores":["a","b"]}
A row whose sync ID is in the registry replaces it. The whole file is checked
before anything is written; each error names its line. One unlock code covers
the whole import.` + lockHelp,
		flags: func(fs *flag.FlagSet) { importChange.register(fs) },
		run: func(e *env, args []string) error {
			var in io.Reader = e.stdin
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("cannot read the site file: %w", err)
				}
				defer f.Close()
				in = f
			}
			rows, err := parseSites(in)
			if err != nil {
				return linesError{fmt.Errorf("%s: nothing was imported:\n%w", args[0], err)}
			}
			return change(e, control.SitesChange{Op: "import", Rows: rows}, importChange)
		}})

	var logLimit int
	var logJSON bool
	register(&command{name: "sites log", args: "[--limit N] [--json]", summary: "the last changes of the primary's site registry: who, when, what", nargs: [2]int{0, 0},
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&logLimit, "limit", 50, "show the last `N` changes (at most 1000)")
			fs.BoolVar(&logJSON, "json", false, "print JSON")
		},
		run: func(e *env, _ []string) error {
			if logLimit < 1 || logLimit > 1000 {
				return usagef("--limit must be 1 to 1000, not %d", logLimit)
			}
			ctx, cancel := e.quick()
			defer cancel()
			log, err := e.client().SitesLog(ctx, logLimit)
			if err != nil {
				return err
			}
			if logJSON {
				return printJSON(e.stdout, log)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "GENERATION\tAT\tBY\tWHAT\tDIGEST")
			for _, c := range log {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", strconv.FormatUint(c.Generation, 10), c.At, c.By, c.What, c.Digest[:min(12, len(c.Digest))])
			}
			return tw.Flush()
		}})
}
