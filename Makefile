# The two commands of the README: `make repro` (the whole experiment) and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.setup-stamp
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONHASHSEED := 0

.PHONY: setup repro seeds inputs full paper real composite test test-fast test-queue lab clean-results

setup: $(STAMP)

# Re-installs only when pyproject.toml changes; a second `make setup` takes a second.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The README's results block is refreshed from reports/results.md after the pipeline.
repro: setup
	$(BIN)/dvc repro
	$(BIN)/python -m mer_core.report readme

# Profiles (profiles/<name>.yaml): params overrides run as one `dvc exp run` (README: Profiles).
seeds: setup
	$(BIN)/python -m mer_core.profiles seeds

inputs: setup
	$(BIN)/python -m mer_core.profiles inputs

full: setup
	$(BIN)/python -m mer_core.profiles full

paper: setup
	$(BIN)/python -m mer_core.profiles paper

real: setup
	$(BIN)/python -m mer_core.profiles real

composite: setup
	$(BIN)/python -m mer_core.profiles composite

test: setup
	$(BIN)/python -m pytest -q

# Tests that neither train a network nor execute a notebook (under a minute).
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

# A two-point grid through `dvc exp run --queue` + `dvc queue start` on a tiny project (minutes).
test-queue: setup
	$(BIN)/python -m pytest -q -m queue tests/test_queue.py

lab: setup
	$(BIN)/jupyter lab --notebook-dir=$(CURDIR)

clean-results:
	rm -rf results data/frames
