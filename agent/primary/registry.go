package primary

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"syncagent/agent/passwd"
	"syncagent/queue"
)

// The site registry (queue/registry.go) is the primary's site rows kept in
// its storage: the site table is the prefs rows (a small deployment) and
// the registry's. Every node rereads the registry when its generation moves
// (RegistryRefresh), so several nodes on one database agree within about a
// second. A change is validated whole against the table as it is, bound to
// the digest of exactly what it writes (one unlock code for a change of any
// size, see docs/registry.md), and written with its log entry only if the
// registry has not moved since it was validated.

// RegistryRefresh is how often WatchRegistry looks at the registry's
// generation (one row of one small table, on PostgreSQL).
const RegistryRefresh = 500 * time.Millisecond

// registrySnapshot is the registry as read at one generation.
type registrySnapshot struct {
	rows []queue.SiteConfig
	gen  uint64
	read bool // rows were read (a registry at generation 0 is empty)
}

func (s *Server) readRegistry() (registrySnapshot, error) {
	rows, gen, err := s.store.Registry()
	if err != nil {
		return registrySnapshot{}, fmt.Errorf("cannot read the site registry: %w", err)
	}
	return registrySnapshot{rows: rows, gen: gen, read: true}, nil
}

// currentRegistryLocked is the registry as it is in the storage: the
// snapshot applied last when its generation is still the storage's (one
// small read instead of every row).
func (s *Server) currentRegistryLocked() (registrySnapshot, error) {
	gen, err := s.store.RegistryGeneration()
	if err != nil {
		return registrySnapshot{}, fmt.Errorf("cannot read the site registry's generation: %w", err)
	}
	if s.registry.read && s.registry.gen == gen {
		return s.registry, nil
	}
	return s.readRegistry()
}

// planned is the registry after plan p, written at generation gen, made
// from the snapshot p was validated against (at gen-1: nothing between).
func planned(base registrySnapshot, p SitesPlan, gen uint64) (registrySnapshot, error) {
	rows := make(map[int]queue.SiteConfig, len(base.rows))
	for _, r := range base.rows {
		rows[r.SyncID] = r
	}
	next, err := queue.ApplyRegistryEdit(rows, p.Edit)
	if err != nil {
		return registrySnapshot{}, err
	}
	out := registrySnapshot{rows: make([]queue.SiteConfig, 0, len(next)), gen: gen, read: true}
	for _, r := range next {
		out.rows = append(out.rows, r)
	}
	slices.SortFunc(out.rows, func(a, b queue.SiteConfig) int { return a.SyncID - b.SyncID })
	return out, nil
}

// RefreshRegistry applies the registry when its generation moved since
// this node last applied it, and reports whether it did. A registry that
// cannot be applied (a site that clashes with this node's prefs rows)
// leaves the table as it was.
func (s *Server) RefreshRegistry() (bool, error) {
	gen, err := s.store.RegistryGeneration()
	if err != nil {
		return false, fmt.Errorf("cannot read the site registry's generation: %w", err)
	}
	s.confMu.Lock()
	defer s.confMu.Unlock()
	if s.registry.read && s.registry.gen == gen {
		return false, nil
	}
	reg, err := s.readRegistry()
	if err != nil {
		return false, err
	}
	if err := s.applyLocked(*s.cfg.Load(), reg, s.router.Load()); err != nil {
		return false, err
	}
	return true, nil
}

// WatchRegistry applies the registry's changes (made by this node, another
// node or an operator) until ctx ends, looking every `every`.
func (s *Server) WatchRegistry(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		changed, err := s.RefreshRegistry()
		switch {
		case err != nil:
			s.rate.logf(slog.LevelError, "registry", "cannot apply the site registry; the site table stays as it was", "err", err)
		case changed:
			s.log.Info("site registry applied", "generation", s.RegistryGeneration(), "sites", len(s.sites.Load().ids))
		}
	}
}

// RegistryGeneration is the generation of the registry the site table
// reflects.
func (s *Server) RegistryGeneration() uint64 {
	s.confMu.Lock()
	defer s.confMu.Unlock()
	return s.registry.gen
}

// SitesEdit is a change of the registry as an operator asked for it.
type SitesEdit struct {
	Op string // "add", "edit", "remove" or "import"
	// Rows: add and import, whole rows (import replaces a row already in
	// the registry); edit, one row whose empty fields (nil stores) keep
	// their value.
	Rows []queue.SiteConfig
	// Lines says where Rows[i] was read (its line in an imported file);
	// 0, or no entry, when it was not read from a file.
	Lines []int
	// Clear (edit only) names fields to empty: "hardware_id", "url".
	Clear []string
	// Remove (remove only) are the sync IDs to remove.
	Remove []int
}

// SitesPlan is a validated change, ready to authorise and apply.
type SitesPlan struct {
	Edit queue.RegistryEdit
	Base uint64 // the registry's generation it was validated against
	// Digest is the SHA-256 of exactly the rows the change writes and
	// removes (canonical, see digestEdit): what an unlock code is bound to.
	Digest string
	What   string // the change in words, for the log

	registry registrySnapshot // what it was validated against
}

// maxRowErrors bounds the errors one refused change reports.
const maxRowErrors = 20

// rowErrors collects the refusals of a change, each naming its line.
type rowErrors struct {
	list []string
	more int
}

func (e *rowErrors) add(at, format string, args ...any) {
	if len(e.list) == maxRowErrors {
		e.more++
		return
	}
	e.list = append(e.list, at+": "+fmt.Sprintf(format, args...))
}

func (e *rowErrors) err() error {
	if len(e.list) == 0 {
		return nil
	}
	msg := strings.Join(e.list, "\n")
	if e.more > 0 {
		msg += fmt.Sprintf("\n… and %d more", e.more)
	}
	return fmt.Errorf("nothing was changed:\n%s", msg)
}

// PlanSites validates e whole against the site table and the registry as
// they are now, and returns what it would write. Nothing is written.
func (s *Server) PlanSites(e SitesEdit) (SitesPlan, error) {
	s.confMu.Lock()
	defer s.confMu.Unlock()
	return s.planLocked(e)
}

func (s *Server) planLocked(e SitesEdit) (SitesPlan, error) {
	reg, err := s.currentRegistryLocked()
	if err != nil {
		return SitesPlan{}, err
	}
	inRegistry := make(map[int]queue.SiteConfig, len(reg.rows))
	for _, r := range reg.rows {
		inRegistry[r.SyncID] = r
	}
	inPrefs := map[int]bool{}
	for _, r := range s.cfg.Load().Sites {
		inPrefs[r.SyncID] = true
	}
	var errs rowErrors
	at := func(i int) string {
		if i < len(e.Lines) && e.Lines[i] > 0 {
			return fmt.Sprintf("line %d", e.Lines[i])
		}
		return fmt.Sprintf("site %d", e.Rows[i].SyncID)
	}
	prefsRow := "site %d is a [[sync_with]] row of the prefs: change it there, or remove that row first to manage the site in the registry"
	var edit queue.RegistryEdit
	added, replaced := 0, 0
	var edited []string // edit: the fields it changes
	switch e.Op {
	case "add", "import":
		if len(e.Rows) == 0 {
			return SitesPlan{}, fmt.Errorf("%s: no rows", e.Op)
		}
		if len(e.Rows) > queue.MaxRegistryEdit {
			return SitesPlan{}, fmt.Errorf("%s: %d rows; at most %d in one change: split the file", e.Op, len(e.Rows), queue.MaxRegistryEdit)
		}
		seen := make(map[int]int, len(e.Rows))
		for i, r := range e.Rows {
			if err := checkRow(r); err != nil {
				errs.add(at(i), "%v", err)
				continue
			}
			if j, dup := seen[r.SyncID]; dup {
				errs.add(at(i), "sync_id %d is already on %s; sync IDs must be unique", r.SyncID, at(j))
				continue
			}
			seen[r.SyncID] = i
			_, there := inRegistry[r.SyncID]
			switch {
			case inPrefs[r.SyncID]:
				errs.add(at(i), prefsRow, r.SyncID)
			case there && e.Op == "add":
				errs.add(at(i), "site %d is already in the registry: change it with `syncagent sites edit %d`", r.SyncID, r.SyncID)
			case there:
				replaced++
			default:
				added++
			}
		}
		edit.Put = e.Rows
	case "edit":
		if len(e.Rows) != 1 {
			return SitesPlan{}, fmt.Errorf("edit: one site at a time")
		}
		r := e.Rows[0]
		old, there := inRegistry[r.SyncID]
		switch {
		case inPrefs[r.SyncID]:
			return SitesPlan{}, fmt.Errorf(prefsRow, r.SyncID)
		case !there:
			return SitesPlan{}, fmt.Errorf("no site %d in the registry: add it with `syncagent sites add`", r.SyncID)
		}
		next := editRow(old, r, e.Clear)
		if err := checkRow(next); err != nil {
			return SitesPlan{}, fmt.Errorf("site %d: %w", r.SyncID, err)
		}
		edited = changedFields(old, next)
		if len(edited) == 0 {
			return SitesPlan{}, fmt.Errorf("site %d: the edit changes nothing", r.SyncID)
		}
		edit.Put = []queue.SiteConfig{next}
		e.Rows = edit.Put
	case "remove":
		if len(e.Remove) == 0 {
			return SitesPlan{}, fmt.Errorf("remove: no sync IDs")
		}
		seen := map[int]bool{}
		for _, id := range e.Remove {
			at := fmt.Sprintf("site %d", id)
			switch _, there := inRegistry[id]; {
			case seen[id]:
				errs.add(at, "named twice")
			case inPrefs[id]:
				errs.add(at, prefsRow, id)
			case !there:
				errs.add(at, "no site %d in the registry", id)
			}
			seen[id] = true
		}
		edit.Remove = e.Remove
	default:
		return SitesPlan{}, fmt.Errorf("unknown site change %q (want add, edit, remove or import)", e.Op)
	}
	// User names are unique across the prefs rows and the registry as it
	// will be.
	owner := map[string]string{}
	for _, r := range s.cfg.Load().Sites {
		owner[r.User] = fmt.Sprintf("site %d (a [[sync_with]] row of the prefs)", r.SyncID)
	}
	touched := map[int]bool{}
	for _, r := range edit.Put {
		touched[r.SyncID] = true
	}
	for _, id := range edit.Remove {
		touched[id] = true
	}
	for _, r := range reg.rows {
		if !touched[r.SyncID] {
			owner[r.User] = fmt.Sprintf("site %d of the registry", r.SyncID)
		}
	}
	for i, r := range edit.Put {
		if r.User == "" {
			continue // already refused
		}
		if o, dup := owner[r.User]; dup {
			errs.add(at(i), "user %q is already used by %s; user names must be unique", r.User, o)
			continue
		}
		owner[r.User] = at(i)
	}
	if err := errs.err(); err != nil {
		return SitesPlan{}, err
	}
	next, err := queue.ApplyRegistryEdit(inRegistry, edit)
	if err != nil {
		return SitesPlan{}, err
	}
	rows := make([]queue.SiteConfig, 0, len(next))
	for _, r := range next {
		rows = append(rows, r)
	}
	if _, err := newSiteTable(s.cfg.Load().Sites, rows...); err != nil {
		return SitesPlan{}, err
	}
	edit = canonicalEdit(edit)
	return SitesPlan{Edit: edit, Base: reg.gen, Digest: digestEdit(edit), What: describe(e.Op, edit, added, replaced, edited), registry: reg}, nil
}

// checkRow is the registry's shape rules and the prefs' rules for what the
// shape cannot say: a hash made by `syncagent passwd`, an http(s) URL.
func checkRow(r queue.SiteConfig) error {
	if err := queue.CheckSiteConfig(r); err != nil {
		return err
	}
	if passwd.IsSHA256Hex(r.PasswordHash) {
		return fmt.Errorf("password_hash must be made by `syncagent passwd`, not a plain SHA-256")
	}
	if err := passwd.Check(r.PasswordHash); err != nil {
		return fmt.Errorf("password_hash: expected a hash made by `syncagent passwd`: %v", err)
	}
	for _, st := range r.Stores {
		if strings.TrimSpace(st) != st {
			return fmt.Errorf("store %q has leading or trailing spaces", st)
		}
	}
	if r.URL != "" {
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("url: expected an http:// or https:// base URL with a host, got %q", r.URL)
		}
	}
	return nil
}

// editRow is old with the fields r sets, and those clear names emptied.
func editRow(old, r queue.SiteConfig, clear []string) queue.SiteConfig {
	next := old
	next.Stores = slices.Clone(old.Stores)
	if r.User != "" {
		next.User = r.User
	}
	if r.PasswordHash != "" {
		next.PasswordHash = r.PasswordHash
	}
	if r.Stores != nil {
		next.Stores = slices.Clone(r.Stores)
	}
	if r.HardwareID != "" {
		next.HardwareID = r.HardwareID
	}
	if r.URL != "" {
		next.URL = r.URL
	}
	for _, f := range clear {
		switch f {
		case "hardware_id":
			next.HardwareID = ""
		case "url":
			next.URL = ""
		}
	}
	return next
}

// changedFields names the fields that differ between a and b.
func changedFields(a, b queue.SiteConfig) []string {
	var out []string
	for _, f := range []struct {
		name string
		same bool
	}{
		{"user", a.User == b.User}, {"password_hash", a.PasswordHash == b.PasswordHash}, {"stores", slices.Equal(a.Stores, b.Stores)},
		{"hardware_id", a.HardwareID == b.HardwareID}, {"url", a.URL == b.URL},
	} {
		if !f.same {
			out = append(out, f.name)
		}
	}
	return out
}

// canonicalEdit orders e's rows and removals by sync ID, so one change has
// one digest however its file was ordered.
func canonicalEdit(e queue.RegistryEdit) queue.RegistryEdit {
	put := slices.Clone(e.Put)
	slices.SortFunc(put, func(a, b queue.SiteConfig) int { return a.SyncID - b.SyncID })
	remove := slices.Clone(e.Remove)
	slices.Sort(remove)
	return queue.RegistryEdit{Put: put, Remove: remove}
}

// digestEdit is the SHA-256 of a canonical edit: a domain, then each row
// put and each sync ID removed, fields length-prefixed (so no two edits
// share an encoding).
func digestEdit(e queue.RegistryEdit) string {
	h := sha256.New()
	field := func(s string) { fmt.Fprintf(h, "%d:%s", len(s), s) }
	h.Write([]byte("syncagent site registry change v1\x00"))
	for _, r := range e.Put {
		fmt.Fprintf(h, "put %d ", r.SyncID)
		field(r.User)
		field(r.PasswordHash)
		fmt.Fprintf(h, "%d", len(r.Stores))
		for _, st := range r.Stores {
			field(st)
		}
		field(r.HardwareID)
		field(r.URL)
		h.Write([]byte{'\n'})
	}
	for _, id := range e.Remove {
		fmt.Fprintf(h, "remove %d\n", id)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// describe says what a change does, for the log.
func describe(op string, e queue.RegistryEdit, added, replaced int, edited []string) string {
	switch op {
	case "add":
		if len(e.Put) == 1 {
			r := e.Put[0]
			return fmt.Sprintf("add site %d (user %s, stores %s)", r.SyncID, r.User, short(strings.Join(r.Stores, ", ")))
		}
		return fmt.Sprintf("add %d sites", len(e.Put))
	case "edit":
		return fmt.Sprintf("edit site %d: %s", e.Put[0].SyncID, strings.Join(edited, ", "))
	case "remove":
		return "remove " + idList(e.Remove)
	}
	return fmt.Sprintf("import %d rows (%d added, %d replaced)", len(e.Put), added, replaced)
}

func idList(ids []int) string {
	parts := make([]string, 0, min(len(ids), 20))
	for _, id := range ids[:min(len(ids), 20)] {
		parts = append(parts, fmt.Sprint(id))
	}
	out := "site " + strings.Join(parts, ", ")
	if len(ids) > 1 {
		out = "sites " + strings.Join(parts, ", ")
	}
	if len(ids) > 20 {
		out += fmt.Sprintf(" and %d more", len(ids)-20)
	}
	return out
}

func short(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// ChangeSites validates e (PlanSites), asks authorise whether the plan may
// be applied (it checks and spends an unlock code bound to the plan's
// digest, and says who authorised it), writes it with its log entry and
// applies it to the site table. Nothing is written when validation or
// authorisation refuses; a registry another node changed since the
// validation refuses with queue.ErrRegistryChanged (run it again).
func (s *Server) ChangeSites(e SitesEdit, authorise func(SitesPlan) (by string, err error)) (queue.RegistryChange, error) {
	s.confMu.Lock()
	defer s.confMu.Unlock()
	p, err := s.planLocked(e)
	if err != nil {
		return queue.RegistryChange{}, err
	}
	by, err := authorise(p)
	if err != nil {
		return queue.RegistryChange{}, err
	}
	note := queue.RegistryChange{At: s.now().UTC(), By: short(by), What: p.What, Digest: p.Digest, Put: len(p.Edit.Put), Removed: len(p.Edit.Remove)}
	if note.Generation, err = s.store.ChangeRegistry(p.Base, p.Edit, note); err != nil {
		return queue.RegistryChange{}, fmt.Errorf("cannot change the site registry: %w", err)
	}
	s.log.Info("site registry changed", "generation", note.Generation, "what", note.What, "by", note.By)
	reg, err := planned(p.registry, p, note.Generation)
	if err == nil {
		err = s.applyLocked(*s.cfg.Load(), reg, s.router.Load())
	}
	if err != nil {
		return note, fmt.Errorf("the change was saved (generation %d) but cannot be applied yet: %w", note.Generation, err)
	}
	return note, nil
}

// HasSite reports whether id is in the site table (prefs or registry).
func (s *Server) HasSite(id int) bool { return s.sites.Load().byID[id] != nil }

// SitesLog returns the registry's last limit changes, newest first.
func (s *Server) SitesLog(limit int) ([]queue.RegistryChange, error) {
	return s.store.RegistryLog(limit)
}
