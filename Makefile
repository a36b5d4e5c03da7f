# Two set-up commands: `make run` and `make test`. Both build .venv when it is
# missing or older than pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP_RUN  := $(VENV)/.stamp-run
STAMP_TEST := $(VENV)/.stamp-test

.PHONY: run test test-fast bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,demo]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/hubtune

test: $(STAMP_TEST)
	$(BIN)/python -m pytest -q

# The edit loop: everything but the tests that start workers or whole TUI sessions.
test-fast: $(STAMP_TEST)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP_TEST)
	$(BIN)/ruff check tui engine store tests
	$(BIN)/lint-imports

bench: $(STAMP_TEST)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV)
