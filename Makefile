# Two set-up commands: `make run` and `make test`. Both build .venv when it is
# missing or older than pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP_RUN  := $(VENV)/.stamp-run
STAMP_TEST := $(VENV)/.stamp-test

.PHONY: run test test-fast bench lint docs clean

# A first install downloads about 3 GB (torch is most of it) into a 6 GB .venv and takes
# a few minutes: pip shows a progress bar per download and a line per step.
PIP := $(BIN)/pip install --progress-bar on --no-input

$(BIN)/python:
	@echo "hubtune: creating $(VENV) (a first install downloads about 3 GB; a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	@echo "hubtune: installing hubtune and the demo model into $(VENV)"
	$(PIP) -e '.[demo]'
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	@echo "hubtune: installing hubtune, the demo model and the test tools into $(VENV)"
	$(PIP) -e '.[dev,demo]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/hubtune

# Four test processes (pytest-xdist) on a 2-core machine: much of the suite waits on
# worker processes, torchrun, sshd and tmux, and each test process computes on one thread
# (tests/conftest.py), so the extra ones keep both cores busy (2026-12-07, 2-core VM, a
# fresh clone, 1,100 tests: 11m14s with four, 11m19s with six). TEST_JOBS=0: one process.
TEST_JOBS ?= 4
PYTEST := $(BIN)/python -m pytest -q --durations=15 $(if $(filter-out 0,$(TEST_JOBS)),-n $(TEST_JOBS) --dist worksteal)

test: $(STAMP_TEST)
	$(PYTEST)

# The edit loop: everything but the tests that start workers or whole TUI sessions.
test-fast: $(STAMP_TEST)
	$(PYTEST) -m "not slow"

lint: $(STAMP_TEST)
	$(BIN)/ruff check tui engine store tests bench docs
	$(BIN)/lint-imports

bench: $(STAMP_TEST)
	$(BIN)/python -m bench

# The CLI and configuration references (docs/cli.md, docs/configuration.md) are written
# from the code; tests/test_docs_reference.py fails when they are stale.
docs: $(STAMP_RUN)
	$(BIN)/python -m docs.reference

clean:
	rm -rf $(VENV)
