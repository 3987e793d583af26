package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/rs/zerolog"

	"syncagent/testtools/linkbench"
)

// The emulated link: an in-process toxiproxy between the satellite and the
// primary. Latency, jitter and bandwidth are toxiproxy's own toxics. Three
// toxics are ours, because toxiproxy's are not random enough for a flaky
// link: its limit_data resets every connection after the same byte count,
// reset_peer after a time, and a timeout toxic with a toxicity decides once
// per connection (which HTTP keep-alive reuses), not per request.
//
//   - linkbench_reset closes a connection once one direction has carried a
//     random number of bytes, drawn per connection around a mean;
//   - linkbench_hang swallows a request, with a given chance per request,
//     so that it hangs until the client's deadline;
//   - linkbench_meter counts the bytes the link delivers.
//
// Toxics are created by toxiproxy from JSON attributes, so they find their
// run's state (random source, counters) by name in links.

func init() {
	toxics.Register("linkbench_reset", new(resetToxic))
	toxics.Register("linkbench_hang", new(hangToxic))
	toxics.Register("linkbench_meter", new(meterToxic))
	// toxiproxy's bandwidth toxic logs through zerolog's global logger; stderr
	// is for our progress lines.
	zerolog.SetGlobalLevel(zerolog.Disabled)
}

// linkState is what one run's toxics share. Hangs and resets draw from
// separate random streams, so that with the same seed the k-th request of
// every run meets the same fate, and the k-th connection the same reset
// budget, whatever the request size (common random numbers: the sizes are
// compared on the same luck).
type linkState struct {
	mu                sync.Mutex
	hangRng, resetRng *rand.Rand // guarded by mu

	delivered atomic.Int64 // bytes out of the link, both directions
	resets    atomic.Int64
	hangs     atomic.Int64
}

func (s *linkState) draw(r *rand.Rand) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return r.Float64()
}

var links sync.Map // name → *linkState

func stateOf(name string) *linkState {
	if v, ok := links.Load(name); ok {
		return v.(*linkState)
	}
	return nil
}

// forward passes chunks until the input ends (closing the stub) or the toxic
// is interrupted; keep decides, per chunk, what part of it goes on and
// whether the connection is then cut.
func forward(stub *toxics.ToxicStub, keep func(c *stream.StreamChunk) (out *stream.StreamChunk, cut bool)) {
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			out, cut := keep(c)
			if out != nil && len(out.Data) > 0 {
				stub.Output <- out
			}
			if cut {
				stub.Close()
				return
			}
		}
	}
}

// resetToxic cuts a connection after a random number of bytes in its
// direction, uniform in [Mean/2, 3·Mean/2], drawn once per connection.
type resetToxic struct {
	Link string `json:"link"`
	Mean int64  `json:"mean"`
}

type resetState struct{ left int64 }

func (t *resetToxic) NewState() any {
	st := stateOf(t.Link)
	if st == nil || t.Mean <= 0 {
		return &resetState{left: -1}
	}
	return &resetState{left: int64(float64(t.Mean) * (0.5 + st.draw(st.resetRng)))}
}

func (t *resetToxic) Pipe(stub *toxics.ToxicStub) {
	state := stub.State.(*resetState)
	forward(stub, func(c *stream.StreamChunk) (*stream.StreamChunk, bool) {
		if state.left < 0 {
			return c, false
		}
		if int64(len(c.Data)) < state.left {
			state.left -= int64(len(c.Data))
			return c, false
		}
		cut := &stream.StreamChunk{Data: c.Data[:state.left], Timestamp: c.Timestamp}
		state.left = 0
		if st := stateOf(t.Link); st != nil {
			st.resets.Add(1)
		}
		return cut, true
	})
}

// hangToxic, on the client's side of the link, swallows a request with
// chance Prob: that request and everything after it on the connection
// vanish, until the client gives up and closes it. A request starts where
// a chunk starts with an HTTP method (the client never pipelines).
type hangToxic struct {
	Link string  `json:"link"`
	Prob float64 `json:"prob"`
}

type hangState struct{ hanging bool }

func (t *hangToxic) NewState() any { return new(hangState) }

func (t *hangToxic) Pipe(stub *toxics.ToxicStub) {
	state := stub.State.(*hangState)
	st := stateOf(t.Link)
	forward(stub, func(c *stream.StreamChunk) (*stream.StreamChunk, bool) {
		if !state.hanging && st != nil && startsRequest(c.Data) && st.draw(st.hangRng) < t.Prob {
			state.hanging = true
			st.hangs.Add(1)
		}
		if state.hanging {
			return nil, false
		}
		return c, false
	})
}

// startsRequest reports whether b begins an HTTP request of the sync API.
func startsRequest(b []byte) bool {
	return bytes.HasPrefix(b, []byte("GET /")) || bytes.HasPrefix(b, []byte("POST /"))
}

// meterToxic counts what the link delivers.
type meterToxic struct {
	Link string `json:"link"`
}

func (t *meterToxic) Pipe(stub *toxics.ToxicStub) {
	st := stateOf(t.Link)
	forward(stub, func(c *stream.StreamChunk) (*stream.StreamChunk, bool) {
		if st != nil {
			st.delivered.Add(int64(len(c.Data)))
		}
		return c, false
	})
}

// link is a running proxy with a profile's toxics.
type link struct {
	name  string
	proxy *toxiproxy.Proxy
	state *linkState
}

// Addr is where the satellite connects.
func (l *link) Addr() string { return l.proxy.Listen }

// newLink starts a proxy on loopback in front of upstream with p's toxics.
// name must be unique among the links alive at once.
func newLink(name, upstream string, p linkbench.Profile, seed uint64) (*link, error) {
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	proxy := toxiproxy.NewProxy(server, name, "127.0.0.1:0", upstream)
	if err := proxy.Start(); err != nil {
		return nil, fmt.Errorf("cannot start the link proxy: %w", err)
	}
	l := &link{name: name, proxy: proxy, state: &linkState{
		hangRng:  rand.New(rand.NewPCG(seed, 0x68616e67)),
		resetRng: rand.New(rand.NewPCG(seed, 0x72657365)),
	}}
	links.Store(name, l.state)
	if err := l.addToxics(p); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// addToxics builds each direction's chain, in this order: hang (requests
// only), reset, latency, bandwidth, meter. Latency comes before bandwidth
// because toxiproxy's latency toxic delays each chunk from the time it was
// read: after bandwidth it would not add to the transfer time.
func (l *link) addToxics(p linkbench.Profile) error {
	half := func(d int64) int64 { return (d + 1) / 2 }
	for _, dir := range []string{"upstream", "downstream"} {
		if dir == "upstream" && p.TimeoutProb > 0 {
			if err := l.add(dir, "linkbench_hang", hangToxic{Link: l.name, Prob: p.TimeoutProb}); err != nil {
				return err
			}
		}
		if p.ResetAfter > 0 {
			if err := l.add(dir, "linkbench_reset", resetToxic{Link: l.name, Mean: int64(p.ResetAfter)}); err != nil {
				return err
			}
		}
		if p.Latency > 0 {
			lat := toxics.LatencyToxic{Latency: half(p.Latency.Milliseconds()), Jitter: half(p.Jitter.Milliseconds())}
			if p.Jitter > 0 && lat.Jitter == 0 {
				lat.Jitter = 1
			}
			if err := l.add(dir, "latency", lat); err != nil {
				return err
			}
		}
		if p.KBps > 0 {
			if err := l.add(dir, "bandwidth", toxics.BandwidthToxic{Rate: int64(p.KBps)}); err != nil {
				return err
			}
		}
		if err := l.add(dir, "linkbench_meter", meterToxic{Link: l.name}); err != nil {
			return err
		}
	}
	return nil
}

// add adds a toxic through toxiproxy's API structures, as its HTTP API would.
func (l *link) add(dir, typ string, attributes any) error {
	body, err := json.Marshal(map[string]any{
		"name": typ + "_" + dir, "type": typ, "stream": dir, "toxicity": 1.0, "attributes": attributes,
	})
	if err != nil {
		return err
	}
	if _, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(string(body))); err != nil {
		return fmt.Errorf("cannot add the %s toxic (%s): %w", typ, dir, err)
	}
	return nil
}

// Close stops the proxy and its connections.
func (l *link) Close() {
	l.proxy.Stop()
	links.Delete(l.name)
}
