# Tenure: two commands.
#   make run   - start the whole console (web + Celery worker) on the embedded default
#   make test  - run the whole test suite on PostgreSQL and Redis (plus ruff)

SHELL := /bin/bash
# The first interpreter that really runs and is 3.12+ (pyenv shims exist even for
# versions that are not selected, so each candidate is tried, not just found).
PYTHON ?= $(shell for c in python3.13 python3.12 $$HOME/.pyenv/versions/3.13*/bin/python $$HOME/.pyenv/versions/3.12*/bin/python python3; do \
	$$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { command -v $$c || echo $$c; } && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench lock clean

$(STAMP): requirements.lock
	@test -n "$(PYTHON)" || { echo "Tenure needs Python 3.12+ (python3.12 or python3.13 on PATH)."; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	@touch $(STAMP)

run: $(STAMP)
	TENURE_HTTPS=$${TENURE_HTTPS:-0} TENURE_DEMO_FEED=$${TENURE_DEMO_FEED:-1} $(BIN)/python manage.py up

test: $(STAMP)
	$(BIN)/python tests/ensure_services.py
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python tests/ensure_browser.py
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/soak.py $(BENCH_ARGS)

# Re-pin dependencies after editing pyproject.toml (needs uv in the venv).
lock: $(STAMP)
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.12 -o requirements.lock

clean:
	rm -rf $(VENV) data .pytest_cache
