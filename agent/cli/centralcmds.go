package cli

import (
	"flag"
	"fmt"
	"log/slog"

	"syncagent/agent/daemon"
)

func init() {
	var to, from, passwordFile string
	register(&command{name: "central migrate", args: "[--to postgres://USER@HOST/DB] [--from FILE] [--password-file FILE]",
		summary: "copy a stopped BuntDB primary's state into an empty PostgreSQL database", nargs: [2]int{0, 0},
		help: `Run on the primary, with the agent stopped (systemctl stop syncagent). Copies
everything the primary keeps in state_dir/central.db — records with their
versions, the central log at the same cursors, every site's queue at the same
syncOutIds, the duplicate marks, every site's state with its pin and password
token, and the site registry with its change log — into the database, which must be empty (it applies the
schema first), then counts what arrived and reads it back. The sites go on
syncing from where they were: none initialises again. The datafile is only
read. --to defaults to the prefs' [central] database, the password to
--password-file, the prefs' database_password_file, PGPASSWORD or ~/.pgpass.
See docs/postgres.md ("Moving a primary to PostgreSQL").`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&to, "to", "", "the PostgreSQL `URL` to copy into (no password in it)")
			fs.StringVar(&from, "from", "", "the central datafile `FILE` (default: state_dir/central.db)")
			fs.StringVar(&passwordFile, "password-file", "", "read the database password from `FILE`")
		},
		run: func(e *env, _ []string) error {
			log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			m, err := daemon.MigrateCentral(e.ctx, daemon.MigrateOptions{PrefsPath: e.prefs, From: from, To: to, PasswordFile: passwordFile, Log: log})
			if err != nil {
				return err
			}
			s := m.Summary
			queued, sites := 0, 0
			for _, n := range s.Queued {
				queued += n
				sites++
			}
			w := e.stdout
			fmt.Fprintf(w, "copied %s into %s, and read it back:\n", m.From, m.To)
			fmt.Fprintf(w, "  records       %d (versions up to %d), %d child index entries\n", s.Records, s.Version, s.Kids)
			fmt.Fprintf(w, "  central log   %d entries (cursors up to %d)\n", s.CentralLog, s.MaxCursor)
			fmt.Fprintf(w, "  queues        %d entries for %d sites\n", queued, sites)
			fmt.Fprintf(w, "  sites         %d (%d pinned, %d with a password token), %d with diagnostics\n", len(s.Sites), m.Pinned, m.Tokens, len(s.Diagnostics))
			fmt.Fprintf(w, "  registry      %d sites (generation %d, %d changes logged)\n", len(s.Registry), s.RegistryGen, len(s.RegistryLog))
			fmt.Fprintf(w, `next:
  1. in %s set [central] database = %q (its password in
     database_password_file), and auth_key_file = %q
     (copy that file to every node: it signed the sites' password tokens).
     It is a locked change: add the unlock code for its digest
     (syncagent prefs check prints it).
  2. move %s aside (a primary started on it again would fork the history),
     then systemctl start syncagent; syncagent status shows the database.
  3. more nodes: the same prefs and auth key on each, behind the load
     balancer (docs/postgres.md).
`, e.prefs, m.To, m.AuthKey, m.From)
			return nil
		}})
}
