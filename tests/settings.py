"""Small Django settings for the test suite.

``TEST_DATABASE`` picks the database (``make test`` runs every one):

- unset (or ``sqlite``): SQLite, a file per process (``SQLITE_PATH`` to choose it);
- ``postgres``: PostgreSQL at 127.0.0.1:5432 (PGHOST/PGPORT/PGUSER/PGDATABASE, default
  user postgres, database test) with psycopg 3, or with psycopg2 when
  ``TEST_PG_DRIVER=psycopg2``: then psycopg 3 is hidden from this process, so Django and
  the library fall back to psycopg2 though both are installed;
- ``mariadb``: MariaDB at 127.0.0.1:3306 (MARIADB_HOST/MARIADB_PORT/MARIADB_USER/
  MARIADB_PASSWORD/MARIADB_DATABASE, default root, no password, database test) with
  mysqlclient.

The test database is created per process (``TEST_DB_NAME`` to choose its name), so
concurrent runs do not collide. ``TEST_DATABASE_NAME`` connects to a database as it is,
not a test database made from it: the worker subprocesses of a test use the test's
database that way (``tests.django.helpers.worker_env``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import tempfile
from typing import Any

from django.core.exceptions import ImproperlyConfigured

DATABASE = os.environ.get("TEST_DATABASE") or "sqlite"
PG_DRIVER = os.environ.get("TEST_PG_DRIVER") or "psycopg"
if DATABASE not in ("sqlite", "postgres", "mariadb"):
    raise ImproperlyConfigured(f"TEST_DATABASE={DATABASE!r}: use sqlite, postgres or mariadb")
if PG_DRIVER not in ("psycopg", "psycopg2"):
    raise ImproperlyConfigured(f"TEST_PG_DRIVER={PG_DRIVER!r}: use psycopg or psycopg2")
if DATABASE == "postgres" and PG_DRIVER == "psycopg2":
    if sys.modules.get("psycopg") is not None:
        raise ImproperlyConfigured(
            "TEST_PG_DRIVER=psycopg2, but psycopg 3 was imported before the settings"
        )
    # ``import psycopg`` now raises ImportError in this process (Django's backend, the
    # library's driver checks, the tests), as if only psycopg2 were installed.
    sys.modules["psycopg"] = None  # type: ignore[assignment]

# Why the pass's driver cannot be imported, or None. Then DATABASES is Django's dummy
# backend, which fails on any use (Django loads the backend as soon as models are
# imported, so a missing driver would otherwise stop pytest before tests/conftest.py
# can skip the pass with this reason, or fail it under CI=true).
_HOW_TO_INSTALL = {
    "psycopg": "pip install 'psycopg[binary]' (in the test group)",
    "psycopg2": "pip install psycopg2-binary (in the dev group)",
    "MySQLdb": "mysqlclient builds against MariaDB's C headers: apt-get install "
    "libmariadb-dev pkg-config, then pip install --group mariadb (make test does both where "
    "it can)",
}
TEST_DRIVER_MISSING: str | None = None
_DRIVER = {"postgres": PG_DRIVER, "mariadb": "MySQLdb"}.get(DATABASE)
if _DRIVER:
    try:
        importlib.import_module(_DRIVER)
    except ImportError as error:
        TEST_DRIVER_MISSING = (
            f"TEST_DATABASE={DATABASE} but its driver {_DRIVER} cannot be imported ({error}): "
            f"{_HOW_TO_INSTALL[_DRIVER]}"
        )

_NAME = os.environ.get("TEST_DATABASE_NAME")  # a worker subprocess: the test's database
_TEST_NAME = os.environ.get("TEST_DB_NAME") or f"test_tracking_adapter_{os.getpid()}"

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_app",
    "tests.testapp",
]
# The optional extra "health" (django_app.health): its HTML page and its health_check
# command need the app; tests/django/test_monitoring.py skips without it, fails under CI.
if importlib.util.find_spec("health_check") is not None:
    INSTALLED_APPS.append("health_check")

# DISPATCH "tasks": the django-tasks backport (Django 5.2) and its database queue, whose
# db_worker the tests start; without them those tests skip (fail under CI=true).
if importlib.util.find_spec("django_tasks") and importlib.util.find_spec("django_tasks_db"):
    INSTALLED_APPS += ["django_tasks", "django_tasks_db"]
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

DATABASES: dict[str, dict[str, Any]]
if TEST_DRIVER_MISSING:
    DATABASES = {"default": {"ENGINE": "django.db.backends.dummy"}}
elif DATABASE == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "NAME": _NAME or os.environ.get("PGDATABASE", "test"),
            "TEST": {"NAME": _TEST_NAME},
        }
    }
elif DATABASE == "mariadb":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": os.environ.get("MARIADB_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MARIADB_PORT", "3306"),
            "USER": os.environ.get("MARIADB_USER", "root"),
            "PASSWORD": os.environ.get("MARIADB_PASSWORD", ""),
            "NAME": _NAME or os.environ.get("MARIADB_DATABASE", "test"),
            "OPTIONS": {"charset": "utf8mb4"},
            # The server's default collation (utf8mb4_general_ci on Debian), as a host has.
            "TEST": {"NAME": _TEST_NAME, "CHARSET": "utf8mb4"},
        }
    }
else:
    # A file, not :memory:, so a Celery worker thread or a worker subprocess can share it
    # with ordinary SQLite locking (shared-cache memory databases fail with "table is locked").
    _SQLITE = (
        _NAME
        or os.environ.get("SQLITE_PATH")
        or os.path.join(tempfile.gettempdir(), f"tracking_adapter_test_{os.getpid()}.sqlite3")
    )
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _SQLITE,
            "TEST": {"NAME": _SQLITE},
            # As the README advises for concurrent writers (a Celery worker thread, workers).
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }

# Worker processes started by the tests deliver to the test's loopback receiver.
_ENDPOINT = os.environ.get("TRACKING_TEST_ENDPOINT")
TRACKING_ADAPTER: dict[str, Any] = {
    "SINK": "thrivestack" if _ENDPOINT else "memory",
    "SINK_OPTIONS": {"api_key": "test-api-key", "endpoint": _ENDPOINT} if _ENDPOINT else {},
    "DISPATCH": "worker",
    "POLL_INTERVAL": 0.2,
    "SOURCE": {
        "MODEL": "testapp.Profile",
        "USER_ID": "tracking_user_id",
        "GROUP_ID": "account.external_id",
        "TIMESTAMP": "enriched_at",
        "PROPERTIES": {
            "enrichment_first_name": "first_name",
            "enrichment_last_name": "last_name",
            "enrichment_city": "city",
            "enrichment_country": "country",
            "enrichment_employment_name": "company",
            "enrichment_employment_title": "title",
            "enrichment_phone": "phone",
        },
    },
}
if os.environ.get("TRACKING_TEST_LEASE_SECONDS"):  # worker subprocesses of the fault tests
    _lease = float(os.environ["TRACKING_TEST_LEASE_SECONDS"])
    TRACKING_ADAPTER["LEASE_SECONDS"] = _lease
    if _ENDPOINT:  # one request must fit in the lease (check E020)
        TRACKING_ADAPTER["SINK_OPTIONS"] = {
            "api_key": "test-api-key",
            "endpoint": _ENDPOINT,
            "deadline": _lease / 2,
        }
