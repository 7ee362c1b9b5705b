# cryptoflow: `make up` runs the pipeline on the embedded defaults, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV := $(shell command -v uv 2>/dev/null || echo $(BIN)/uv)

SANDBOX_PORT ?= 9100

.PHONY: help install chromium manifest up test lint format bench lock clean

help:
	@echo "make up     run the whole pipeline on the embedded defaults (Ctrl-C stops it)"
	@echo "make test   install what is needed, lint, and run every test"
	@echo "make bench  run the benchmarks, print their figures and write bench/results.md"
	@echo "make lock   recompile requirements.txt from requirements.in with uv"

# The virtualenv is rebuilt whenever requirements.txt changes. Its bytecode is compiled at install
# (--compile-bytecode; uv leaves it to the first import by default): with PYTHONDONTWRITEBYTECODE set,
# as on these machines, no import ever writes it, and every Airflow task process compiled Airflow,
# Cosmos and dbt from source again: 5.7 s to import the warehouse DAG instead of 2.3 s, on every task.
$(STAMP): requirements.txt
	@command -v uv >/dev/null 2>&1 || [ -x $(BIN)/uv ] || { $(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet uv; }
	$(UV) venv --allow-existing --python $(PYTHON) $(VENV)
	$(UV) pip install --compile-bytecode --python $(BIN)/python -r requirements.txt
	@touch $@

install: $(STAMP)

# Debian's Chromium, for the dashboard's browser tests and benchmark (Playwright drives it; no browser
# is ever downloaded). Installed from Debian's packages when missing: CI starts on a clean machine.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null

chromium: $(CHROMIUM)

# The dbt manifest the warehouse DAG renders from (Cosmos LoadMode.DBT_MANIFEST), rebuilt when the
# dbt project changes, so parsing the DAG file never runs dbt.
MANIFEST := include/dbt/target/manifest.json
DBT_SOURCES := $(shell find include/dbt -path include/dbt/target -prune -o -path include/dbt/logs -prune -o -type f \( -name '*.sql' -o -name '*.yml' \) -print)
$(MANIFEST): $(STAMP) $(DBT_SOURCES)
	$(BIN)/python -m include.transform_group

manifest: $(MANIFEST)

# The dbt project's SQL too: sqlfluff, offline (include/dbt/.sqlfluff says how and why).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint include/dbt

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Three pytest workers (pytest-xdist), a test file each at a time, in the order tests/conftest.py gives
# (the longest first, not xdist's most-tests-first): most end-to-end tests wait on sockets and
# processes, so three share this 2-core machine well (a fresh clone at a41822c: 17 min 57 s with three,
# the CPUs 86% busy; about 20 min with two). TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 3
test: lint $(MANIFEST) $(CHROMIUM)
	$(BIN)/python -m pytest --durations=30 $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

# Every benchmark at full size (a few minutes), its figures also written to bench/results.md;
# BENCH picks some or shrinks them:
# `make bench BENCH=stream`, `make bench BENCH=--smoke` (tiny, checks only, no targets).
bench: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m bench $(BENCH)

up: $(STAMP) $(MANIFEST)
	@$(BIN)/python -m include.cli up --sandbox-port $(SANDBOX_PORT)

lock:
	$(UV) pip compile --python-version 3.11 requirements.in -o requirements.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
