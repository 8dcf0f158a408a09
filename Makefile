# gurugrow — two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run serve test test-unit lint bench doctor deliveries clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: serve the API on http://localhost:8000 (sandbox: demo upstreams, no accounts needed)
run: install
	$(BIN)/python -m gurugrow.sandbox.run

## serve: production-style start with the real upstreams from .env
serve: install
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

## test: the whole suite, real-Redis integration tests included
test: install
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest -m "not integration"

lint: install
	$(BIN)/ruff check gurugrow tests bench wsgi.py gunicorn.conf.py

## doctor: check the .env configuration against Redis, RetailCRM, GreenSMS and the deduper
doctor: install
	$(BIN)/flask --app wsgi gurugrow doctor

## deliveries: the optional worker that re-sends undelivered messenger codes by SMS (.env)
deliveries: install
	$(BIN)/flask --app wsgi gurugrow deliveries

## bench: gurugrow against a bare-Flask baseline on the real stack; writes bench/RESULTS.md
bench: install
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
