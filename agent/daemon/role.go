package daemon

import (
	"context"
	"net/http"
	"time"

	"syncagent/agent/control"
	"syncagent/agent/prefs"
)

// role is what a box does by its sync ID: a satellite (sync cycles against
// its primary), the primary (serves the sync API) or a box with sync
// disabled (apps' records only). Each is built completely, datafile opened,
// before anything serves, and owns its state and its goroutine: Run.
type role interface {
	component

	// kind is the role's name in status.
	kind() prefs.Role
	// bind acquires what the role serves on (the primary's listener) before
	// the start is committed; a failure means the start fails, having
	// provisioned nothing.
	bind() error
	// provisioned records in the role's datafile that the box is
	// provisioned (the lock's evidence), once the start is committed;
	// evidence reports whether it already says so ("" if not).
	provisioned() error
	evidence() string
	// Run owns the role's goroutine until ctx ends, then returns nil.
	Run(ctx context.Context) error
	// Close releases the datafile after Run returned, with a last flush
	// bounded by a fresh context.
	Close() error
	// sinceAlive is how long the role's goroutine has shown no progress:
	// the watchdog is fed only while it is short.
	sinceAlive() time.Duration
	// datafile is the path of the datafile the role has open.
	datafile() string

	status(st *control.Status)
	sync(ctx context.Context, retrieveOnly bool) (control.Cycle, error)
	check(ctx context.Context) (control.Check, error)
	generate(ctx context.Context, fresh bool) (int, error)
	sites() ([]control.Site, error)
	// clearPin clears a site's hardware pin on the primary; authorise (the
	// lock's check of a code) runs only once the operation is known to
	// apply, so no code is spent on a box that cannot do it.
	clearPin(id int, authorise func() error) error
	history() ([]control.Cycle, error)
	records
}

// records is the apps' access to the datafile.
type records interface {
	put(r control.Record) (control.Record, error)
	putMany(rs []control.Record) (control.BatchResult, error)
	get(table, id string) (control.Record, error)
	del(table, id string) error
	list(table, after string, limit int) ([]control.Record, error)
	aside() ([]control.Aside, error)
	retryAside(table, id string) error
	// checkDatafile returns an error once the datafile is gone from under
	// the agent (datafileGuard).
	checkDatafile() error
}

// component takes part in prefs changes, verify-then-commit (as syncthing's
// config wrapper does): every component may veto a change; the change is
// committed to all of them or to none; a setting no component applies while
// running needs a restart.
type component interface {
	// live reports whether the component applies a changed setting (a
	// prefs.Change.Setting) without a restart. A setting the component does
	// not use is live for it when its behaviour (and status) follows the
	// new value at once.
	live(setting string) bool
	// verify vetoes next with the reason it cannot run with it.
	verify(next *prefs.Prefs) error
	// commit applies next, which every component verified. Commits to state
	// a goroutine owns happen on that goroutine; commit returns what is
	// still pending then ("applies when the sync cycle in progress ends"),
	// or "".
	commit(next *prefs.Prefs) string
}

// settingSet is a component's list of live settings.
type settingSet map[string]bool

func liveSettings(names ...string) settingSet {
	s := settingSet{}
	for _, n := range names {
		s[n] = true
	}
	return s
}

// conflict is the local API's answer for an operation this role cannot do.
func conflict(format string, args ...any) error {
	return control.Errorf(http.StatusConflict, format, args...)
}

// noCycles is the role part of boxes without sync cycles (the primary and a
// box with sync disabled).
type noCycles struct{ why string }

func (n noCycles) sync(context.Context, bool) (control.Cycle, error) {
	return control.Cycle{}, conflict("%s", n.why)
}
func (n noCycles) check(context.Context) (control.Check, error) {
	return control.Check{}, conflict("%s", n.why)
}
func (n noCycles) history() ([]control.Cycle, error) { return []control.Cycle{}, nil }

// noPins is the role part of boxes that are not the primary.
type noPins struct{ kind prefs.Role }

func (n noPins) clearPin(int, func() error) error {
	return conflict("clear-hwid runs on the primary; this box is a %s", n.kind)
}
