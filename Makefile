# syncagent — the two commands a fresh machine needs are `make demo` and `make test`.
GO      ?= go
BIN     := bin/syncagent
PKGS    := ./...
LDFLAGS := -s -w -X syncagent/agent/version.Version=$(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
export CGO_ENABLED := 0

.PHONY: all build cross demo test vet lint fmt-check clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./agent/cmd/syncagent

cross:
	GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/syncagent-linux-amd64 ./agent/cmd/syncagent
	GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/syncagent-linux-arm64 ./agent/cmd/syncagent
	GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/syncagent-linux-armv7 ./agent/cmd/syncagent

demo: build
	./$(BIN) demo

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

# staticcheck at a pinned version, fetched from the module proxy by `go run`
# (not in go.mod: nothing that ships depends on it).
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	$(GO) run $(STATICCHECK) $(PKGS)

# -race needs cgo; the binary itself stays CGO_ENABLED=0.
test: fmt-check vet lint
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m $(PKGS)

clean:
	rm -rf bin dist

# The crash soak (testtools/cmd/soak): a primary and two satellites as real
# processes, SIGKILLed at random for SOAK_ROUNDS rounds, then every site is
# checked against the writes the apps were told succeeded. Longer:
# `make soak SOAK_ROUNDS=500`; more knobs: SOAK_FLAGS='-keys 500 -seed 42'.
SOAK_ROUNDS ?= 30
.PHONY: soak
soak: build
	$(GO) run ./testtools/cmd/soak -bin $(BIN) -rounds $(SOAK_ROUNDS) $(SOAK_FLAGS)

# Debian packages for amd64, arm64 and armhf in dist/ (nfpm at the version
# pinned in packaging/deb/build.sh, run with `go run`; not in go.mod). Lintian
# runs when installed (`apt-get install lintian`).
.PHONY: deb
deb:
	rm -f dist/syncagent_*.deb
	packaging/deb/build.sh -o dist
	@for d in dist/syncagent_*.deb; do dpkg-deb --info "$$d" | sed -n 's/^ \(Package\|Version\|Architecture\|Installed-Size\):/  &/p'; done 2>/dev/null || true
	@if command -v lintian >/dev/null; then lintian --fail-on error,warning dist/syncagent_*.deb && echo "lintian: clean"; else echo "lintian: not installed, skipped"; fi

# The package under the real systemd (packaging/e2e): boots systemd as PID 1
# of new namespaces over private tmpfs and overlay mounts (the host is left as
# it was), installs a test build of the .deb (-tags faultinject) with dpkg,
# and checks start, STATUS, reload, the watchdog and stop. Root; about a
# minute. Skips with the reason where namespaces are unavailable.
.PHONY: systemd-e2e
systemd-e2e:
	packaging/e2e/deps.sh
	rm -rf dist/e2e
	packaging/deb/build.sh -a "$$(dpkg --print-architecture 2>/dev/null || $(GO) env GOARCH)" -t faultinject -o dist/e2e
	SYNCAGENT_SYSTEMD_E2E=1 SYNCAGENT_E2E_DEB="$$(ls $(CURDIR)/dist/e2e/syncagent_*.deb)" \
		$(GO) test -count=1 -v -timeout 6m ./packaging/e2e/

# The replication property test (testtools/model, docs/replication.md) over
# many seeds: `make soak-model SEEDS=10000`; prints the seeds that failed.
# On PostgreSQL (a throw-away cluster, testtools/pgtest; odd seeds two
# primary nodes on one database, even seeds one): `make soak-model
# BACKEND=pg SEEDS=300`. `make test` runs 200 BuntDB seeds and 6 pg seeds.
# More knobs: MODEL_FLAGS='-seed 5000 -steps 400 -history -nodes 2'.
SEEDS ?= 2000
BACKEND ?= buntdb
.PHONY: soak-model
soak-model:
	CGO_ENABLED=1 $(GO) test -count=1 -timeout 0 ./testtools/model -run '^TestConvergence$$' -v -backend $(BACKEND) -seeds $(SEEDS) $(MODEL_FLAGS) \
		| grep -Ev '^(=== RUN|--- PASS|PASS)'

# The link benchmark (issue 4): a primary and a satellite in one process, the
# satellite's traffic through an in-process toxiproxy; every built-in link
# profile, auto against fixed request sizes; a few minutes. Flags: BENCH_FLAGS.
.PHONY: bench-links
bench-links:
	$(GO) run ./testtools/cmd/linkbench $(BENCH_FLAGS)

# What the agent costs a clinic box (testtools/cmd/footprint): binary size per
# architecture, memory and wake-ups of a satellite idling against a primary
# on loopback, time to READY=1 with a 100,000-record outbox, and RSS per
# record and restart time holding 10k/100k/300k records of 300 bytes. About
# six minutes; shorter: `make footprint FOOTPRINT_FLAGS='-idle 1m'`; only
# the last: FOOTPRINT_FLAGS='-only held -held 300000'.
FOOTPRINT_FLAGS ?=
.PHONY: footprint
footprint:
	$(GO) run ./testtools/cmd/footprint $(FOOTPRINT_FLAGS)

# The primary under load (testtools/cmd/benchprimary): N simulated sites
# speaking v5 over real HTTP against each setup — BuntDB, PostgreSQL with one
# node, with three nodes on one database (a throw-away cluster,
# testtools/pgtest) — every node a `syncagent run` process (past 20,000
# sites, or with -bin=, the same agent/primary code in a child of the bench),
# at rising rates; an ingest run beside a raw JSON+append+fsync baseline;
# with three nodes a node killed mid-run (lost, duplicated). Prints a table;
# figures in docs/scale.md. Knobs: BENCH_PRIMARY_FLAGS='-setups pg -sites
# 40000 -rates 133 -step 60s', '-held 1000000', '-bulk 10000000',
# '-auth-restart 20000', '-pg-stats'.
BENCH_PRIMARY_FLAGS ?=
.PHONY: bench-primary bench-compaction bench-admin
# The admin page's speed targets in real headless Chromium (1,000 sites:
# first render < 1 s, sort and filter < 100 ms); the suite only logs them.
bench-admin:
	$(GO) test ./agent/admin -run TestAdmin_browser -count=1 -v -args -browser.targets | grep -E 'sites:|ok|FAIL|---'

# What a compaction of the primary's datafile costs the requests around it,
# blocking and online: BENCH_COMPACTION_FLAGS='-pause-records 10000,1000000'.
bench-compaction:
	$(GO) test ./queue -run '^$$' -bench CompactionPause -benchtime 1x $(BENCH_COMPACTION_FLAGS) | grep -v level=

bench-primary: build
	$(GO) build -o bin/benchprimary ./testtools/cmd/benchprimary
	bin/benchprimary -bin $(BIN) $(BENCH_PRIMARY_FLAGS)

# The PostgreSQL backend's benchmark (queue/pg): 500-record pushes from four
# sites at once into a throw-away cluster (testtools/pgtest), and a site's
# pull and acknowledgement; records/s and µs of CPU per record in the node
# and in the database. Results in docs/postgres.md. PG_BENCH_FLAGS='-benchtime 400x'.
PG_BENCH_FLAGS ?= -benchtime 200x
.PHONY: bench-pg
bench-pg:
	$(GO) test -count=1 -run '^$$' -bench . $(PG_BENCH_FLAGS) ./queue/pg/

# What an app waits for when it writes (testtools/cmd/localbench): puts/s and
# p50/p99 at 1, 16 and 64 concurrent writers and batch records/s through the
# local API of a real running satellite, beside one append+fsync per record
# on the same disk. About 30 s. LOCAL_BENCH_FLAGS='-duration 10s -dir /var/tmp'.
LOCAL_BENCH_FLAGS ?=
.PHONY: bench-local
bench-local: build
	$(GO) run ./testtools/cmd/localbench -bin $(BIN) $(LOCAL_BENCH_FLAGS)

# The site registry at national scale (testtools/cmd/benchregistry): 40,000
# sites imported through `syncagent sites import` (one unlock code) into a
# real `syncagent run` primary on BuntDB, then its start time and the time
# of `syncagent sites` listing and filtering them; and the same registry on
# PostgreSQL (testtools/pgtest) in a primary.Server in process. Prints a
# table with the load average. Results in docs/registry.md.
BENCH_REGISTRY_FLAGS ?=
.PHONY: bench-registry
bench-registry:
	$(GO) build -o bin/syncagent ./agent/cmd/syncagent
	$(GO) build -o bin/benchregistry ./testtools/cmd/benchregistry
	bin/benchregistry -bin bin/syncagent $(BENCH_REGISTRY_FLAGS)

# How long `syncagent central migrate` keeps a primary down
# (testtools/cmd/benchmigrate): a BuntDB primary filled with store records
# (most queued for a site) and central records, copied into a throw-away
# PostgreSQL by the same Store.Import; prints a table with the load average.
# Results in docs/postgres.md. BENCH_MIGRATE_FLAGS='-records 300000'.
BENCH_MIGRATE_FLAGS ?=
.PHONY: bench-migrate
bench-migrate:
	$(GO) run ./testtools/cmd/benchmigrate $(BENCH_MIGRATE_FLAGS)
