# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: demo test lint bench clean install serve

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP) $(NODE_STAMP)

demo: install
	$(PY) -m shared.cli demo

serve: install
	$(PY) -m shared.cli serve

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: install
	$(PY) bench/import.py
	$(PY) bench/delivery.py
	$(PY) bench/rules.py
	$(PY) bench/sweep.py
	$(PY) bench/webhooks.py
	$(PY) bench/broker.py
	$(PY) bench/approvals.py

clean:
	rm -rf $(VENV) node_modules .local .pytest_cache .ruff_cache
