# Two commands for a fresh machine: `make demo` and `make test`. Each does its own set-up.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATROL_MIRROR ?= $(abspath ../shared)
export PATROL_CACHE ?= $(abspath var/cache)

.PHONY: demo test test-cluster lint typecheck unit bench bench-smoke setup system-deps assets clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY) on PATH"; exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

system-deps:
	@scripts/install_system_deps.sh

setup: system-deps $(STAMP)

assets: setup
	$(BIN)/patrol models fetch --all
	$(BIN)/patrol assets fetch --all

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo

typecheck: setup
	$(BIN)/mypy

unit: setup assets
	$(BIN)/python -m pytest -q

test: lint typecheck unit

# the Ray cluster of network namespaces alone (tests/test_cluster.py; `make test` runs it too)
test-cluster: setup assets
	$(BIN)/python -m pytest -q tests/test_cluster.py

demo: assets
	$(BIN)/python scripts/demo.py

bench: assets
	$(BIN)/python -m benchmarks.run

bench-smoke: assets
	$(BIN)/python -m benchmarks.run --smoke

clean:
	rm -rf var/cache var/demo .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
