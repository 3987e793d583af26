// Command benchmigrate is `make bench-migrate`: how long `syncagent central
// migrate` keeps a primary down. It fills a BuntDB primary (pushes of 500
// store records of about 200 bytes from three sites, each store held by two
// sites, so most records are queued for one; plus central records), then
// copies it into a throw-away PostgreSQL (testtools/pgtest) with the same
// Store.Import the command runs, and prints a table.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"syncagent/queue"
	"syncagent/queue/pg"
	"syncagent/queue/storetest"
	"syncagent/testtools/pgtest"
)

func main() {
	records := flag.Int("records", 100_000, "store records to push before migrating")
	central := flag.Int("central", 2_000, "central records to write")
	flag.Parse()
	if err := run(*records, *central); err != nil {
		fmt.Fprintln(os.Stderr, "benchmigrate:", err)
		os.Exit(1)
	}
}

func run(records, central int) error {
	dir, err := os.MkdirTemp("", "benchmigrate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "central.db")
	c, err := queue.OpenCentral(path, queue.CentralOptions{})
	if err != nil {
		return err
	}
	defer c.Close()
	r := storetest.Router{"s1": {2, 3}, "s2": {3, 4}}
	stores := map[int][]string{2: {"s1"}, 3: {"s1", "s2"}, 4: {"s2"}}
	pad := "a record of about two hundred bytes, padded with text to the size of a typical stock line in mSupply"
	for k := 0; k < records; {
		site := 2 + (k/500)%3
		var in []queue.Inbound
		for ; len(in) < 500 && k < records; k++ {
			store := stores[site][k%len(stores[site])]
			d, _ := json.Marshal(map[string]any{queue.StoreField: store, "n": k, "name": pad})
			in = append(in, queue.Inbound{SyncOutID: fmt.Sprint(k + 1), Record: queue.Record{Table: "stock", ID: fmt.Sprintf("r%08d", k), Action: queue.Update, Data: d}})
		}
		if _, err := c.Accept(site, in, r); err != nil {
			return err
		}
	}
	for i := range central {
		if _, err := c.Write(queue.Record{Table: "item", ID: fmt.Sprintf("i%06d", i), Action: queue.Update, Data: json.RawMessage(`{"name":"an item"}`)}, r); err != nil {
			return err
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	cl, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		return err
	}
	defer cl.Stop()
	db, err := cl.CreateDatabase("benchmigrate")
	if err != nil {
		return err
	}
	ctx := context.Background()
	st, err := pg.Open(ctx, cl.DSN(db), pg.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	start := time.Now()
	sum, err := st.Import(ctx, c.Export)
	if err != nil {
		return err
	}
	took := time.Since(start)
	queued := 0
	for _, n := range sum.Queued {
		queued += n
	}
	var load [3]float64
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Sscan(string(b), &load[0], &load[1], &load[2])
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "datafile MB\trecords\tcentral log\tqueue entries\tsites\timport\trecords/s\tload avg\t")
	fmt.Fprintf(w, "%d\t%d\t%d\t%d\t%d\t%s\t%.0f\t%.1f\t\n", fi.Size()>>20, sum.Records, sum.CentralLog, queued, len(sum.Sites),
		took.Round(time.Millisecond), float64(sum.Records)/took.Seconds(), load[0])
	return w.Flush()
}
