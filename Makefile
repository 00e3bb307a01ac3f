# The commands a newcomer types: `make test` and `make demo`.
# Everything is installed into $(VENV) from scratch when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV ?= .venv
# Optional extra pin for CI legs, e.g. DJANGO_SPEC="Django>=6.1,<7"
DJANGO_SPEC ?=
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --group test -e ".[postgres]" $(if $(DJANGO_SPEC),"$(DJANGO_SPEC)")
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m django makemigrations --check --dry-run --settings=tests.settings
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The example project on http://127.0.0.1:$(DEMO_PORT)/, offline against a local fake Stripe
# (or Stripe test mode when STRIPE_API_KEY is set). Ctrl-C stops it. It installs only the `demo`
# group (the package and the fake Stripe server), into the same $(VENV) with a stamp of its own.
DEMO_PORT ?= 8000
# More options of example/run_demo.py, e.g. DEMO_ARGS="--database /tmp/demo.sqlite3"
DEMO_ARGS ?=
DEMO_STAMP := $(VENV)/.installed-demo

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --group demo -e .
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python example/run_demo.py --port $(DEMO_PORT) $(DEMO_ARGS)

# Benchmarks print ratios measured in one run (never timed tests): on SQLite, then again on the
# database of DATABASE_URL when it is set (PostgreSQL).
BENCHMARKS := benchmarks/webhooks.py benchmarks/graphql_pages.py benchmarks/command_costs.py benchmarks/task_engines.py
bench: $(STAMP)
	@set -e; for script in $(BENCHMARKS); do \
	    echo "== $$script (SQLite)"; \
	    env -u DATABASE_URL DJANGO_SETTINGS_MODULE=tests.settings $(BIN)/python $$script; \
	    if [ -n "$$DATABASE_URL" ]; then \
	        echo "== $$script ($$DATABASE_URL)"; \
	        DJANGO_SETTINGS_MODULE=tests.settings $(BIN)/python $$script; \
	    fi; \
	done

lint: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .

format: $(STAMP)
	$(BIN)/python -m ruff check --fix .
	$(BIN)/python -m ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
