package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"syncagent/agent/satellite"
	"syncagent/queue"
)

// faultSetup is a primary with sites 2 and 3 sharing store s, behind a
// toxiproxy, both sites initialised.
func faultSetup(t *testing.T, size int, timeout time.Duration) (p *livePrimary, px proxyURL, a, b *site) {
	t.Helper()
	p = newLivePrimary(t, map[int][]string{2: {"s"}, 3: {"s"}})
	proxy := newProxy(t, p.addr)
	px = proxyURL{proxy, "http://" + proxy.Listen}
	a = faultSite(t, 2, []string{"s"}, px.url, size, timeout)
	b = faultSite(t, 3, []string{"s"}, px.url, size, timeout)
	a.sync(t)
	b.sync(t)
	return p, px, a, b
}

// noneAside fails if a site set anything aside: every record here is valid,
// so an aside record would be one that never reaches the other site.
func noneAside(t *testing.T, sites ...*site) {
	t.Helper()
	for _, s := range sites {
		if aside, _ := s.store.Aside(); len(aside) != 0 {
			t.Errorf("site %d set %d records aside: %+v", s.id, len(aside), aside[0])
		}
	}
}

// TestFaults_pushAnswerLostAfterCommit protects exactly-once delivery of a
// push: the primary commits, the answer is lost (the connection dies), the
// satellite re-sends; site 3 gets each record once.
func TestFaults_pushAnswerLostAfterCommit(t *testing.T) {
	p, px, a, b := faultSetup(t, 5, 5*time.Second)
	putN(t, a, "r", "s", 20, 0)
	c := cutAfterCommit(t, px.Proxy, "POST", "queued_records", 2)
	a.sat.Cycle(context.Background())
	if c.done.Load() != 2 {
		t.Fatalf("%d push answers lost, want 2", c.done.Load())
	}
	syncUntilDrained(t, a, 3)
	if n := p.central.QueueLen(3); n != 20 {
		t.Fatalf("site 3 queue = %d after lost push answers, want 20", n)
	}
	b.sync(t)
	holdsExactly(t, b, "r", 20)
	if n := p.central.QueueLen(3); n != 0 {
		t.Errorf("site 3 queue = %d after its sync, want 0", n)
	}

	// The same with a TCP reset (toxiproxy's reset_peer, SO_LINGER 0) on
	// every answer of a whole cycle: all its pushes commit, none is heard.
	a.client.HTTP.CloseIdleConnections() // new links carry the reset
	putN(t, a, "x", "s", 12, 0)
	addToxic(t, px.Proxy, "rst", "reset_peer", "downstream", map[string]any{"timeout": 0})
	if res := a.sat.Cycle(context.Background()); res.Err == nil {
		t.Fatal("a cycle whose every answer was reset succeeded")
	}
	if a.store.OutboxLen() != 12 {
		t.Fatalf("outbox = %d after reset answers, want 12", a.store.OutboxLen())
	}
	if n := p.central.QueueLen(3); n == 0 {
		t.Fatal("no push reached the primary through the resets: nothing to test")
	}
	removeToxic(t, px.Proxy, "rst")
	syncUntilDrained(t, a, 3)
	b.sync(t)
	holdsExactly(t, b, "x", 12)
	if n := p.central.QueueLen(3); n != 0 {
		t.Errorf("site 3 queue = %d after reset answers and its sync, want 0", n)
	}
	noneAside(t, a, b)
}

// TestFaults_pullAnswerLost protects pulls: lost answers of central_records
// and queued_records move no cursor and acknowledge nothing.
func TestFaults_pullAnswerLost(t *testing.T) {
	p, px, a, b := faultSetup(t, 5, 5*time.Second)
	putN(t, a, "r", "s", 20, 0)
	a.sync(t)
	for i := 0; i < 7; i++ {
		if _, err := p.prim.Write(queue.Record{Table: "item", ID: fmt.Sprintf("i%d", i), Action: queue.Insert, Data: json.RawMessage(`{"n":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
	cc := cutAfterCommit(t, px.Proxy, "GET", "central_records", 3)
	cq := cutAfterCommit(t, px.Proxy, "GET", "queued_records", 3)
	for i := 0; i < 4 && (cc.done.Load() < 1 || cq.done.Load() < 1); i++ {
		b.sat.Cycle(context.Background())
	}
	if cc.done.Load() < 1 || cq.done.Load() < 1 {
		t.Fatalf("answers lost: central %d, queued %d; want at least one each", cc.done.Load(), cq.done.Load())
	}
	b.sync(t)
	holdsExactly(t, b, "r", 20)
	if items, _ := b.store.List("item", "", 100); len(items) != 7 {
		t.Errorf("site 3 holds %d central records, want 7", len(items))
	}
	if n := p.central.QueueLen(3); n != 0 {
		t.Errorf("site 3 queue = %d, want 0", n)
	}
	noneAside(t, a, b)
}

// TestFaults_acknowledgementLost protects the acknowledgement both ways: an
// acknowledgement lost before the primary saw it, every time the cycle
// tries it, redelivers (applied again, no change); one lost once is retried
// at once; one whose answer is lost after the primary committed it
// redelivers nothing.
func TestFaults_acknowledgementLost(t *testing.T) {
	const tries = 4 // the satellite's maxConsecutiveFailures
	p, px, a, b := faultSetup(t, 50, 5*time.Second)
	putN(t, a, "r", "s", 20, 0)
	a.sync(t)

	before := loseRequest(t, px.Proxy, "POST", "acknowledged_records", tries)
	if res := b.sat.Cycle(context.Background()); res.Err == nil || before.done.Load() != tries {
		t.Fatalf("lost acknowledgements: cycle err %v, %d lost", res.Err, before.done.Load())
	}
	holdsExactly(t, b, "r", 20)
	if n := p.central.QueueLen(3); n != 20 {
		t.Fatalf("queue = %d: records left the queue without an acknowledgement", n)
	}
	if res := b.sync(t); res.Pulled != 20 {
		t.Errorf("redelivered %d, want 20", res.Pulled)
	}
	holdsExactly(t, b, "r", 20)

	putN(t, a, "o", "s", 10, 0)
	a.sync(t)
	once := loseRequest(t, px.Proxy, "POST", "acknowledged_records", 1)
	if res := b.sat.Cycle(context.Background()); res.Err != nil || once.done.Load() != 1 {
		t.Fatalf("one lost acknowledgement: cycle err %v, %d lost; want it retried at once", res.Err, once.done.Load())
	}
	if n := p.central.QueueLen(3); n != 0 {
		t.Fatalf("queue = %d after a retried acknowledgement, want 0", n)
	}
	holdsExactly(t, b, "o", 10)

	putN(t, a, "q", "s", 10, 0)
	a.sync(t)
	after := cutAfterCommit(t, px.Proxy, "POST", "acknowledged_records", 1)
	if res := b.sat.Cycle(context.Background()); res.Err != nil || after.done.Load() != 1 {
		t.Fatalf("lost acknowledgement answer: cycle err %v, %d lost; want it retried at once", res.Err, after.done.Load())
	}
	if n := p.central.QueueLen(3); n != 0 {
		t.Fatalf("queue = %d after a committed acknowledgement, want 0", n)
	}
	if res := b.sync(t); res.Pulled != 0 {
		t.Errorf("redelivered %d after a committed acknowledgement, want 0", res.Pulled)
	}
	holdsExactly(t, b, "q", 10)
	holdsExactly(t, b, "r", 20)
	noneAside(t, a, b)
}

// TestFaults_hangingPrimary protects the loop's liveness and the data: a
// primary that takes requests but never answers (or never even receives
// them) ends the cycle within the per-call deadlines, sets nothing aside,
// and everything goes through once it answers again.
func TestFaults_hangingPrimary(t *testing.T) {
	const deadline = 300 * time.Millisecond
	for _, direction := range []string{"downstream", "upstream"} {
		t.Run(direction, func(t *testing.T) {
			p, px, a, b := faultSetup(t, 5, deadline)
			putN(t, a, "r", "s", 12, 0)
			addToxic(t, px.Proxy, "hang", "timeout", direction, map[string]any{"timeout": 0})
			start := time.Now()
			res := a.sat.Cycle(context.Background())
			took := time.Since(start)
			if res.Err == nil || !isTimeout(res.Err) {
				t.Fatalf("cycle against a hanging primary: %v, want a timeout", res.Err)
			}
			// At most maxConsecutiveFailures calls, each bounded by the deadline.
			if took > 8*deadline+time.Second {
				t.Errorf("cycle took %s against a hanging primary", took)
			}
			if a.store.OutboxLen() != 12 {
				t.Errorf("outbox = %d after a hung push, want 12", a.store.OutboxLen())
			}
			removeToxic(t, px.Proxy, "hang")
			syncUntilDrained(t, a, 5)
			if n := p.central.QueueLen(3); n != 12 {
				t.Fatalf("site 3 queue = %d, want 12", n)
			}
			b.sync(t)
			holdsExactly(t, b, "r", 12)
			noneAside(t, a, b)
		})
	}
}

// TestFaults_hungRequestGivenUpEarly protects the per-request deadline:
// once the satellite has seen that the link answers in milliseconds, a
// request the link swallows is given up after the floor of a few times
// that, not after the client's whole deadline; the records arrive once,
// when the link is back.
func TestFaults_hungRequestGivenUpEarly(t *testing.T) {
	const deadline, floor = 20 * time.Second, 200 * time.Millisecond
	p, px, a, b := faultSetup(t, 0, deadline)
	a.sat.Configure(satellite.Config{Stores: []string{"s"}, MinTimeout: floor})
	putN(t, a, "r", "s", 12, 0)
	syncUntilDrained(t, a, 3) // the sizers learn the link: loopback
	putN(t, a, "q", "s", 12, 0)
	addToxic(t, px.Proxy, "hang", "timeout", "downstream", map[string]any{"timeout": 0})
	start := time.Now()
	res := a.sat.Cycle(context.Background())
	took := time.Since(start)
	if res.Err == nil || !isTimeout(res.Err) {
		t.Fatalf("cycle over a link that swallows answers: %v, want a timeout", res.Err)
	}
	// A few requests, each given up after about the floor.
	if took > 20*floor {
		t.Errorf("hung requests held the cycle for %v; the floor is %v, the client's deadline %v", took, floor, deadline)
	}
	removeToxic(t, px.Proxy, "hang")
	syncUntilDrained(t, a, 5)
	if n := p.central.QueueLen(3); n != 24 {
		t.Fatalf("site 3 queue = %d, want 24", n)
	}
	b.sync(t)
	holdsExactly(t, b, "q", 12)
	noneAside(t, a, b)
}

// TestFaults_slowBodies protects progress on a slow link: request and
// response bodies that trickle (bandwidth) or arrive in fragments (slicer)
// make calls time out at first; the adaptive sizer shrinks the batches and
// every record arrives once.
func TestFaults_slowBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("slow link: several seconds")
	}
	p, px, a, b := faultSetup(t, 0, time.Second)
	putN(t, a, "r", "s", 8, 600)
	// Far slower than the slowest link the first batch is sized for (10 kB/s
	// in half the deadline), so the first batches time out.
	addToxic(t, px.Proxy, "slow-up", "bandwidth", "upstream", map[string]any{"rate": 2})     // KB/s
	addToxic(t, px.Proxy, "slow-down", "bandwidth", "downstream", map[string]any{"rate": 2}) // KB/s
	syncUntilDrained(t, a, 30)
	if callTimeouts(a) == 0 {
		t.Error("no push timed out: the link was not slow enough to test anything")
	}
	if n := p.central.QueueLen(3); n != 8 {
		t.Fatalf("site 3 queue = %d, want 8", n)
	}
	for i := 0; i < 30 && p.central.QueueLen(3) > 0; i++ {
		b.sat.Cycle(context.Background())
	}
	holdsExactly(t, b, "r", 8)
	if n := p.central.QueueLen(3); n != 0 {
		t.Fatalf("site 3 queue = %d on a slow link, want 0", n)
	}
	t.Logf("slow link: %d pushes and %d pulls ran out of time", callTimeouts(a), callTimeouts(b))
	removeToxic(t, px.Proxy, "slow-up")
	removeToxic(t, px.Proxy, "slow-down")

	// Fragments with a delay each, both ways.
	addToxic(t, px.Proxy, "frag-up", "slicer", "upstream", map[string]any{"average_size": 64, "size_variation": 32, "delay": 200})
	addToxic(t, px.Proxy, "frag-down", "slicer", "downstream", map[string]any{"average_size": 64, "size_variation": 32, "delay": 200})
	putN(t, a, "f", "s", 15, 300)
	syncUntilDrained(t, a, 10)
	for i := 0; i < 10 && p.central.QueueLen(3) > 0; i++ {
		b.sat.Cycle(context.Background())
	}
	holdsExactly(t, b, "f", 15)
	noneAside(t, a, b)
}

// TestFaults_primaryRestartedMidCycle protects a cycle against a primary
// that goes away in the middle (every connection closed, the datafile
// closed) and comes back on the same port: push and pull both resume, with
// every record once and the queue empty.
func TestFaults_primaryRestartedMidCycle(t *testing.T) {
	p, px, a, b := faultSetup(t, 5, 2*time.Second)
	addToxic(t, px.Proxy, "latency", "latency", "downstream", map[string]any{"latency": 15})
	putN(t, a, "r", "s", 200, 0)

	restartDuring := func(s *site) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- s.sat.Cycle(context.Background()).Err }()
		time.Sleep(200 * time.Millisecond)
		p.stop()
		time.Sleep(100 * time.Millisecond)
		p.start(nil)
		if err := <-done; err == nil {
			t.Logf("site %d: the cycle survived the restart on its own", s.id)
		}
	}
	restartDuring(a)
	if a.store.OutboxLen() == 0 || a.store.OutboxLen() == 200 {
		t.Logf("outbox %d at the restart: the restart did not land mid-push", a.store.OutboxLen())
	}
	syncUntilDrained(t, a, 5)
	if n := p.central.QueueLen(3); n != 200 {
		t.Fatalf("site 3 queue = %d after a restart mid-push, want 200", n)
	}
	restartDuring(b)
	for i := 0; i < 5 && p.central.QueueLen(3) > 0; i++ {
		b.sat.Cycle(context.Background())
	}
	if n := p.central.QueueLen(3); n != 0 {
		t.Fatalf("site 3 queue = %d after a restart mid-pull, want 0", n)
	}
	holdsExactly(t, b, "r", 200)
	noneAside(t, a, b)
}
