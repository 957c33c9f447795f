# The two commands of the README: `make run` (set up and start the local DR lab) and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONPATH := $(CURDIR)/plugins

.PHONY: run stop status test lint bootstrap bench

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	@$(PY) -m disaster_recovery.lab up

stop:
	@$(PY) -m disaster_recovery.lab down

status:
	@$(PY) -m disaster_recovery.lab status

test: bootstrap
	@$(PY) -m ruff check .
	@$(PY) -m pytest $(PYTEST_ARGS)

lint: bootstrap
	@$(PY) -m ruff check .

bench: bootstrap
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
