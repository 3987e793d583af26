package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"

	"syncagent/agent/prefs"
	"syncagent/queue"
	"syncagent/queue/pg"
)

// Migration is what `syncagent central migrate` copies from a stopped
// BuntDB primary into PostgreSQL: where from and to, and what was copied
// (counted inside the import, and again through the new store).
type Migration struct {
	From, To string
	Summary  queue.ExportSummary
	Pinned   int // sites with a pinned hardware ID
	Tokens   int // sites with a verified password's token
	AuthKey  string
}

// MigrateOptions say what to migrate: the primary of the prefs file (its
// state_dir/central.db, unless From is given) into the database To
// (default: the prefs' [central] database), with the password from
// PasswordFile (default: the prefs' database_password_file; else libpq's
// PGPASSWORD or ~/.pgpass).
type MigrateOptions struct {
	PrefsPath    string
	From         string
	To           string
	PasswordFile string
	Log          *slog.Logger
}

// MigrateCentral copies a stopped BuntDB primary's whole state into an
// empty PostgreSQL database, applying the schema first, and checks what
// arrived. The datafile is only read; the primary must not run (its lock
// says so).
func MigrateCentral(ctx context.Context, o MigrateOptions) (*Migration, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	p, err := prefs.Load(o.PrefsPath)
	if err != nil {
		return nil, fmt.Errorf("cannot read the primary's prefs: %w", err)
	}
	if p.Role() != prefs.RolePrimary {
		return nil, fmt.Errorf("%s is not a primary's prefs (sync_id is %d, the primary's is 1): run this on the primary", o.PrefsPath, p.Site.SyncID)
	}
	m := &Migration{From: o.From, To: o.To, AuthKey: p.Central.AuthKeyFile}
	if m.From == "" {
		m.From = filepath.Join(p.Paths.StateDir, "central.db")
	}
	if m.AuthKey == "" {
		m.AuthKey = filepath.Join(p.Paths.StateDir, "auth.key")
	}
	if m.To == "" {
		m.To = p.Central.Database
	}
	if m.To == "" {
		return nil, errors.New("no database to migrate to: give --to postgres://user@host/db, or set [central] database in the prefs")
	}
	if u, err := url.Parse(m.To); err == nil {
		if _, set := u.User.Password(); set {
			return nil, errors.New("--to carries a password, which any user on this box can read from the process list: give it with --password-file, PGPASSWORD or ~/.pgpass")
		}
	}
	if _, err := os.Stat(m.From); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no central datafile at %s: give the one to migrate with --from", m.From)
	}
	c, err := queue.OpenCentral(m.From, queue.CentralOptions{Logger: o.Log})
	if err != nil {
		return nil, fmt.Errorf("%w; stop the primary first (systemctl stop syncagent): it must not serve while it is copied", err)
	}
	defer c.Close()
	pwFile := o.PasswordFile
	if pwFile == "" && m.To == p.Central.Database {
		pwFile = p.Central.DatabasePasswordFile
	}
	opts := pg.Options{Logger: o.Log, ApplicationName: "syncagent-migrate"}
	if pwFile != "" {
		if opts.Password, err = readSecret(pwFile); err != nil {
			return nil, fmt.Errorf("cannot read the database password: %w", err)
		}
	}
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	st, err := pg.Open(octx, m.To, opts)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("cannot open the database %s: %w; check that PostgreSQL runs and is reachable, and the user and password", m.To, err)
	}
	defer st.Close()
	if m.Summary, err = st.Import(ctx, c.Export); err != nil {
		return nil, err
	}
	if err := checkMigrated(c, st, m.Summary); err != nil {
		return nil, err
	}
	for _, s := range m.Summary.Sites {
		if s.HardwareID != "" {
			m.Pinned++
		}
		if s.Verified != "" {
			m.Tokens++
		}
	}
	return m, nil
}

// checkMigrated reads the new store through the contract: every site's
// queue length, and the central log to its end, against the datafile.
func checkMigrated(c *queue.Central, st *pg.Store, sum queue.ExportSummary) error {
	for _, s := range sum.Sites {
		if got, want := st.QueueLen(s.SyncID), c.QueueLen(s.SyncID); got != want {
			return fmt.Errorf("site %d's queue holds %d entries in the database, %d in the datafile; the database is incomplete: drop it and migrate again", s.SyncID, got, want)
		}
	}
	n, cursor := 0, uint64(0)
	for {
		es, top, err := st.CentralSince(cursor, 1000)
		if err != nil {
			return fmt.Errorf("cannot read back the central log: %w", err)
		}
		n += len(es)
		if len(es) == 0 {
			if top != cursor || top > sum.MaxCursor {
				return fmt.Errorf("the database's central log ends at cursor %d, its last entry is %d and the datafile's %d: drop the database and migrate again", top, cursor, sum.MaxCursor)
			}
			break
		}
		cursor = es[len(es)-1].Cursor
	}
	if n != sum.CentralLog {
		return fmt.Errorf("read back %d central log entries, the datafile has %d: drop the database and migrate again", n, sum.CentralLog)
	}
	return nil
}
