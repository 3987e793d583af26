-- Diagnostics on request (queue/diagnostics.go): one value per site, so a
-- piece and the state it moves to change together. state is
-- queue.Diagnostics as JSON (bundles of at most 1 MiB, base64 inside).
CREATE TABLE diagnostics (
	sync_id integer PRIMARY KEY,
	state   jsonb NOT NULL
);
