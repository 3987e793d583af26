package soak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"syncagent/agent/control"
)

// writeTimeout bounds one local API write; a write's fsync takes
// milliseconds, so only a stuck agent reaches it.
const writeTimeout = 30 * time.Second

// write is one app: it writes records of its kind until the soak stops,
// one call at a time, as an app on the box would.
func (r *run) write(w writerSpec, rng *rand.Rand) {
	n := r.cl.node(w.site)
	for !r.stopped() {
		k := Key{w.table, w.id(rng.IntN(r.cfg.Keys))}
		who := w.name()
		known, certain := r.ledger.Known(k, who)
		del := certain && known.Present && rng.Float64() < r.cfg.DeleteRatio
		st := State{Present: true, V: r.version.Add(1)}
		if del {
			st = absent
		}
		r.ledger.Attempt(k, who, w.holders, st)
		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		var err error
		if del {
			err = n.client.DeleteRecord(ctx, k.Table, k.ID)
		} else {
			_, err = n.client.PutRecord(ctx, k.Table, k.ID, recordData(w, st.V))
		}
		timedOut := ctx.Err() != nil
		cancel()
		var refusal *control.Error
		switch {
		case err == nil:
			r.ledger.Ack(k, who, st)
			r.count(func(res *Result) { res.Writes++; res.Acked++ })
		case errors.As(err, &refusal):
			r.ledger.Refused(k, who, st)
			if del && refusal.Status == 404 && w.contended() {
				// Another site deleted it and the delete arrived: nothing written.
				r.count(func(res *Result) { res.Writes++; res.Refused++ })
				continue
			}
			if del && refusal.Status == 404 {
				r.count(func(res *Result) { res.Writes++; res.OriginLost++ })
				fmt.Fprintf(r.cfg.Out, "  ! %s: delete of %s found no record, but %s was acknowledged\n", w.site, k, known)
				continue
			}
			r.count(func(res *Result) { res.Writes++; res.Refused++ })
			fmt.Fprintf(r.cfg.Out, "  ! %s refused %s: %v\n", w.site, k, err)
			time.Sleep(100 * time.Millisecond)
		case strings.Contains(err.Error(), "agent is not running"):
			// Nobody answered on the socket: the call never reached an agent.
			r.ledger.Refused(k, who, st)
			r.count(func(res *Result) { res.Writes++; res.Down++ })
			time.Sleep(time.Duration(20+rng.IntN(60)) * time.Millisecond)
		case timedOut:
			r.ledger.TimedOut(k, who, st)
			r.count(func(res *Result) { res.Writes++; res.TimedOut++ })
		default: // the agent was killed mid-call: the write may have been committed
			r.count(func(res *Result) { res.Writes++; res.Unanswered++ })
			time.Sleep(time.Duration(20+rng.IntN(60)) * time.Millisecond)
		}
		if r.cfg.WritePause > 0 {
			time.Sleep(time.Duration(rng.Int64N(int64(r.cfg.WritePause) + 1)))
		}
	}
}

// recordData is what a writer stores: the store, who wrote it, and the
// write's version, which the comparison reads back.
func recordData(w writerSpec, v int64) json.RawMessage {
	m := map[string]any{"w": w.name(), "v": v, "note": strings.Repeat("x", int(v%64))}
	if w.store != "" {
		m["store_ID"] = w.store
	}
	b, _ := json.Marshal(m)
	return b
}

func orCentral(s string) string {
	if s == "" {
		return "central"
	}
	return s
}
