package daemon

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/prefs"
	"syncagent/agent/version"
	"syncagent/queue"
)

// A diagnostics bundle: what a technician would look at on the box, for the
// central team that asked for it (`syncagent sites diagnose ID`). Bounded
// (the log is cut, oldest first, until the whole fits maxBundle compressed)
// and without secrets: no password hash or SHA-256, no unlock code, no
// keyring (the prefs are described setting by setting, secrets as "set";
// and any secret the running prefs hold is blanked wherever it appears,
// log lines included).

// Bundle is the bundle's content (gzip-compressed JSON on the wire).
type Bundle struct {
	Format     int             `json:"format"` // 1
	Request    string          `json:"request"`
	Made       time.Time       `json:"made"`
	Version    string          `json:"version"`
	HardwareID string          `json:"hardware_id"`
	Status     control.Status  `json:"status"`
	History    []control.Cycle `json:"history"`
	Prefs      []PrefsSetting  `json:"prefs"`
	Queue      QueueStats      `json:"queue"`
	Integrity  Integrity       `json:"integrity"`
	Log        []string        `json:"log"`
	LogCut     int             `json:"log_cut,omitempty"` // oldest log lines left out to stay within the bound
	Aside      []control.Aside `json:"aside,omitempty"`
}

// PrefsSetting is one setting of the running prefs, a secret shown only as
// "(set)".
type PrefsSetting struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// QueueStats are the datafile's figures.
type QueueStats struct {
	Records       int       `json:"records"`
	Outbox        int       `json:"outbox"`
	OutboxSince   time.Time `json:"outbox_since,omitzero"`
	OutboxNumbers string    `json:"outbox_numbering"`
	SetAside      int       `json:"set_aside"`
	Tables        []string  `json:"tables"`
	DatafileBytes int64     `json:"datafile_bytes"`
	FreeBytes     int64     `json:"free_bytes"`
}

// Integrity is the datafile check: every record read back and validated,
// the count the datafile keeps compared with what was read.
type Integrity struct {
	OK        bool     `json:"ok"`
	Read      int      `json:"read"`
	Counted   int      `json:"counted"`
	Invalid   int      `json:"invalid"`
	Problems  []string `json:"problems,omitempty"` // at most 20
	Recovered string   `json:"recovered,omitempty"`
	Took      string   `json:"took"`
}

// Bounds of a bundle.
const (
	maxBundle      = 128 << 10 // compressed bytes
	maxBundleAside = 50
)

// bundle builds the diagnostics bundle answering request (satellite).
func (o *observability) bundle(request string) ([]byte, error) {
	r, ok := o.a.role.(*satelliteRole)
	if !ok {
		return nil, fmt.Errorf("diagnostics bundles are made by satellites")
	}
	p := o.a.prefs.running.Load()
	b := Bundle{Format: 1, Request: request, Made: time.Now().UTC(), Version: version.Version, HardwareID: o.a.hwid,
		Status: o.a.Status(), History: r.hist.cycles(), Prefs: prefsSettings(p), Log: o.logs.Lines()}
	h := r.health()
	b.Queue = QueueStats{Records: r.local.Count(), Outbox: r.local.OutboxLen(), OutboxSince: r.local.OutboxWaitingSince(),
		OutboxNumbers: r.local.OutboxNumbering(), DatafileBytes: h.DataBytes, FreeBytes: h.FreeBytes}
	b.Queue.Tables, _ = r.local.Tables()
	if aside, err := r.local.Aside(); err == nil {
		b.Queue.SetAside = len(aside)
		for i, e := range aside {
			if i == maxBundleAside {
				break
			}
			b.Aside = append(b.Aside, control.Aside{Table: e.Record.Table, ID: e.Record.ID, Reason: e.Reason, At: e.At})
		}
	}
	b.Integrity = checkIntegrity(r.local)
	secrets := prefsSecrets(p)
	for {
		out, err := encodeBundle(b, secrets)
		if err != nil {
			return nil, err
		}
		if len(out) <= maxBundle || len(b.Log) == 0 {
			return out, nil
		}
		cut := max(1, len(b.Log)/4)
		b.Log, b.LogCut = b.Log[cut:], b.LogCut+cut
	}
}

func encodeBundle(b Bundle, secrets []string) ([]byte, error) {
	raw, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("cannot encode the diagnostics bundle: %w", err)
	}
	for _, s := range secrets {
		raw = bytes.ReplaceAll(raw, []byte(s), []byte("(secret)"))
	}
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	zw.Write(raw)
	zw.Close()
	return z.Bytes(), nil
}

// DecodeBundle reads a bundle as the satellite made it (for `sites
// diagnose --show`).
func DecodeBundle(data []byte) (Bundle, error) {
	var b Bundle
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return b, fmt.Errorf("the diagnostics bundle is not gzip: %w", err)
	}
	dec := json.NewDecoder(zr)
	if err := dec.Decode(&b); err != nil {
		return b, fmt.Errorf("the diagnostics bundle is unreadable: %w", err)
	}
	return b, nil
}

// prefsSecrets are the values of p that must never leave the box, and the
// keyring file's content when it names one.
func prefsSecrets(p *prefs.Prefs) []string {
	var out []string
	add := func(s string) {
		if len(s) >= 6 {
			out = append(out, s)
		}
	}
	for _, row := range p.SyncWith {
		add(row.PasswordSHA256)
		add(row.PasswordHash)
	}
	add(p.Unlock.Code)
	add(p.Admin.PasswordHash)
	if p.Paths.VendorKeys != "" {
		if data, err := os.ReadFile(p.Paths.VendorKeys); err == nil && len(data) < 1<<20 {
			for _, line := range bytes.Split(data, []byte("\n")) {
				for _, f := range bytes.Fields(line) {
					add(string(f)) // each key's base64 (short words are not secrets and too common to blank)
				}
			}
		}
	}
	return out
}

// prefsSettings describes the running prefs setting by setting, secrets as
// "(set)" or "(not set)".
func prefsSettings(p *prefs.Prefs) []PrefsSetting {
	secret := func(v string) string {
		if v == "" {
			return "(not set)"
		}
		return "(set)"
	}
	var out []PrefsSetting
	add := func(k, v string) { out = append(out, PrefsSetting{k, v}) }
	add("version", strconv.Itoa(p.Version))
	add("site.sync_id", strconv.Itoa(p.Site.SyncID))
	add("site.interval_minutes", strconv.Itoa(p.Site.IntervalMinutes))
	add("site.request_size", p.Site.RequestSize.String())
	add("site.stores", fmt.Sprint(p.Site.Stores))
	add("paths.state_dir", p.Paths.StateDir)
	add("paths.control_socket", p.Paths.ControlSocket)
	add("paths.vendor_keys", p.Paths.VendorKeys)
	add("limits.outbox_max_records", strconv.Itoa(p.Limits.OutboxMaxRecords))
	add("metrics.textfile_dir", p.Metrics.TextfileDir)
	for i, row := range p.SyncWith {
		k := func(s string) string { return fmt.Sprintf("sync_with[%d].%s", i, s) }
		add(k("sync_id"), strconv.Itoa(row.SyncID))
		add(k("user"), row.User)
		add(k("url"), row.URL)
		add(k("password_sha256"), secret(row.PasswordSHA256))
		add(k("password_hash"), secret(row.PasswordHash))
	}
	add("unlock.code", secret(p.Unlock.Code))
	add("locked_digest", p.LockedDigest())
	return out
}

// checkIntegrity reads every record of the datafile back and validates it,
// and compares the count the datafile keeps with what it read.
func checkIntegrity(l *queue.Local) Integrity {
	start := time.Now()
	in := Integrity{Counted: l.Count(), Recovered: l.Recovered()}
	problem := func(format string, args ...any) {
		if len(in.Problems) < 20 {
			in.Problems = append(in.Problems, fmt.Sprintf(format, args...))
		}
	}
	tables, err := l.Tables()
	if err != nil {
		problem("cannot list tables: %v", err)
	}
	for _, t := range tables {
		after := ""
		for {
			page, err := l.List(t, after, 1000)
			if err != nil {
				problem("cannot list %s after %q: %v", t, after, err)
				break
			}
			for _, r := range page {
				in.Read++
				if err := r.Validate(); err != nil {
					in.Invalid++
					problem("%s %s: %v", r.Table, r.ID, err)
				}
			}
			if len(page) < 1000 {
				break
			}
			after = page[len(page)-1].ID
		}
	}
	if in.Read != in.Counted {
		problem("read %d records, the datafile counts %d", in.Read, in.Counted)
	}
	in.OK = len(in.Problems) == 0
	in.Took = time.Since(start).Round(time.Millisecond).String()
	return in
}
