package satellite

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"syncagent/agent/adapt"
	"syncagent/agent/syncapi"
	"syncagent/queue"
)

// TestFirstSync_progress protects what a technician reads while a new box
// pulls its data: records done of the total the primary announced, the
// rate of pulling, and a time left that follows from them; and that the
// progress ends with the initialisation.
func TestFirstSync_progress(t *testing.T) {
	const central, queued, perRecord = 30, 50, 100 * time.Millisecond
	clock := adapt.NewFakeClock(time.Unix(1e9, 0))
	var mu sync.Mutex
	var sat *Satellite
	left := queued
	var seen []string // status while the primary serves each queued page
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ep := strings.TrimPrefix(r.URL.Path, syncapi.PathPrefix)
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		w.Header().Set("Content-Type", "application/json")
		mu.Lock()
		defer mu.Unlock()
		switch ep {
		case syncapi.EndpointSite:
			io.WriteString(w, `{"id":"x","siteId":2,"initialisationStatus":"new","isOmSupplyCentralServer":false,"omSupplyCentralServerUrl":"","mSupplyCentralSiteId":1}`)
		case syncapi.EndpointSiteStatus:
			io.WriteString(w, `{"code":"idle","message":"idle","data":null}`)
		case syncapi.EndpointInitialise:
			fmt.Fprintf(w, `{"queueLength":%d}`, queued)
		case syncapi.EndpointCentral:
			cursor, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
			var data []string
			for id := cursor + 1; id <= central && len(data) < limit; id++ {
				data = append(data, fmt.Sprintf(`{"ID":%d,"tableName":"item","recordId":"i%d","action":"insert","recordData":{"name":"item %d"}}`, id, id, id))
			}
			clock.Advance(time.Duration(len(data)) * perRecord)
			fmt.Fprintf(w, `{"maxCursor":%d,"data":[%s]}`, central, strings.Join(data, ","))
		case syncapi.EndpointQueued:
			if r.Method != http.MethodGet {
				io.WriteString(w, `{"integrationStarted":true}`)
				return
			}
			if fs := sat.Status().FirstSync; fs != nil {
				seen = append(seen, fmt.Sprintf("%d/%d %.0f/s %v", fs.Done, fs.Total, fs.Rate, fs.Left))
			}
			var data []string
			for i := queued - left; i < queued && len(data) < limit; i++ {
				data = append(data, fmt.Sprintf(`{"syncOutId":"q%d","tableName":"transact","recordId":"t%d","action":"update","recordData":{"store_ID":"s"}}`, i, i))
			}
			clock.Advance(time.Duration(len(data)) * perRecord)
			fmt.Fprintf(w, `{"queueLength":%d,"data":[%s]}`, left, strings.Join(data, ","))
		case syncapi.EndpointAcknowledged:
			var ack struct{ SyncIDs []string }
			json.NewDecoder(r.Body).Decode(&ack)
			left -= len(ack.SyncIDs)
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	l, err := queue.OpenLocal(filepath.Join(t.TempDir(), "satellite.db"), queue.LocalOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cl := &syncapi.Client{BaseURL: srv.URL, User: "u", PasswordSHA256: "p", HardwareID: "hw", Timeout: 2 * time.Second}
	sat = New(l, cl, Config{SyncID: 2, Stores: []string{"s"}, RequestSize: 10}, quiet, clock)

	res := sat.Cycle(context.Background())
	if res.Err != nil || res.Initialisation != "completed" {
		t.Fatalf("cycle: err %v, initialisation %q", res.Err, res.Initialisation)
	}
	// Every page takes 100 ms a record: 10 records a second, exactly.
	want := "30/80 10/s 5s 40/80 10/s 4s 50/80 10/s 3s 60/80 10/s 2s 70/80 10/s 1s"
	if got := strings.Join(seen, " "); got != want {
		t.Errorf("progress seen at each queued page:\n got %s\nwant %s", got, want)
	}
	if fs := sat.Status().FirstSync; fs != nil {
		t.Errorf("progress %+v after the initialisation completed", fs)
	}
}

// TestFirstSync_rateOfTheLastMinute: the rate, and so the time left, is
// that of the last minute of pulling, not of the small first pages.
func TestFirstSync_rateOfTheLastMinute(t *testing.T) {
	clock := adapt.NewFakeClock(time.Unix(1e9, 0))
	s := &Satellite{clock: clock}
	s.trackFirst(10_000)
	s.firstPulling(true)
	for range 10 { // 10 records a second for 100 s
		clock.Advance(10 * time.Second)
		s.firstPage(100, 0, false, 10_000-s.first.done-100)
	}
	for range 6 { // then 100 a second for a minute
		clock.Advance(10 * time.Second)
		s.firstPage(1000, 0, false, 10_000-s.first.done-1000)
	}
	fs := s.first.snapshot(clock.Now())
	if fs.Done != 7000 || fs.Total != 10_000 || fs.Rate != 100 || fs.Left != 30*time.Second {
		t.Errorf("done %d of %d at %.0f/s, %v left; want 7000 of 10000 at 100/s, 30s left", fs.Done, fs.Total, fs.Rate, fs.Left)
	}
}
