# Two commands set everything up on a fresh Debian/Ubuntu machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed
STAMP_APT := .local/.apt-installed
STAMP_CHECKOV := $(VENV)/checkov/.installed
APT_PACKAGES := unixodbc unixodbc-dev odbc-postgresql postgresql chromium
FUNCTION_FOLDERS := $(patsubst %/function.json,%,$(wildcard */function.json))

.PHONY: run test test-reliability lint typecheck unit bench deps clean

deps: $(STAMP_PY) $(STAMP_NODE) $(STAMP_APT) $(STAMP_CHECKOV)

$(STAMP_PY): requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

# checkov (tests/infra) in a venv of its own: it pins packaging<24, which pytest cannot use.
$(STAMP_CHECKOV): infra/requirements-checkov.txt | $(STAMP_PY)
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install --quiet -r infra/requirements-checkov.txt
	@touch $@

$(STAMP_NODE): package.json
	@command -v npm >/dev/null || { echo "Node.js 20 and npm are required (apt-get install nodejs npm)"; exit 1; }
	npm install --no-audit --no-fund --silent
	@touch $@

# unixODBC, psqlODBC, PostgreSQL and Chromium (the dashboard's screenshot test): installed when root,
# otherwise checked with a clear message.
$(STAMP_APT):
	@mkdir -p .local
	@if odbcinst -q -d -n "PostgreSQL Unicode" >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	  && command -v chromium >/dev/null; then \
	  true; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	else \
	  echo "Missing system packages. Install them with: sudo apt-get install -y $(APT_PACKAGES)"; exit 1; \
	fi
	@touch $@

run: $(STAMP_PY) $(STAMP_NODE)
	@$(PY) -c 'from shared.localsettings import add_missing_settings as a; n = a("."); n and print("local.settings.json: added", ", ".join(n))'
	$(PY) -m devhost

lint: $(STAMP_PY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP_PY)
	$(VENV)/bin/mypy shared devhost bench $(FUNCTION_FOLDERS)

test: deps lint typecheck
	$(VENV)/bin/pytest

# The reliability suite at full scale (faults, hostile input, load, cross-tenant matrix); `make test`
# runs the same tests at a bounded scale. Prints the figures and writes .local/reliability.json.
test-reliability: deps
	SLUICE_RELIABILITY_SCALE=full $(VENV)/bin/pytest tests/reliability

bench: deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules .local .pytest_cache .mypy_cache .ruff_cache
