package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"syncagent/queue"

	"syncagent/testtools/benchtable"
)

// Targets from issue 13: RAM per 300-byte record held, and how soon
// `syncagent status` answers after a restart with 300,000 of them.
const (
	perRecordTarget = 600 // bytes
	restartTarget   = time.Second
)

func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a record count", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// runHeld is `footprint -only held`: build for this machine, measure, print.
func runHeld(counts []int) error {
	dir, err := os.MkdirTemp("", "sa-fp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	host := filepath.Join(dir, "syncagent")
	if err := build(host, runtime.GOARCH, ""); err != nil {
		return err
	}
	sha, _, err := passwords(host)
	if err != nil {
		return err
	}
	rows, err := heldRows(host, dir, sha, counts)
	if err != nil {
		return err
	}
	printRows(rows)
	return nil
}

// heldRows starts a satellite holding n synced records of about 300 bytes
// for each n: the time from exec to `status` answering on the control
// socket, and its resident memory once started (VmRSS ÷ n is the figure
// per record, everything the process holds included).
func heldRows(host, dir, sha string, counts []int) ([]benchtable.Row, error) {
	var rows []benchtable.Row
	for _, n := range counts {
		d := filepath.Join(dir, fmt.Sprintf("held-%d", n))
		if err := writePrefs(d, satellitePrefs(d, "http://127.0.0.1:9", sha)); err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "footprint: a satellite datafile holding %d records\n", n)
		size, err := prefillSynced(filepath.Join(d, "state", "satellite.db"), n)
		if err != nil {
			return nil, err
		}
		// The first start may compact the datafile the prefill left (it
		// holds every record twice); the restart is what a technician sees.
		var a *agent
		var answered, ready [2]time.Duration
		for i := range answered {
			if a != nil {
				a.stop()
			}
			if a, err = startAgent(host, d, watchdogEnv); err != nil {
				return nil, err
			}
			if err := a.waitSocket(5 * time.Minute); err != nil {
				a.stop()
				return nil, err
			}
			answered[i] = time.Since(a.Started)
			// Status answers while the datafile opens; READY=1 comes once
			// it is open and records can be read and written.
			if err := a.waitReady(5 * time.Minute); err != nil {
				a.stop()
				return nil, err
			}
			ready[i] = a.readyAfter()
		}
		var st struct {
			Records int `json:"records"`
		}
		if err := a.call("GET", "/v1/status", "", &st); err != nil || st.Records != n {
			a.stop()
			return nil, fmt.Errorf("status after a restart with %d records: records %d, %v", n, st.Records, err)
		}
		fi, _ := os.Stat(filepath.Join(d, "state", "satellite.db"))
		time.Sleep(3 * time.Second) // past the start's garbage being returned
		rss, hwm, _, err := memory(a.Pid())
		a.stop()
		if err != nil {
			return nil, err
		}
		per := float64(rss) / float64(n)
		rows = append(rows,
			benchtable.Measure(fmt.Sprintf("satellite RSS holding %d records (VmRSS / VmHWM; datafile %.0f MiB)", n, mb(size)), fmt.Sprintf("%.1f MiB / %.1f MiB: %.0f B per record", mb(rss), mb(hwm), per),
				fmt.Sprintf("≤ %d B per record", perRecordTarget), heldVerdict(n, per <= perRecordTarget)),
			benchtable.Measure(fmt.Sprintf("restart to `status` answering, %d records (datafile %.0f MiB)", n, mb(fi.Size())),
				fmt.Sprintf("%v (the first start after the prefill: %v)", answered[1].Round(time.Millisecond), answered[0].Round(time.Millisecond)), "≤ 1 s at 300k", heldVerdict(n, answered[1] <= restartTarget)),
			benchtable.Measure(fmt.Sprintf("restart to ready (datafile open, READY=1), %d records", n),
				fmt.Sprintf("%v (the first start: %v)", ready[1].Round(time.Millisecond), ready[0].Round(time.Millisecond)), "", ""))
	}
	return rows, nil
}

// heldVerdict judges the targets at 300,000 records and above only (below,
// the process's own few MiB dominate the figure per record).
func heldVerdict(n int, ok bool) string {
	if n < 300_000 {
		return ""
	}
	return benchtable.Verdict(ok)
}

// prefillSynced writes n records of about 300 bytes into a fresh satellite
// datafile and marks them pushed: a site that has synced them.
func prefillSynced(path string, n int) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return 0, err
	}
	l, err := queue.OpenLocal(path, queue.LocalOptions{})
	if err != nil {
		return 0, err
	}
	const batch = 5000
	for i := 0; i < n; i += batch {
		rs := make([]queue.Record, 0, batch)
		for j := i; j < min(i+batch, n); j++ {
			rs = append(rs, queue.Record{Table: "stock_line", ID: fmt.Sprintf("r%07d", j), Action: queue.Insert, Data: record300(j)})
		}
		es, err := l.WriteMany(rs)
		if err == nil {
			err = l.MarkPushed(es)
		}
		if err != nil {
			l.Close()
			return 0, err
		}
	}
	if err := l.Close(); err != nil {
		return 0, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// record300 is a stock line of 300 bytes of JSON.
func record300(j int) json.RawMessage {
	s := fmt.Sprintf(`{"store_ID":"store-a","item_ID":"item-%05d","batch":"B-2026-%07d","expiry_date":"2027-03-31","pack_size":10,"cost_price":12.5,"sell_price":15.75,"available":%d,"total":%d,"location_ID":"loc-%03d","note":"`,
		j%997, j, j%500, j%700, j%100)
	return json.RawMessage(s + strings.Repeat(".", max(0, 300-len(s)-2)) + `"}`)
}
