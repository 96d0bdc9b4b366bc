# Two commands do all set-up on a fresh machine with Python 3.11+:
#   make run   - venv, install, migrate, load catalog (+ demo data on first run), serve on :8000
#   make test  - install test extras (and Debian chromium for browser tests), lint, run the suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
WORKERS ?= 2
FLASK := $(BIN)/flask --app wsgi
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
export TRACKER_ENV ?= development

.PHONY: run setup test test-sqlite test-postgres test-browser lint sbom lock vendor clean bench

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found %s); set PYTHON=python3.11" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

setup: $(VENV)/.installed
	$(FLASK) db upgrade
	$(FLASK) catalog load
	$(FLASK) seed demo

run: setup
	@echo ""
	@echo "Serving on http://127.0.0.1:$(PORT)  (Ctrl-C to stop)"
	@echo "Sign in at http://127.0.0.1:$(PORT)/login with a demo account printed above when the demo was first"
	@echo "loaded. Lost them? Run: $(FLASK) users reset-password officer@harbor-city.example"
	@echo ""
	$(BIN)/gunicorn --bind 127.0.0.1:$(PORT) --workers $(WORKERS) --access-logfile - wsgi:app

lint: $(VENV)/.test-installed
	$(BIN)/ruff check tracker tests wsgi.py bench scripts
	$(BIN)/bandit -q -r tracker -lll
	scripts/audit_deps.sh
	@$(MAKE) --no-print-directory sbom

# CycloneDX software bill of materials of the locked dependencies (offline, from requirements.lock).
sbom: $(VENV)/.test-installed
	@mkdir -p build
	@$(BIN)/python -W ignore::UserWarning -m cyclonedx_py requirements requirements.lock --pyproject pyproject.toml \
		--of JSON --output-reproducible --no-validate -o build/sbom.cdx.json 2>/dev/null
	@echo "SBOM: build/sbom.cdx.json ($$(grep -c '"purl"' build/sbom.cdx.json) components)"

lock: $(VENV)/.test-installed
	$(BIN)/pip freeze --exclude-editable | grep -v '^pip-audit' > requirements.lock

# SQLite always; PostgreSQL when TEST_DATABASE_URL is given or the local server answers
# (CI sets REQUIRE_POSTGRES=1 so a missing server fails instead of skipping).
test: $(VENV)/.test-installed lint test-sqlite test-postgres test-browser

# Feature and security tests run on two processes (pytest-xdist); the reliability tests load a
# gunicorn server and measure it, so they run alone afterwards.
TEST_PROCESSES ?= 2
PYTEST := $(BIN)/pytest -q -p no:cacheprovider
FEATURES := -m "not browser" --ignore=tests/reliability -n $(TEST_PROCESSES)

test-sqlite: $(VENV)/.test-installed
	env -u TEST_DATABASE_URL TRACKER_ENV=testing $(PYTEST) $(FEATURES)
	env -u TEST_DATABASE_URL TRACKER_ENV=testing $(PYTEST) tests/reliability

test-postgres: $(VENV)/.test-installed
	@url="$${TEST_DATABASE_URL:-$(PG_TEST_URL)}"; \
	if $(BIN)/python scripts/db_ready.py "$$url"; then \
		echo "PostgreSQL run against $$url"; \
		TRACKER_ENV=testing TEST_DATABASE_URL="$$url" $(PYTEST) $(FEATURES) && \
		TRACKER_ENV=testing TEST_DATABASE_URL="$$url" $(PYTEST) tests/reliability; \
	elif [ -n "$$REQUIRE_POSTGRES" ]; then \
		echo "PostgreSQL is required (REQUIRE_POSTGRES=1) but $$url does not answer" >&2; exit 1; \
	else \
		echo "PostgreSQL not reachable at $$url: PostgreSQL run skipped"; \
	fi

test-browser: $(VENV)/.test-installed
	@command -v chromium >/dev/null 2>&1 || { echo "Installing Debian chromium for browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	TRACKER_ENV=testing $(PYTEST) -m browser

vendor:
	scripts/vendor-assets.sh

clean:
	rm -rf $(VENV) instance/tracker.db* .pytest_cache

bench: $(VENV)/.test-installed
	@command -v wrk >/dev/null 2>&1 || { echo "Installing Debian wrk for the benchmark"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python bench/run.py
