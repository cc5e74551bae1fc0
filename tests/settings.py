"""Small Django settings for the test suite.

SQLite by default; ``TEST_DATABASE=postgres`` runs the same suite on PostgreSQL at
127.0.0.1:5432 (user and database from PGUSER/PGDATABASE, default postgres/test).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

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

if os.environ.get("TEST_DATABASE") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "NAME": os.environ.get("PGDATABASE", "test"),
            # Subprocess workers in tests connect to the test database by this name.
            "TEST": {
                "NAME": os.environ.get("TEST_DB_NAME") or f"test_tracking_adapter_{os.getpid()}"
            },
        }
    }
else:
    # A file, not :memory:, so a Celery worker thread or a worker subprocess can share it
    # with ordinary SQLite locking (shared-cache memory databases fail with "table is locked").
    _SQLITE = os.environ.get("SQLITE_PATH") or os.path.join(
        tempfile.gettempdir(), f"tracking_adapter_test_{os.getpid()}.sqlite3"
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
