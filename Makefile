# Two commands do all set-up on a fresh machine with Python 3.11+:
#   make run   - venv, install requirements.lock, migrate, load catalog (+ demo data on first run), serve on :8000
#   make test  - install requirements.lock + requirements-test.lock (and Debian chromium for browser tests),
#                lint, run the suite with coverage
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
WORKERS ?= 2
FLASK := $(BIN)/flask --app wsgi
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
export TRACKER_ENV ?= development

.PHONY: run setup test test-features test-sqlite test-postgres test-browser lint sbom lock vendor clean bench

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found %s); set PYTHON=python3.11" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Exactly the locked versions, then this project without resolving anything again; `pip check` fails
# when pyproject.toml names a dependency the lock does not have yet (run `make lock`).
$(VENV)/.installed: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/pip check
	@touch $@

$(VENV)/.test-installed: requirements-test.lock $(VENV)/.installed
	$(BIN)/pip install -q -r requirements.lock -r requirements-test.lock
	@touch $@

# instance/tracker-env remembers that this checkout is a development installation, so the commands in
# the README work without TRACKER_ENV (tracker/config.py reads it when TRACKER_ENV is unset).
setup: $(VENV)/.installed
	@mkdir -p instance
	@if [ "$(TRACKER_ENV)" = development ]; then echo development > instance/tracker-env; \
	else rm -f instance/tracker-env; fi
	$(FLASK) db upgrade
	$(FLASK) catalog load
	$(FLASK) seed demo

# The address and the demo accounts are printed last, in a frame (scripts/gunicorn_run.py);
# ACCESS_LOG=1 make run shows the access log (never static files).
run: setup
	$(BIN)/gunicorn --config scripts/gunicorn_run.py --bind 127.0.0.1:$(PORT) --workers $(WORKERS) wsgi:app

lint: $(VENV)/.test-installed
	$(BIN)/ruff check tracker tests wsgi.py bench scripts
	$(BIN)/bandit -q -r tracker -lll
	scripts/audit_deps.sh
	@$(MAKE) --no-print-directory sbom

# CycloneDX software bill of materials of what runs in production (offline, from requirements.lock).
sbom: $(VENV)/.test-installed
	@mkdir -p build
	@$(BIN)/python -W ignore::UserWarning -m cyclonedx_py requirements requirements.lock --pyproject pyproject.toml \
		--of JSON --output-reproducible --no-validate -o build/sbom.cdx.json 2>/dev/null
	@echo "SBOM: build/sbom.cdx.json ($$(grep -c '"purl"' build/sbom.cdx.json) components)"

# requirements.lock: what `pip install .` needs (make run, pip-audit, the SBOM); requirements-test.lock:
# what the test extra adds, resolved with the runtime pins as constraints. Each is resolved from the
# package index in a throwaway venv, never in .venv.
LOCK_VENVS := /tmp/decree-tracker-lock
lock:
	rm -rf $(LOCK_VENVS)
	$(PYTHON) -m venv $(LOCK_VENVS)/runtime
	$(LOCK_VENVS)/runtime/bin/pip install -q --upgrade pip
	$(LOCK_VENVS)/runtime/bin/pip install -q .
	{ echo "# make lock: what pip install . needs"; \
	  $(LOCK_VENVS)/runtime/bin/pip freeze --exclude decree-tracker; } > requirements.lock
	$(PYTHON) -m venv $(LOCK_VENVS)/test
	$(LOCK_VENVS)/test/bin/pip install -q --upgrade pip
	$(LOCK_VENVS)/test/bin/pip install -q -c requirements.lock '.[test]'
	{ echo "# make lock: what the test extra adds to requirements.lock"; \
	  $(LOCK_VENVS)/test/bin/pip freeze --exclude decree-tracker | grep -vxF -f requirements.lock; } \
		> requirements-test.lock
	rm -rf $(LOCK_VENVS)

# SQLite always; PostgreSQL when TEST_DATABASE_URL is given or the local server answers
# (CI sets REQUIRE_POSTGRES=1 so a missing server fails instead of skipping).
# The browser tests (their own SQLite file and port) run beside the feature suites, which keep both cores
# busy while Chromium mostly waits; the reliability tests load a gunicorn server and time it, so they run
# alone afterwards. `make test-sqlite`, `test-postgres` and `test-browser` still run one part each.
test: $(VENV)/.test-installed lint
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-browser test-features
	@$(MAKE) --no-print-directory -j1 SUITE=reliability test-sqlite test-postgres

test-features: $(VENV)/.test-installed
	@$(MAKE) --no-print-directory -j1 SUITE=features test-sqlite test-postgres

# Feature and security tests run on two processes (pytest-xdist). SUITE=features or SUITE=reliability
# runs one half of test-sqlite / test-postgres; empty runs both.
SUITE ?=
TEST_PROCESSES ?= 2
PYTEST := $(BIN)/pytest -q -p no:cacheprovider
FEATURES := -m "not browser" --ignore=tests/reliability -n $(TEST_PROCESSES)

# Line and branch coverage of tracker/ by the SQLite feature run; the floor is in pyproject.toml.
COVERAGE := --cov=tracker --cov-branch --cov-report=term:skip-covered

test-sqlite: $(VENV)/.test-installed
	@if [ "$(SUITE)" != reliability ]; then set -x; \
		env -u TEST_DATABASE_URL TRACKER_ENV=testing $(PYTEST) $(FEATURES) $(COVERAGE); fi
	@if [ "$(SUITE)" != features ]; then set -x; \
		env -u TEST_DATABASE_URL TRACKER_ENV=testing $(PYTEST) tests/reliability; fi

# The app under test (and the reliability tests' gunicorn) connects as PG_APP_ROLE, which may only SELECT and
# INSERT on the audit tables (scripts/db_roles.py creates it); the last step proves UPDATE/DELETE/TRUNCATE/ALTER
# are refused to it.
PG_APP_ROLE ?= tracker_app
test-postgres: $(VENV)/.test-installed
	@url="$${TEST_DATABASE_URL:-$(PG_TEST_URL)}"; \
	if $(BIN)/python scripts/db_ready.py "$$url"; then \
		echo "PostgreSQL run against $$url, the app as $(PG_APP_ROLE)"; \
		$(BIN)/python scripts/db_roles.py "$$url" --app $(PG_APP_ROLE) && \
		{ [ "$(SUITE)" = reliability ] || \
		  TRACKER_ENV=testing TEST_DATABASE_URL="$$url" TEST_APP_ROLE=$(PG_APP_ROLE) $(PYTEST) $(FEATURES); } && \
		{ [ "$(SUITE)" = features ] || { \
		  TRACKER_ENV=testing TEST_DATABASE_URL="$$url" TEST_APP_ROLE=$(PG_APP_ROLE) $(PYTEST) tests/reliability && \
		  $(BIN)/python scripts/db_roles.py "$$url" --app $(PG_APP_ROLE) && \
		  $(BIN)/python scripts/db_roles.py "$$url" --app $(PG_APP_ROLE) --check; }; }; \
	elif [ -n "$$REQUIRE_POSTGRES" ]; then \
		echo "PostgreSQL is required (REQUIRE_POSTGRES=1) but $$url does not answer" >&2; exit 1; \
	else \
		echo "PostgreSQL not reachable at $$url: PostgreSQL run skipped"; \
	fi

test-browser: $(VENV)/.test-installed
	@command -v chromium >/dev/null 2>&1 || { echo "Installing Debian chromium for browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	env -u TEST_DATABASE_URL TRACKER_ENV=testing $(PYTEST) -m browser

vendor:
	scripts/vendor-assets.sh

clean:
	rm -rf $(VENV) instance/tracker.db* instance/demo-accounts.* .pytest_cache .coverage .coverage.*

bench: $(VENV)/.test-installed
	@command -v wrk >/dev/null 2>&1 || { echo "Installing Debian wrk for the benchmark"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python bench/run.py
