# Tenure: two commands.
#   make run   - start the whole console (web + Celery worker) on the embedded default
#   make test  - lint, the fast tests, then the slow ones (soak, browser, live worker)

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

# `make test` runs in named stages and stops at the first one that fails: lint, then
# the fast tests, then the slow ones (the bounded soak, real Chromium, real Celery
# workers), so a broken fast test is reported in minutes. PYTEST_ARGS go to both pytest
# stages; a stage they leave without tests passes (pytest's exit code 5).
LINT := $(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports --no-cache
FAST_TESTS := not soak and not browser and not worker
SLOW_TESTS := soak or browser or worker

# $(call stage,N/3,name,commands): a banner, the commands, how long they took.
define stage
	@printf '\n==> stage %s: %s\n' '$(1)' '$(2)'; start=$$(date +%s); \
	if $(3); then \
		printf '==> stage %s: %s passed in %ss\n' '$(1)' '$(2)' $$(( $$(date +%s) - start )); \
	else \
		status=$$?; \
		printf '==> stage %s: %s FAILED after %ss\n' '$(1)' '$(2)' $$(( $$(date +%s) - start )); \
		exit $$status; \
	fi
endef

# $(call pytest_stage,marker expression)
pytest_stage = ( $(BIN)/pytest -m "$(1)" $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "(PYTEST_ARGS select no tests of this stage)"; status=0; fi; \
	exit $$status )

test: $(STAMP)
	$(BIN)/python tests/ensure_services.py
	$(call stage,1/3,lint,( set -x; $(LINT) ))
	$(call stage,2/3,fast tests,$(call pytest_stage,$(FAST_TESTS)))
	$(call stage,3/3,slow tests (soak + browser + live worker),$(BIN)/python tests/ensure_browser.py && $(call pytest_stage,$(SLOW_TESTS)))

lint: $(STAMP)
	$(LINT)

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
