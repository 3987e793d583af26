package pg

import (
	"fmt"
	"testing"
	"time"

	"syncagent/queue"
	"syncagent/queue/storetest"
	"syncagent/testtools/pgtest"
)

func writeMany(t *testing.T, s *Store, router queue.Router, n int) {
	t.Helper()
	for start := 0; start < n; start += 500 {
		var in []queue.Inbound
		for i := start; i < min(n, start+500); i++ {
			in = append(in, queue.Inbound{SyncOutID: fmt.Sprint("m-", i), Record: storeRecord("item", fmt.Sprintf("r%05d", i), "s1", i)})
		}
		if _, err := s.Accept(2, in, router); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStore_FillSeenByAnotherNode protects stateless nodes: while one node
// fills a site's queue (in batches), another says the site is filling; a
// second fill adds nothing.
func TestStore_FillSeenByAnotherNode(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := openStore(t, dsn, Options{}), openStore(t, dsn, Options{})
	router := storetest.Router{"s1": {2, 3}}
	writeMany(t, a, router, 2500)
	ackAllOf(t, a, 3)
	var during []bool
	a.testHookFill = func(int) { during = append(during, b.Filling(3)) }
	n, err := a.Fill(3)
	if err != nil || n != 2500 || len(during) != 3 || !during[0] || !during[2] {
		t.Fatalf("Fill = %d, %v; Filling on the other node during its batches: %v", n, err, during)
	}
	if b.Filling(3) {
		t.Fatal("still filling after the fill")
	}
	a.testHookFill = nil
	if n, err := b.Fill(3); err != nil || n != 0 || b.QueueLen(3) != 2500 {
		t.Fatalf("second Fill = %d, %v, length %d", n, err, b.QueueLen(3))
	}
}

func ackAllOf(t *testing.T, s *Store, site int) {
	t.Helper()
	for {
		q, _, err := s.Queued(site, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(q) == 0 {
			return
		}
		var ids []string
		for _, e := range q {
			ids = append(ids, e.SyncOutID)
		}
		if _, err := s.Ack(site, ids); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStore_StaleStartedReadsNew protects a site whose initialisation was
// started by a node that died: once the lease lapses it reads as "new", so
// the site asks again instead of waiting for ever.
func TestStore_StaleStartedReadsNew(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := openStore(t, dsn, Options{FillLease: 300 * time.Millisecond})
	if err := a.SetInitialisation(4, queue.InitStarted); err != nil {
		t.Fatal(err)
	}
	if s, _ := a.Site(4); s.Initialisation != queue.InitStarted {
		t.Fatalf("just started: %s", s.Initialisation)
	}
	a.Close()
	b := openStore(t, dsn, Options{})
	time.Sleep(400 * time.Millisecond)
	if s, _ := b.Site(4); s.Initialisation != queue.InitNew || b.Filling(4) {
		t.Fatalf("after the lease: %s, filling %v", s.Initialisation, b.Filling(4))
	}
	if err := b.SetInitialisation(4, queue.InitCompleted); err != nil {
		t.Fatal(err)
	}
	if s, _ := b.Site(4); s.Initialisation != queue.InitCompleted {
		t.Fatalf("completed: %s", s.Initialisation)
	}
}

// TestStore_ContactsAcrossNodes protects the last-contact rule: a node
// writes a site's contact at most once a minute, another node sees what was
// written, and FlushContacts writes the rest.
func TestStore_ContactsAcrossNodes(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := openStore(t, dsn, Options{}), openStore(t, dsn, Options{})
	t0 := time.Now().Add(-time.Hour)
	a.Touch(6, t0)
	a.Touch(6, t0.Add(30*time.Second))
	if s, _ := b.Site(6); !s.LastContact.Equal(t0.UTC()) {
		t.Fatalf("other node sees %v, want %v", s.LastContact, t0.UTC())
	}
	if s, _ := a.Site(6); !s.LastContact.Equal(t0.Add(30 * time.Second).UTC()) {
		t.Fatalf("own node sees %v", s.LastContact)
	}
	b.Touch(6, t0.Add(10*time.Second)) // older than what is written once b writes: kept the later
	if err := a.FlushContacts(); err != nil {
		t.Fatal(err)
	}
	if s, _ := b.Site(6); !s.LastContact.Equal(t0.Add(30 * time.Second).UTC()) {
		t.Fatalf("after flush other node sees %v", s.LastContact)
	}
}
