# The README's two commands: `make demo` and `make test`. Each sets up its own virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck pytest bench bench-memory clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e . --group dev
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m example_project.demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy tracking_adapter django_app

# The whole suite on SQLite, then the Django suite again on PostgreSQL (127.0.0.1:5432;
# skipped with a reason where it is absent, required under CI=true).
pytest: $(STAMP)
	$(BIN)/pytest
	TEST_DATABASE=postgres $(BIN)/pytest tests/django

# Benchmarks against PostgreSQL on 127.0.0.1:5432 (database tracking_bench): see README.
bench: $(STAMP)
	$(BIN)/python -m bench.run

# Peak memory of the backfill at 1,000,000 rows (seeding alone takes a few minutes).
bench-memory: $(STAMP)
	$(BIN)/python -m bench.run --n 1000000 --repeat 1 --only backfill --contenders project,project-1-process --out bench/results/memory-1m.md

clean:
	rm -rf $(VENV) .nox .pytest_cache .mypy_cache .ruff_cache build *.egg-info
