package pg

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"syncagent/testtools/pgtest"
)

// TestQueueRemove_byPrimaryKey: taking a pushed record out of its site's
// queue looks the entry up by its key, even when the statistics say the
// queue is empty (a queue that grew fast since its last ANALYZE). With
// "ord < $o" the planner walked the site's whole queue by queue_order for
// every entry: a push of new records cost O(queue) per record (26 ms a push
// of 500 in `make bench-primary -ingest-new`).
func TestQueueRemove_byPrimaryKey(t *testing.T) {
	s := openStore(t, pgtest.DSN(t), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The statistics of a fleet whose queues are short (4 entries each of
	// 500 sites), then one site's queue grown to 20,000 since.
	for _, sql := range []string{
		`INSERT INTO queue (site, tbl, id, ord, del) SELECT 10 + g % 500, 'item', 'old' || g, g, false FROM generate_series(1, 2000) g`,
		`ANALYZE queue`,
		`INSERT INTO queue (site, tbl, id, ord, del) SELECT 2, 'item', 'q' || g, 10000 + g, false FROM generate_series(1, 20000) g`,
	} {
		if _, err := s.pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	sites, tbls, ids, ords := make([]int32, 500), make([]string, 500), make([]string, 500), make([]int64, 500)
	for i := range ids {
		sites[i], tbls[i], ids[i], ords[i] = 2, "item", fmt.Sprintf("new%04d", i), 40000
	}
	rows, err := s.pool.Query(ctx, "EXPLAIN "+sqlQueueRemove, sites, tbls, ids, ords)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if strings.Contains(text, "queue_order") || !strings.Contains(text, "queue_pkey") {
		t.Fatalf("the queue entries to take out are not looked up by their key:\n%s", text)
	}
}
