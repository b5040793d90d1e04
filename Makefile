# Enexa + Amperio. `make demo` runs the whole system; `make test` runs every test (4 to 6 minutes
# on 2 cores in 6 workers), `make test-fast` those that start no servers or workers (about 2).
# Both create .venv and install the project when no virtual environment is active.

SHELL := /bin/bash
VENV ?= .venv
ifdef VIRTUAL_ENV
PYTHON := $(VIRTUAL_ENV)/bin/python
else
PYTHON := $(VENV)/bin/python
endif
STAMP := $(dir $(PYTHON)).enexa-amperio-installed

.PHONY: demo test test-fast lint format bench install clean schema-snapshots

$(PYTHON):
	python3 -m venv $(VENV)

# Reinstall when pyproject.toml changes.
$(STAMP): pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PYTHON) -m demo

# Parallel workers (pytest-xdist), each file on one worker (module-wide servers start once):
# the integration tests mostly wait, so more workers than cores overlap their waits. A fixed
# number, not `-n auto` (2 on this machine); TEST_WORKERS=0 runs them one after the other.
TEST_WORKERS ?= 6
test: $(STAMP)
	$(PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: $(STAMP)
	$(PYTHON) -m pytest -m "not integration"

lint: $(STAMP)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

format: $(STAMP)
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

# Rewrite tests/snapshots/*-openapi.yaml from the code; review the diff before committing it.
schema-snapshots: $(STAMP)
	UPDATE_SNAPSHOTS=1 $(PYTHON) -m pytest -q tests/test_openapi_snapshots.py

bench: $(STAMP)
	$(PYTHON) -m bench

clean:
	rm -rf var .pytest_cache .ruff_cache
