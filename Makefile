# gurugrow — two commands for a newcomer: `make run` and `make test`.
# `make` alone (or `make help`) lists every target with what it does.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# requirements-dev.lock: the service and its tests (make install, CI);
# requirements.lock: the service alone (deploy/README.md installs it).
LOCK := requirements-dev.lock
DEPLOY_LOCK := requirements.lock
PIN := --quiet --upgrade --generate-hashes --strip-extras --no-emit-index-url \
	--no-emit-find-links --no-emit-trusted-host

.DEFAULT_GOAL := help
.PHONY: help install python-check run serve test test-unit lint bench doctor create-fields \
	deliveries mirror lock clean texts

## help: list every target (this text)
help:
	@sed -n 's/^## \([a-z-]*\): /\1\t/p' $(MAKEFILE_LIST) | \
		awk -F'\t' '{printf "  make %-14s %s\n", $$1, $$2}'

## install: create .venv and install the pinned, hashed dependencies from requirements-dev.lock
install: python-check $(STAMP)

## python-check: one line when the Python (or the one .venv was built with) is older than 3.11
python-check:
	@py=$(PYTHON); [ -x $(BIN)/python ] && py=$(BIN)/python; \
	$$py -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	echo "gurugrow needs Python >= 3.11, but $$py is $$($$py -V 2>/dev/null || echo "not found");" \
	"fix: make clean && make install PYTHON=python3.11"; exit 1; }

$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

## lock: re-pin requirements.lock (service) and requirements-dev.lock (+ tests), with hashes
lock: python-check
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile $(PIN) --output-file $(DEPLOY_LOCK) pyproject.toml
	$(BIN)/pip-compile $(PIN) --extra test --output-file $(LOCK) pyproject.toml

## run: serve the API on http://localhost:8000 (sandbox, no accounts); APP_PORT=8001 make run
run: install
	$(BIN)/python -m gurugrow.sandbox.run

# One metrics directory for make serve, deliveries and mirror, so /metrics adds the
# workers' counters to gunicorn's (as the systemd units share /run/gurugrow/metrics).
# An environment PROMETHEUS_MULTIPROC_DIR wins; METRICS_DIR=... names another.
METRICS_DIR ?= $(or $(PROMETHEUS_MULTIPROC_DIR),$(CURDIR)/.metrics)
WITH_METRICS = mkdir -p $(METRICS_DIR) && PROMETHEUS_MULTIPROC_DIR=$(METRICS_DIR)

## serve: production-style start with the real upstreams from .env
serve: install
	$(WITH_METRICS) $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

## test: the whole suite, real-Redis integration tests included
test: install
	$(BIN)/python -m pytest

## test-unit: the tests that start no real processes (no redis-server or nginx needed)
test-unit: install
	$(BIN)/python -m pytest -m "not integration"

## lint: ruff over the code and the tests, mypy over the package and bench (pyproject.toml)
lint: install
	$(BIN)/ruff check gurugrow tests bench wsgi.py gunicorn.conf.py
	$(BIN)/mypy

## doctor: check the .env configuration against Redis, RetailCRM, GreenSMS and the deduper
doctor: install
	$(BIN)/flask --app wsgi gurugrow doctor

## create-fields: create the RetailCRM customer fields the doctor finds missing (ARGS=--yes: no question)
create-fields: install
	$(BIN)/flask --app wsgi gurugrow create-fields $(ARGS)

## texts: write every bot text to texts.toml (OUT=file), to edit and name in TEXTS_FILE
texts: install
	$(BIN)/flask --app wsgi gurugrow texts --output $(or $(OUT),texts.toml)

## deliveries: the optional worker that re-sends undelivered messenger codes by SMS (.env)
deliveries: install
	$(WITH_METRICS) $(BIN)/flask --app wsgi gurugrow deliveries

## mirror: the RetailCRM mirror poller: load, then follow RetailCRM's history (CRM_MIRROR=1, .env)
mirror: install
	$(WITH_METRICS) $(BIN)/flask --app wsgi gurugrow mirror

## bench: gurugrow against a bare-Flask baseline on the real stack; writes bench/RESULTS.md
bench: install
	$(BIN)/python -m bench.run

## clean: remove .venv and caches (also the fix for a .venv built by the wrong Python)
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
