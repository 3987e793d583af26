package primary

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"syncagent/agent/passwd"
	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// BenchmarkServer_Push500 is one authenticated push of 500 records of
// about 300 B through the real handler (decode, route, decide, apply with
// two fsyncs), each store on two sites: the primary's ingest path.
// cpu-µs/record is the process's CPU while the handler runs (the garbage
// collector's included), not the benchmark's building of the body.
func BenchmarkServer_Push500(b *testing.B) {
	c, err := queue.OpenCentral(filepath.Join(b.TempDir(), "c.db"), queue.CentralOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	sum := passwd.SHA256Hex("pw")
	h, _ := passwd.Hash(sum)
	rows := []SiteRow{{SyncID: 2, User: "two", PasswordHash: h, Stores: []string{"s"}}, {SyncID: 3, User: "three", PasswordHash: h, Stores: []string{"s"}}}
	s, err := New(c, Config{Sites: rows}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		b.Fatal(err)
	}
	handler := s.Handler()
	pad := strings.Repeat("x", 230)
	b.ReportAllocs()
	var cpu time.Duration // in the handler only: building the body is the client's
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		var sb strings.Builder
		sb.WriteString(`{"queueLength":500,"data":[`)
		for j := range 500 {
			if j > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"syncOutId":"%d-%d","tableName":"item_line","recordId":"r%d","action":"Update","recordData":{"store_ID":"s","quantity":%d,"note":%q}}`, i, j, j, i, pad)
		}
		sb.WriteString(`]}`)
		req := httptest.NewRequest(http.MethodPost, syncapi.PathPrefix+syncapi.EndpointQueued, strings.NewReader(sb.String()))
		req.SetBasicAuth("two", sum)
		req.Header.Set(syncapi.HeaderSiteUUID, "hw-2")
		req.Header.Set(syncapi.HeaderVersion, "14")
		rec := httptest.NewRecorder()
		cpu0 := cpuTime()
		handler.ServeHTTP(rec, req)
		cpu += cpuTime() - cpu0
		if rec.Code != 200 {
			b.Fatalf("push: %d %s", rec.Code, rec.Body)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*500), "µs/record")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*500), "cpu-µs/record")
}

// cpuTime is the process's user and system CPU so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
