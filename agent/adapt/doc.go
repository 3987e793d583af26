// Package adapt sizes sync requests to the link they travel on, and spaces
// out retries when the link is down.
//
// A Sizer learns from every request: the fixed cost of a round trip, the
// throughput, the failures per second of exposure (time spent in requests)
// and the server's size limit (HTTP 413). From these it plans the request
// size, in bytes and in records, that maximises expected goodput: a request
// of b bytes takes T(b) = RTT + b/throughput, survives with probability
// exp(-hazard·T(b)), and a failure wastes T(b) (the deadline, if it hung).
// It never plans a request expected to take more than half the deadline, nor
// one beyond Config.MaxBytes, Config.MaxRecords or a size the server refused.
// It grows after clean full-size successes, cuts after failures, and honours
// a fixed request_size when the prefs set one.
//
// The caller's loop, for push (pulls alike, with records asked for):
//
//	records, bytes := sizer.Limit()
//	batch := next records of the outbox, at most records and about bytes
//	      (always at least one record)
//	err := send(ctx with the deadline, batch)
//	sizer.Observe(Observation{Records: len(batch), Bytes: sent+received,
//	      Elapsed: took, Outcome: OK/Failed/TooLarge/TimedOut,
//	      Full: len(batch) == records || the byte bound stopped it})
//	success: backoff.Reset(); wake the other loop's Backoff
//	failure of one record: n++; if sizer.SetAside(n) set it aside with the error
//	failure of a larger batch: Limit is now smaller: re-slice at once
//	failure of one record not set aside: backoff.Wait(ctx)
//
// After a failure the next Limit is smaller than the failed batch (unless it
// held one record), so the caller re-slices the failed batch at the new
// Limit and never resends the same oversized batch. Requests that never
// reached the peer (dial or DNS errors) and refusals of content (4xx but 413)
// are not observed: they say nothing about size.
//
// Backoff is exponential with full jitter; Wake ends a pending Wait at once.
// Both take a clock (SystemClock, or FakeClock in tests) so that tests of
// the sizer and the retries run on simulated time.
//
// Imported by agent/satellite and the wiring in agent/daemon. It imports
// only the standard library.
package adapt
