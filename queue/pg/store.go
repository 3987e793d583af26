// Package pg is the primary's storage contract (queue.PrimaryStore) on
// PostgreSQL, for several stateless primary nodes serving one database. It
// is the only importer of github.com/jackc/pgx. The replication model is
// queue's: queue.Decide turns a push into a Plan through a Reader; here the
// Reader reads rows this transaction has locked, and the plan is applied in
// the same transaction, so a push is one transaction (no intent log).
//
// Deciding under locks: the rows a decision reads are locked FOR UPDATE
// (a record nobody has yet is first inserted as a placeholder row, so "does
// not exist" is locked too). The decision is run, and if it read a row not
// yet locked (a parent the router looked up, a child of a moved record),
// those rows are locked and it runs again, until it reads only locked rows.
// Versions come from a sequence and are drawn only after every lock is held,
// so a change decided later always gets a later version.
//
// Central data is read by cursor from central_log. A transaction writing it
// takes a session advisory lock before it gets its transaction id and until
// it has drawn its cursors, so cursor order is transaction-id order; a
// reader returns only rows written by transactions older than the oldest one
// still running (pg_snapshot_xmin), and reports the highest such cursor: a
// row committed late by another node is never skipped.
//
// Everything a node would otherwise keep in memory lives in the database
// (queues and their lengths, fills in progress, pins, cursors, duplicate
// marks), except each node's last-contact times, written at most once a
// minute per site (so another node may show a contact up to a minute old).
//
// See docs/postgres.md for the schema, the settings and how to run the
// tests.
package pg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"syncagent/queue"
)

// Options configures a Store. Zero values mean the defaults.
type Options struct {
	// MaxConns bounds the connections this node opens (default 8).
	MaxConns int
	// CallTimeout bounds every call of the contract (default 15s, under
	// the satellite's 25s request deadline). Fill and Reconcile work in
	// batches, each bounded by it.
	CallTimeout time.Duration
	// StatementTimeout and LockTimeout are the server's statement_timeout
	// and lock_timeout for this node's sessions (defaults 10s and 5s).
	StatementTimeout time.Duration
	LockTimeout      time.Duration
	// LogPartition is the number of cursors in one central_log partition
	// (default 5,000,000). It applies to partitions made from now on.
	LogPartition int64
	// QueueMax refuses a push or write that would grow a site's queue past
	// this many records (0: unlimited), as queue.CentralOptions.QueueMax.
	QueueMax int
	// FillLease is how long a Fill or a started initialisation counts as
	// running without a sign of life (default 2m): a node that died
	// mid-fill leaves nothing that blocks the site longer.
	FillLease time.Duration
	// ApplicationName names this node's sessions (pg_stat_activity).
	ApplicationName string
	// Password, when set, is the database password (the daemon reads it
	// from a file so that it never sits in the DSN of the prefs); else the
	// DSN's, PGPASSWORD's or the passfile's.
	Password string
	// Logger receives migrations, retries and maintenance; nil discards.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.MaxConns <= 0 {
		o.MaxConns = 8
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 15 * time.Second
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = 10 * time.Second
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 5 * time.Second
	}
	if o.LogPartition <= 0 {
		o.LogPartition = 5_000_000
	}
	if o.FillLease <= 0 {
		o.FillLease = 2 * time.Minute
	}
	if o.ApplicationName == "" {
		o.ApplicationName = "syncagent"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Store is the primary's state in one PostgreSQL database. It is safe for
// concurrent use, and several Stores (nodes) may serve the same database.
type Store struct {
	pool   *pgxpool.Pool
	opts   Options
	log    *slog.Logger
	closed atomic.Bool

	logCovered atomic.Int64 // central_log has partitions for every cursor below this (as this node last saw)
	partMu     sync.Mutex   // one partition maker per node

	warnMu   sync.Mutex
	warnedAt map[string]time.Time // per kind of warning: when it was last logged

	contactMu sync.Mutex
	contacts  map[int]contact // per site: this node's view of its last contact
	fills     chan struct{}   // bounds Fills running at once on this node

	testHookApply func(applied) // tests: runs after a plan's cursors are drawn, before it is written
	testHookFill  func(int)     // tests: runs after each batch of a Fill, with the entries added so far
}

// contact is a site's last contact as this node knows it.
type contact struct {
	seen  time.Time // latest Touch
	saved time.Time // latest written to the database by this node

	health      []byte    // latest health block (NoteHealth), written with the contact
	healthAt    time.Time // when it came
	healthSaved time.Time // healthAt as last written by this node
}

var _ queue.PrimaryStore = (*Store)(nil)

// Open connects to dsn (a libpq URL or key=value string; the password comes
// with it), applies the migrations the database lacks, and makes the
// central log's next partitions.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("cannot open primary database: %w", err)
	}
	if opts.Password != "" {
		cfg.ConnConfig.Password = opts.Password // fallback hosts share it
	}
	cfg.MaxConns = int32(opts.MaxConns)
	cfg.MinConns = 0
	cfg.MaxConnIdleTime = 5 * time.Minute
	cfg.HealthCheckPeriod = 30 * time.Second
	rp := cfg.ConnConfig.RuntimeParams
	rp["application_name"] = opts.ApplicationName
	rp["statement_timeout"] = fmt.Sprint(opts.StatementTimeout.Milliseconds())
	rp["lock_timeout"] = fmt.Sprint(opts.LockTimeout.Milliseconds())
	rp["idle_in_transaction_session_timeout"] = fmt.Sprint((2 * opts.CallTimeout).Milliseconds())
	// Every statement here finds rows by key (an array of keys joined with
	// unnest, a site, a cursor range). While a table is young and churning,
	// its statistics lag far behind it and the planner picks hash joins over
	// sequential scans of every row, dead ones included: at 1,000 sites the
	// push's lock statement took 8 ms instead of 0.1 ms, the central page
	// 11 ms instead of 1 (make bench-primary -pg-stats, docs/scale.md).
	// Index paths are always right for these statements, at any size.
	rp["enable_seqscan"] = "off"
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	log := opts.Logger.With("component", "queue", "role", "primary", "backend", "postgres")
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		return nil, fmt.Errorf("cannot open primary database: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot open primary database: %w", err)
	}
	s := &Store{pool: pool, opts: opts, log: log, contacts: map[int]contact{}, warnedAt: map[string]time.Time{},
		fills: make(chan struct{}, max(1, opts.MaxConns/2))}
	n, err := migrate(ctx, pool, ms)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot open primary database: %w", err)
	}
	if n > 0 {
		log.Info("applied schema migrations", "count", n, "version", len(ms))
	}
	if err := s.ensurePartitions(ctx, 0); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot open primary database: %w", err)
	}
	return s, nil
}

// Close closes the connections. Every later call fails with queue.ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.pool.Close()
	return nil
}

// warn logs a failure of a call that cannot return an error (QueueLen,
// Filling, Sites), at most once every ten seconds per kind: a database that
// is down would otherwise log on every request.
func (s *Store) warn(kind string, args ...any) {
	s.warnMu.Lock()
	due := time.Since(s.warnedAt[kind]) >= 10*time.Second
	if due {
		s.warnedAt[kind] = time.Now()
	}
	s.warnMu.Unlock()
	if due {
		s.log.Warn(kind, args...)
	}
}

// call returns the context of one call of the contract, or ErrClosed.
func (s *Store) call() (context.Context, context.CancelFunc, error) {
	if s.closed.Load() {
		return nil, nil, queue.ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CallTimeout)
	return ctx, cancel, nil
}

// dbError wraps err with what failed; after Close it is ErrClosed.
func (s *Store) dbError(what string, err error) error {
	if err == nil {
		return nil
	}
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", what, queue.ErrClosed)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// retryable reports whether err rolled its transaction back for a reason
// that a new attempt may not meet (a deadlock, a serialization failure, a
// record created meanwhile by another transaction).
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40P01", "40001":
			return true
		case "23505": // another transaction created a record this one found absent
			return pe.TableName == "records"
		}
	}
	return false
}

type pgxconn = pgxpool.Conn

// withConn runs fn on a pooled connection, again on another one when the
// connection turns out to be lost (a pooled connection whose server
// session was ended finds out only when used). fn must be safe to run
// twice: a read, or a write that changes nothing the second time.
func (s *Store) withConn(ctx context.Context, fn func(c *pgxconn) error) error {
	for attempt := 0; ; attempt++ {
		err := s.onConn(ctx, fn)
		if err == nil || !connLost(err) || ctx.Err() != nil || attempt >= 2 {
			return err
		}
		s.log.Debug("connection lost; retried on another", "err", err)
	}
}

func (s *Store) onConn(ctx context.Context, fn func(c *pgxconn) error) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	return fn(c)
}

// connLost reports an error that ended the connection (the server session
// was terminated or the network failed), not the statement.
func connLost(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ne net.Error
	return pgconn.SafeToRetry(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne)
}

// txn runs fn in one transaction (read committed), retrying a deadlock, a
// serialization failure or a lost connection a few times. fn must only
// read and write through tx, and be safe to run again after a commit whose
// answer was lost (every caller's is: the same change again changes
// nothing).
func (s *Store) txn(ctx context.Context, what string, fn func(tx pgx.Tx) error) error {
	var err error
	for attempt := 0; ; attempt++ {
		err = pgx.BeginFunc(ctx, s.pool, fn)
		if err == nil || !(retryable(err) || connLost(err) && ctx.Err() == nil) || attempt >= maxRetries {
			return s.dbError(what, err)
		}
		s.log.Debug("transaction retried", "what", what, "attempt", attempt+1, "err", err)
		backoff(ctx, attempt)
	}
}

const maxRetries = 5

// noPartition reports a central log row beyond the partitions made.
func noPartition(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23514" && pe.TableName == "central_log"
}

// backoff sleeps a little longer after each failed attempt.
func backoff(ctx context.Context, attempt int) {
	d := time.Duration(1+attempt*attempt) * 5 * time.Millisecond
	t := time.NewTimer(d + time.Duration(time.Now().UnixNano()%int64(d)))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
