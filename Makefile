# noetl-gateway — developer commands. Everything installs from this repo's own files.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-runtime

.PHONY: run test lint typecheck install clean e2e demo bench drills graphiql

# Runtime only (what `make run` needs) ...
$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

# ... and everything the tests need.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP) $(RUN_STAMP)

install: $(STAMP)

## Run the gateway (defaults: port 8090; starts without NATS or NoETL reachable).
run: $(RUN_STAMP)
	$(BIN)/noetl-gateway

## Lint, type-check and run every test.
test: $(STAMP)
	sh tests/browser/ensure_chromium.sh
	$(BIN)/ruff check gateway handlers schema tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

## Cluster drills (tests/test_cluster_drills.py): a 3-node NATS JetStream cluster and several gateway
## replicas under load while a NATS node is killed or hangs, and while the gateways restart one by one;
## ~2-3 min on 2 cores, so not part of `make test` (pytest marker `drill`). Each prints its report.
drills: $(STAMP)
	$(BIN)/python -m pytest -m drill -s tests/test_cluster_drills.py

## End to end against a real NoETL stack (noetl==4.26.0 in a Python 3.12 venv, Postgres, NATS),
## cached in .e2e-cache/ (first run installs, ~2 min; later runs start in seconds). See docs/e2e.md.
e2e: $(STAMP)
	$(BIN)/python -m tests.e2e.stack install
	$(BIN)/python -m pytest tests/e2e -v -rs

## The gateway working in one command: nats-server, the NoETL DEVELOPMENT STAND-IN, the gateway
## and the UI on its own origin; prints the URLs and the demo token; Ctrl-C stops it. See docs/demo.md.
demo: $(STAMP)
	$(BIN)/python -m tests.fixtures.demo

## Benchmark suite (bench/run_all.py): every scenario against its baseline in the same run, on
## loopback, ~9 min; rewrites the summary table in docs/benchmarks.md. Needs wrk and nginx
## (installed with apt-get when missing and running as root) and the bench extra.
## BENCH_ARGS passes options, e.g. make bench BENCH_ARGS="--only health,proxy --keep /tmp/raw".
bench: $(STAMP) $(VENV)/.bench-installed
	@if ! command -v wrk >/dev/null 2>&1 || ! { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing wrk and nginx for the benchmarks (apt-get) ..."; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk nginx; \
		else \
			echo "wrk and nginx are needed: sudo apt-get install wrk nginx" >&2; exit 1; \
		fi; \
	fi
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

$(VENV)/.bench-installed: pyproject.toml $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

## Refresh the vendored GraphiQL files (handlers/static/graphiql/) from its pinned package.json +
## package-lock.json: npm ci in a temporary folder, then copy. The result is committed (no npm at install).
graphiql:
	node handlers/static/graphiql/vendor.mjs

lint: $(STAMP)
	$(BIN)/ruff check gateway handlers schema tests bench
	$(BIN)/ruff format --check gateway handlers schema tests bench || true

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
