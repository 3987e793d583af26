package primary

import (
	"strconv"

	"syncagent/agent/metrics"
)

// Gauges are the fleet's figures of the present, for the metrics at each
// scrape: per site its queue, the health it reported and its verdict; per
// verdict how many sites have it (never connected included).
func (s *Server) Gauges() []metrics.Gauge {
	sites := s.Sites()
	out := make([]metrics.Gauge, 0, 12*len(sites)+8)
	byVerdict := map[string]int{VerdictOK: 0, VerdictLate: 0, VerdictFailing: 0, VerdictNever: 0}
	queued := 0
	for _, v := range sites {
		l := map[string]string{"site": strconv.Itoa(v.SyncID)}
		add := func(name, help string, value float64) {
			out = append(out, metrics.Gauge{Name: name, Help: help, Labels: l, Value: value})
		}
		byVerdict[v.Verdict]++
		queued += v.QueueLength
		add("syncagent_site_queue_records", "records queued on the primary for the site", float64(v.QueueLength))
		out = append(out, metrics.Gauge{Name: "syncagent_site_verdict", Help: "1 for the site's verdict (ok, late, failing, never connected)",
			Labels: map[string]string{"site": l["site"], "verdict": v.Verdict}, Value: 1})
		if !v.LastContact.IsZero() {
			add("syncagent_site_last_contact_timestamp_seconds", "the site's last authenticated request", float64(v.LastContact.Unix()))
		}
		h := v.Health
		if h == nil {
			continue
		}
		add("syncagent_site_outbox_records", "changes waiting in the site's outbox (its health block)", float64(h.Outbox))
		add("syncagent_site_outbox_age_seconds", "how long the oldest of them has waited", float64(h.OutboxAge))
		add("syncagent_site_set_aside_records", "records the site set aside", float64(h.Aside))
		add("syncagent_site_datafile_bytes", "the site's datafile size", float64(h.DataBytes))
		add("syncagent_site_free_bytes", "free space in the site's state directory", float64(h.FreeBytes))
		add("syncagent_site_clock_skew_seconds", "the site's clock minus the primary's", v.ClockSkew.Seconds())
		add("syncagent_site_uptime_seconds", "how long the site's agent has run", float64(h.Uptime))
		if h.LastSuccess > 0 {
			add("syncagent_site_last_success_timestamp_seconds", "the site's last successful cycle", float64(h.LastSuccess))
		}
		if h.LastErrorAt > 0 {
			add("syncagent_site_last_error_timestamp_seconds", "the site's last failed cycle", float64(h.LastErrorAt))
		}
	}
	for verdict, n := range byVerdict {
		out = append(out, metrics.Gauge{Name: "syncagent_sites", Help: "configured sites by verdict", Labels: map[string]string{"verdict": verdict}, Value: float64(n)})
	}
	out = append(out, metrics.Gauge{Name: "syncagent_queue_records", Help: "records queued on the primary for all sites", Value: float64(queued)})
	return out
}
