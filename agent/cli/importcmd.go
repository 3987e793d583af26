package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"syncagent/agent/control"
)

func init() {
	register(&command{name: "record import", args: "FILE|-", summary: "write many records, one JSON object a line (as `record list` prints them)", nargs: [2]int{1, 1},
		help: `Each line is {"table": …, "id": …, "data": {…}}, or {"table": …, "id": …,
"action": "delete"}; blank lines are skipped; - reads stdin. Up to 10,000
lines (and 4 MiB) go in one request, written in one commit, all or nothing.
A line that is not a record, or that the agent refuses, stops the import
with its line number; the requests before it are written. Writes are
upserts, so running the same file again is safe.`,
		run: func(e *env, args []string) error {
			in := e.stdin
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("record import: %w", err)
				}
				defer f.Close()
				in = f
			}
			total, requests, err := importLines(e, in)
			fmt.Fprintf(e.stdout, "%d records written (%d new, %d updated, %d deleted) in %d requests\n",
				total.Written, total.Inserted, total.Updated, total.Deleted, requests)
			return err
		}})
}

// importLines sends in to the agent in batches of whole lines, each
// checked here first so that a bad line is named before anything of its
// batch is sent.
func importLines(e *env, in io.Reader) (total control.BatchResult, requests int, err error) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), control.MaxBody)
	var batch []byte
	first, line, n := 1, 0, 0 // first line of the batch, lines read, records in it
	send := func() error {
		if n == 0 {
			return nil
		}
		if _, _, err := control.DecodeLines(batch); err != nil {
			return atLine(err, first)
		}
		ctx, cancel := e.quick()
		defer cancel()
		res, err := e.client().PutLines(ctx, batch)
		requests++
		if err != nil {
			return atLine(err, first)
		}
		total.Written, total.Inserted, total.Updated, total.Deleted = total.Written+res.Written, total.Inserted+res.Inserted, total.Updated+res.Updated, total.Deleted+res.Deleted
		batch, n = batch[:0], 0
		return nil
	}
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if n == control.MaxBatchRecords || len(batch)+len(b)+1 > control.MaxBody {
			if err := send(); err != nil {
				return total, requests, err
			}
			first = line // this line starts the next batch
		}
		batch = append(append(batch, b...), '\n')
		if len(b) > 0 {
			n++
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return total, requests, fmt.Errorf("line %d: longer than %d bytes (a record is at most 4 MiB)", line+1, control.MaxBody)
		}
		return total, requests, fmt.Errorf("record import: %w", err)
	}
	return total, requests, send()
}

// atLine turns a line number inside a batch into one of the whole input.
func atLine(err error, first int) error {
	var le *control.LineError
	if errors.As(err, &le) {
		return fmt.Errorf("line %d: %s", first+le.Line-1, le.Msg)
	}
	return err
}
