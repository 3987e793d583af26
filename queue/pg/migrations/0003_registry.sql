-- The site registry (queue/registry.go): the primary's site rows, a
-- generation raised by every change (a node rereads the rows only when it
-- moved), and a bounded log of the changes. A change takes the generation's
-- row FOR UPDATE, so changes from several nodes take turns.
CREATE TABLE site_registry (
	sync_id       integer PRIMARY KEY CHECK (sync_id > 1),
	"user"        text NOT NULL UNIQUE,
	password_hash text NOT NULL,
	stores        jsonb NOT NULL,
	hardware_id   text NOT NULL DEFAULT '',
	url           text NOT NULL DEFAULT ''
);

CREATE TABLE registry_generation (
	one        boolean PRIMARY KEY DEFAULT true CHECK (one),
	generation bigint NOT NULL
);
INSERT INTO registry_generation (generation) VALUES (0);

CREATE TABLE registry_log (
	generation bigint PRIMARY KEY,
	at         timestamptz NOT NULL,
	by_whom    text NOT NULL,
	what       text NOT NULL,
	digest     text NOT NULL,
	put        integer NOT NULL,
	removed    integer NOT NULL
);
