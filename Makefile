# The README's two commands: `make demo` and `make test`. Each sets up its own virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck pytest mariadb-driver browser bench bench-memory clean

DEMO_STAMP := $(VENV)/.demo-stamp

# The virtualenv itself, with a pip that knows dependency groups (--group).
$(BIN)/python:
	@echo "==> creating the virtualenv $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"

# The demo needs the package and Django, nothing of the development toolset.
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	@echo "==> installing tracking-adapter and Django into $(VENV) (the demo's needs)"
	$(BIN)/python -m pip install --progress-bar on --no-input -e ".[django]"
	touch $(DEMO_STAMP)

# Everything the tests, the linters and the type checker need (make test).
$(STAMP): pyproject.toml | $(BIN)/python
	@echo "==> installing tracking-adapter and its development toolset into $(VENV)"
	$(BIN)/python -m pip install --progress-bar on --no-input -e . --group dev
	touch $(STAMP)

demo: $(DEMO_STAMP)
	@echo "==> running the demo (example_project/demo.py)"
	$(BIN)/python -m example_project.demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# django-stubs imports tests.settings; PYTHONPATH puts this checkout's tests first, ahead of
# a top-level `tests` package some wheels install (request-id-django-log, of the bench group).
typecheck: $(STAMP)
	PYTHONPATH=. $(BIN)/mypy tracking_adapter django_app

# The whole suite on SQLite, then the Django suite again on PostgreSQL (127.0.0.1:5432) with
# psycopg 3 and with psycopg2, and on MariaDB (127.0.0.1:3306). A pass whose server or
# driver is absent skips with the reason; under CI=true it fails.
pytest: $(STAMP) mariadb-driver browser
	$(BIN)/pytest
	TEST_DATABASE=postgres $(BIN)/pytest tests/django
	TEST_DATABASE=postgres TEST_PG_DRIVER=psycopg2 $(BIN)/pytest tests/django
	TEST_DATABASE=mariadb $(BIN)/pytest tests/django

# The MariaDB pass's driver, mysqlclient, is not in the dev group: it builds from source
# against MariaDB's C headers. Installed here, with the Debian packages it needs where this
# can (root and apt-get); where it cannot, this says why and the MariaDB pass skips.
MARIADB_DEBS := libmariadb-dev pkg-config
mariadb-driver: $(STAMP)
	@$(BIN)/python -c "import MySQLdb" 2>/dev/null || { \
	  if ! pkg-config --exists libmariadb 2>/dev/null; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      echo "apt-get install $(MARIADB_DEBS) (to build mysqlclient)"; \
	      export DEBIAN_FRONTEND=noninteractive; \
	      apt-get install -y -qq $(MARIADB_DEBS) >/dev/null \
	        || { apt-get update -qq && apt-get install -y -qq $(MARIADB_DEBS) >/dev/null; } \
	        || echo "mariadb-driver: apt-get could not install $(MARIADB_DEBS)"; \
	    else \
	      echo "mariadb-driver: mysqlclient needs $(MARIADB_DEBS) (or MariaDB's headers and" \
	        "MYSQLCLIENT_CFLAGS/MYSQLCLIENT_LDFLAGS), which this cannot install (not root, or" \
	        "no apt-get); trying pip anyway"; \
	    fi; \
	  fi; \
	  echo "pip install --group mariadb (mysqlclient)"; \
	  $(BIN)/python -m pip install --quiet --group mariadb \
	    || echo "mariadb-driver: mysqlclient did not install: the MariaDB pass skips (fails under CI=true)"; \
	}

# The admin's browser test (tests/django/test_admin_browser.py) drives Debian's chromium with
# Playwright (test group); Playwright's own browser download is not used. Installed here where
# this can (root and apt-get); where it cannot, this says why and the browser test skips.
CHROMIUM ?= /usr/bin/chromium
CHROMIUM_DEBS := chromium fonts-liberation
browser: $(STAMP)
	@[ -x $(CHROMIUM) ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "apt-get install $(CHROMIUM_DEBS) (for the admin's browser test)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq --no-install-recommends $(CHROMIUM_DEBS) >/dev/null \
	      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $(CHROMIUM_DEBS) >/dev/null; } \
	      || echo "browser: apt-get could not install $(CHROMIUM_DEBS): the browser test skips (fails under CI=true)"; \
	  else \
	    echo "browser: the browser test needs Debian's chromium at $(CHROMIUM), which this cannot" \
	      "install (not root, or no apt-get): it skips (fails under CI=true)"; \
	  fi; \
	}

# Benchmarks against PostgreSQL on 127.0.0.1:5432 (database tracking_bench): see README.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --group bench
	$(BIN)/python -m bench.run

# Peak memory of the backfill at 1,000,000 rows (seeding alone takes a few minutes).
bench-memory: $(STAMP)
	$(BIN)/python -m bench.run --n 1000000 --repeat 1 --only backfill --contenders project,project-1-process --out bench/results/memory-1m.md

clean:
	rm -rf $(VENV) .nox .pytest_cache .mypy_cache .ruff_cache build *.egg-info
