# Quick start: `make run` (default job) and `make test` (test suite). Both create .venv and
# install idempotently: a stamp file is refreshed only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch==2.13.0 is pinned by default (a CPU wheel is used where one is provided locally);
# override with PIP_CONSTRAINT=/your/constraints.txt or PIP_CONSTRAINT= to lift it.
PIP_CONSTRAINT ?= $(CURDIR)/.ci/constraints.txt
export PIP_CONSTRAINT

# Test processes (pytest-xdist), one thread each (tests/conftest.py): 2 suits a 2-core machine
# (7 min 10 s quiet, 7 min 51 s beside a CPU-bound job; BENCHMARKS.md); TEST_WORKERS=0 runs the
# suite in this process.
TEST_WORKERS ?= 2

.PHONY: run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(VENV)/.installed $@

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-test
	$(BIN)/python -m pip install -q -e ".[bench]"
	touch $@

run: $(VENV)/.installed
	$(BIN)/hessian-pipeline $(ARGS)

test: $(VENV)/.installed-test
	$(BIN)/ruff check pipeline tests benchmarks docs/examples
	$(BIN)/ruff format --check pipeline tests benchmarks docs/examples
	$(BIN)/python -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) outputs multirun
