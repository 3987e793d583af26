-- The primary's state (queue.PrimaryStore) in PostgreSQL. Every name is
-- byte-ordered (COLLATE "C"), as the embedded backend orders its keys.

-- The primary's one order of changes: every record version and queue entry.
CREATE SEQUENCE versions AS bigint MINVALUE 1;
-- Central log cursors, handed out in the order of their transactions' ids
-- (see central_log).
CREATE SEQUENCE cursors AS bigint MINVALUE 1;

-- The current copy of every record and what replication knows of it.
-- version 0 is a placeholder: a row inserted only to be locked while a
-- change that reads a record nobody has yet is decided; it reads as absent.
CREATE TABLE records (
	tbl        text COLLATE "C" NOT NULL,
	id         text COLLATE "C" NOT NULL,
	version    bigint NOT NULL DEFAULT 0,
	action     text NOT NULL DEFAULT '',
	deleted    boolean NOT NULL DEFAULT false,
	owner      text NOT NULL DEFAULT '',
	central    boolean NOT NULL DEFAULT false,
	holders    integer[] NOT NULL DEFAULT '{}',
	parent_tbl text COLLATE "C",
	parent_id  text COLLATE "C",
	held       boolean NOT NULL DEFAULT false,
	marks      jsonb,          -- per site: its last accepted change of the record
	data       bytea,          -- the record's data, byte for byte as accepted
	log_cursor bigint,         -- central data: its entry in central_log
	PRIMARY KEY (tbl, id)
) WITH (fillfactor = 85);
-- Fill finds a site's records through it.
CREATE INDEX records_holders ON records USING gin (holders);

-- Which child rows belong to a parent (trans_line to transact, …).
CREATE TABLE kids (
	parent_tbl text COLLATE "C" NOT NULL,
	parent_id  text COLLATE "C" NOT NULL,
	tbl        text COLLATE "C" NOT NULL,
	id         text COLLATE "C" NOT NULL,
	PRIMARY KEY (parent_tbl, parent_id, tbl, id)
);

-- Central data by cursor: one row per central record (its latest change).
-- xid is the writing transaction (pg_current_xact_id): a reader returns only
-- rows below the oldest transaction still running, so a row committed late
-- by another node is never skipped. Range-partitioned by cursor; the
-- partitions are made ahead by the store (central_log_parts lists them).
CREATE TABLE central_log (
	cursor bigint NOT NULL,
	tbl    text COLLATE "C" NOT NULL,
	id     text COLLATE "C" NOT NULL,
	xid    bigint NOT NULL,
	PRIMARY KEY (cursor)
) PARTITION BY RANGE (cursor);
CREATE TABLE central_log_parts (
	lo   bigint PRIMARY KEY,
	hi   bigint NOT NULL,
	name text NOT NULL
);

-- Each site's queue: at most one entry per record, read in ord order (the
-- version that queued it, which is also the syncOutId the site acknowledges).
CREATE TABLE queue (
	site integer NOT NULL,
	tbl  text COLLATE "C" NOT NULL,
	id   text COLLATE "C" NOT NULL,
	ord  bigint NOT NULL,
	del  boolean NOT NULL,
	PRIMARY KEY (site, tbl, id)
);
CREATE INDEX queue_order ON queue (site, ord);
-- Queue lengths as deltas (a site's length is their sum), so transactions
-- that queue for the same site never wait on one counter row; compacted by
-- the store.
CREATE TABLE queue_len (
	site integer NOT NULL,
	n    bigint NOT NULL
);
CREATE INDEX queue_len_site ON queue_len (site);

-- The site registry. state is queue.SiteState as JSON, but for the last
-- contact (unix nanoseconds) and the last health block and its time, which
-- each node writes at most once a minute per site. filling_until is a
-- lease: a Fill running (filling_token set) or an initialisation started;
-- once it lapses the start is stale.
CREATE TABLE sites (
	sync_id       integer PRIMARY KEY,
	state         jsonb NOT NULL,
	last_contact  bigint NOT NULL DEFAULT 0,
	health        bytea,
	health_at     bigint NOT NULL DEFAULT 0,
	filling_until timestamptz,
	filling_token text
);

-- Small named values: the site membership the stored holders reflect.
CREATE TABLE meta (
	key   text PRIMARY KEY,
	value text NOT NULL
);
