package queue

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkCentral_CompactionPause measures what a compaction of the
// primary's datafile costs the requests around it: a writer commits one
// record after another while the file is compacted, blocking (the old way,
// under the owner's lock) and online, and the benchmark reports the writer's
// worst wait and p99 during the compaction next to its p99 before. Run with
// -benchtime 1x (make bench-compaction); each run builds its own file.
var pauseRecords = flag.String("pause-records", "10000,100000", "records held by the datafile BenchmarkCentral_CompactionPause compacts (comma-separated)")

func BenchmarkCentral_CompactionPause(b *testing.B) {
	for _, f := range strings.Split(*pauseRecords, ",") {
		records, err := strconv.Atoi(f)
		if err != nil {
			b.Fatalf("-pause-records: %v", err)
		}
		for _, online := range []bool{false, true} {
			mode := map[bool]string{false: "blocking", true: "online"}[online]
			b.Run(fmt.Sprintf("records=%d/%s", records, mode), func(b *testing.B) {
				for b.Loop() {
					compactionPause(b, records, online)
				}
			})
		}
	}
}

func compactionPause(b *testing.B, records int, online bool) {
	c := openCentral(b, tempPath(b, "pri.db"), CentralOptions{})
	defer c.Close()
	c.st.online = online
	pad := strings.Repeat("x", 200)
	fill := func(round int) {
		for start := 0; start < records; start += 500 {
			batch := make([]Inbound, 0, 500)
			for j := start; j < min(start+500, records); j++ {
				batch = append(batch, inbound(fmt.Sprintf("f%d-%d", round, j), rec("item", fmt.Sprintf("r%07d", j), map[string]any{StoreField: "s2", "n": round, "pad": pad})))
			}
			if _, err := c.Accept(2, batch, sites); err != nil {
				b.Fatal(err)
			}
		}
	}
	c.st.minCompact = 1 << 62 // no compaction while the file is built
	fill(0)
	fill(1)
	fill(2)
	write := func(i int) time.Duration {
		t0 := time.Now()
		if _, err := c.Write(rec("unit", fmt.Sprint(i%100), map[string]any{"n": i}), sites); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	var before, during []time.Duration
	for i := range 300 {
		before = append(before, write(i))
	}
	size := fileSize(b, c.st.path)
	c.st.minCompact = 1 << 20
	start := time.Now()
	for i := 0; c.st.compactions == 0; i++ {
		c.st.commits = compactCheckEvery // check the size at this commit
		during = append(during, write(i))
		if time.Since(start) > 5*time.Minute {
			b.Fatal("no compaction within 5 minutes")
		}
	}
	took := time.Since(start)
	p99 := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)*99/100]
	}
	b.ReportMetric(float64(size)/(1<<20), "MB")
	b.ReportMetric(float64(took.Milliseconds()), "compaction-ms")
	b.ReportMetric(float64(p99(before).Microseconds())/1000, "p99-before-ms")
	b.ReportMetric(float64(p99(during).Microseconds())/1000, "p99-during-ms")
	b.ReportMetric(float64(slices.Max(during).Microseconds())/1000, "max-wait-ms")
}
