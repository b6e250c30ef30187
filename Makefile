# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: demo test lint bench clean install serve browser

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# npm brings Azurite and the Teams JavaScript SDK; the SDK is copied beside the page templates so the deployed app
# serves it itself (node_modules is not published).
$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --loglevel=error
	cp node_modules/@microsoft/teams-js/dist/umd/MicrosoftTeams.min.js shared/web/static/
	touch $@

# Byte-compiled as an installed package is (pip compiles what it installs): with PYTHONDONTWRITEBYTECODE set, every
# command would otherwise recompile the app's modules from source. Stale files are redone by their timestamps.
install: $(STAMP) $(NODE_STAMP)
	$(PY) -m compileall -q shared

demo: install
	$(PY) -m shared.cli demo

serve: install
	$(PY) -m shared.cli serve

# The browser tests drive Debian's chromium (Playwright's own browser download cannot work here); a Japanese font
# makes the screenshots readable. Installed with apt when missing (CI runs as root on a fresh machine).
browser:
	@command -v chromium >/dev/null 2>&1 && fc-list :lang=ja 2>/dev/null | grep -q . || { \
	  if [ "$$(id -u)" != 0 ]; then echo "browser tests need chromium: sudo apt-get install -y chromium fonts-ipafont-gothic" >&2; exit 1; fi; \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-ipafont-gothic >/dev/null; }

test: install browser
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
	$(PY) bench/dashboard.py --rows 20000

clean:
	rm -rf $(VENV) node_modules .local .pytest_cache .ruff_cache
