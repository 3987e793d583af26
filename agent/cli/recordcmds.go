package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"syncagent/agent/control"
)

func init() {
	var data string
	register(&command{name: "record put", args: "TABLE ID --data JSON|@FILE|-", summary: "write a record (datafile and outbox as one unit)", nargs: [2]int{2, 2},
		help: `--data is the record as a JSON object, @FILE to read it from a file, or - to
read it from stdin (for records over the 128 KiB a command line can carry; at
most 4 MiB). On a satellite a record belongs to one of the site's stores: put
its store in "store_ID". Put -- before an ID that starts with "-".`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&data, "data", "", "the record as a JSON `OBJECT`, @FILE or - (stdin)")
		},
		run: func(e *env, args []string) error {
			raw, err := readData(e, data)
			if err != nil {
				return err
			}
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
				return usagef("--data must be a JSON object, e.g. --data '{\"store_ID\":\"store-a\",\"name\":\"amoxicillin\"}'")
			}
			ctx, cancel := e.quick()
			defer cancel()
			r, err := e.client().PutRecord(ctx, args[0], args[1], json.RawMessage(raw))
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s %s/%s\n", r.Action, r.Table, r.ID)
			return nil
		}})
	register(&command{name: "record get", args: "TABLE ID", summary: "print a record as JSON", nargs: [2]int{2, 2},
		run: func(e *env, args []string) error {
			ctx, cancel := e.quick()
			defer cancel()
			r, err := e.client().GetRecord(ctx, args[0], args[1])
			if err != nil {
				return err
			}
			return printJSON(e.stdout, r)
		}})
	register(&command{name: "record delete", args: "TABLE ID", summary: "delete a record (the delete is synced too)", nargs: [2]int{2, 2},
		run: func(e *env, args []string) error {
			ctx, cancel := e.quick()
			defer cancel()
			if err := e.client().DeleteRecord(ctx, args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deleted %s/%s\n", args[0], args[1])
			return nil
		}})
	var after string
	var limit int
	register(&command{name: "record list", args: "TABLE", summary: "list a table's records, one JSON object a line", nargs: [2]int{1, 1},
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&after, "after", "", "start after record `ID` (paging)")
			fs.IntVar(&limit, "limit", 1000, "at most `N` records")
		},
		run: func(e *env, args []string) error {
			if limit < 1 || limit > 10000 {
				return usagef("--limit must be 1 to 10000")
			}
			ctx, cancel := e.quick()
			defer cancel()
			recs, err := e.client().ListRecords(ctx, args[0], after, limit)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(e.stdout)
			for _, r := range recs {
				enc.Encode(control.Record{Table: r.Table, ID: r.ID, Data: r.Data})
			}
			return nil
		}})
}

// readData is --data: the JSON itself, @FILE, or - for stdin, bounded by
// what the local API takes.
func readData(e *env, data string) ([]byte, error) {
	var r io.Reader
	switch {
	case data == "-":
		r = e.stdin
	case strings.HasPrefix(data, "@"):
		f, err := os.Open(strings.TrimPrefix(data, "@"))
		if err != nil {
			return nil, fmt.Errorf("--data %s: %w", data, err)
		}
		defer f.Close()
		r = f
	default:
		return []byte(data), nil
	}
	b, err := io.ReadAll(io.LimitReader(r, control.MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("--data %s: %w", data, err)
	}
	if len(b) > control.MaxBody {
		return nil, usagef("--data %s: more than %d bytes", data, control.MaxBody)
	}
	return b, nil
}

func init() {
	var asJSON bool
	register(&command{name: "aside", summary: "list records this box stopped pushing (refused by the primary, or failing on their own), and why", nargs: [2]int{0, 0},
		flags: func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "print JSON") },
		run: func(e *env, _ []string) error {
			ctx, cancel := e.quick()
			defer cancel()
			list, err := e.client().Aside(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(e.stdout, list)
			}
			if len(list) == 0 {
				fmt.Fprintln(e.stdout, "nothing is set aside")
				return nil
			}
			for _, a := range list {
				fmt.Fprintf(e.stdout, "%s/%s\t%s\t%s\n", a.Table, a.ID, a.At.Local().Format("2006-01-02 15:04"), a.Reason)
			}
			fmt.Fprintln(e.stdout, "fix the cause, then `syncagent aside retry TABLE ID` puts a record back into the outbox")
			return nil
		}})
	register(&command{name: "aside retry", args: "TABLE ID", summary: "put a set-aside record back into the outbox", nargs: [2]int{2, 2},
		run: func(e *env, args []string) error {
			ctx, cancel := e.quick()
			defer cancel()
			if err := e.client().RetryAside(ctx, args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s/%s is back in the outbox; it goes out with the next sync\n", args[0], args[1])
			return nil
		}})
}
