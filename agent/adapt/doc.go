// Package adapt sizes sync requests to the link they travel on, and spaces
// out retries when the link is down.
//
// A Sizer learns from every request: the fixed cost of a round trip, the
// throughput, the failures per second of exposure (time spent in requests)
// and the server's size limit (HTTP 413). From these it plans the request
// size, in bytes and in records, that maximises expected goodput: a request
// of b bytes takes T(b) = RTT + b/throughput, survives with probability
// exp(-hazard·T(b)), and a failure wastes T(b) (its timeout, if it hung).
// Timeout gives each request a deadline of a few times T(b), so a request
// the link swallowed costs seconds, not the whole configured deadline.
// It never plans a request expected to take more than half the deadline, nor
// one beyond Config.MaxBytes, Config.MaxRecords or a size the server refused.
// It grows after clean full-size successes, cuts after failures, and honours
// a fixed request_size when the prefs set one.
//
// The caller's loop, for push (pulls alike: ask for records, no byte bound):
//
//	records, bytes := sizer.Limit()
//	batch := next records of the outbox, at most records and about bytes
//	      (always at least one record)
//	err := send(ctx with sizer.Timeout(bytes of batch), batch)
//	sizer.Observe(Observation{Records: len(batch), Bytes: sent+received,
//	      Elapsed: took, Outcome: OK/Failed/TooLarge/TimedOut,
//	      Full: the record or the byte bound stopped the batch})
//	success: backoff.Reset(); wake the other loop's Backoff
//	failure of a larger batch: Limit is now smaller: re-slice at once
//	failure of one record: backoff.Wait(ctx) (the link's failure is never
//	      the record's: only the server's refusal of it sets it aside)
//
// After a failure the next Limit is smaller than the failed batch (unless it
// held one record), so the caller re-slices the failed batch at the new
// Limit and never resends the same oversized batch. This holds for a fixed
// request_size too: the fixed size returns after the next success.
//
// Bytes are best counted in the unit the byte bound is applied in (e.g. the
// encoded body, before or after gzip, but the same on both sides); records
// are converted with the observed bytes per record either way. Requests
// that never reached the peer (dial or DNS errors) are better not observed,
// and refusals of content (4xx but 413) must not be: they say nothing about
// size.
//
// Backoff is exponential with full jitter; Wake ends a pending Wait at once.
// Both take a clock (SystemClock, or FakeClock in tests) so that tests of
// the sizer and the retries run on simulated time.
//
// Imported by agent/satellite and the wiring in agent/daemon. It imports
// only the standard library.
package adapt
