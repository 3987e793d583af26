package daemon

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"syncagent/agent/control"
)

// TestStart_statusWhileTheDatafileOpens: right after a restart, while a big
// datafile opens (seconds at 300,000 records), `syncagent status` answers
// what the agent is doing, writes are refused with when to retry, and
// nothing is written; once open, the agent serves as always.
func TestStart_statusWhileTheDatafileOpens(t *testing.T) {
	b := newBox(t)
	b.write(b.render(satellite12("http://127.0.0.1:9")))
	release := make(chan struct{})
	opening := make(chan struct{})
	openingDatafile = func() { close(opening); <-release }
	defer func() { openingDatafile = func() {} }()
	started := make(chan error, 1)
	go func() { started <- b.tryStart() }()
	select {
	case <-opening:
	case err := <-started:
		t.Fatalf("the agent started without opening its datafile: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the agent never came to open its datafile")
	}
	ctx := context.Background()
	st, err := b.client.Status(ctx)
	if err != nil {
		t.Fatalf("status while the datafile opens: %v", err)
	}
	if !st.Running || st.Role != "satellite" || st.SyncID != 12 || !strings.Contains(st.Opening, "opening the datafile") || !strings.Contains(st.Opening, "satellite.db") {
		t.Errorf("status while opening = %+v; want running, satellite 12, opening the datafile", st)
	}
	var ce *control.Error
	if _, err := b.client.PutRecord(ctx, "stock", "1", []byte(`{"store_ID":"a"}`)); !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable || !strings.Contains(ce.Msg, "retry") {
		t.Errorf("a write while the datafile opens: %v; want 503 saying to retry", err)
	}
	close(release)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if st := b.status(); st.Opening != "" || st.Interval == "" {
		t.Errorf("status once open = %+v; want the full status", st)
	}
	if _, err := b.client.PutRecord(ctx, "stock", "1", []byte(`{"store_ID":"a"}`)); err != nil {
		t.Fatalf("a write once open: %v", err)
	}
	if _, err := b.client.GetRecord(ctx, "stock", "1"); err != nil {
		t.Errorf("the write made once open: %v", err)
	}
}
