"""Django settings for the benchmarks: the example project's models on PostgreSQL."""

from __future__ import annotations

import importlib.util
import os

from example_project.settings import TRACKING_ADAPTER as EXAMPLE_TRACKING_ADAPTER

SECRET_KEY = "bench-not-secret"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_app",
    "example_project.profiles",
]
# The drain benchmark's db_worker engine: django-tasks-db's database queue.
if importlib.util.find_spec("django_tasks") and importlib.util.find_spec("django_tasks_db"):
    INSTALLED_APPS += ["django_tasks", "django_tasks_db"]
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
# The save path's django-outbox-pattern contender (bench/savepath.py), where installed.
if importlib.util.find_spec("django_outbox_pattern"):
    INSTALLED_APPS += ["django_outbox_pattern"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "NAME": os.environ.get("BENCH_DB", "tracking_bench"),
    }
}
BENCH_ENDPOINT = os.environ.get("BENCH_ENDPOINT", "http://127.0.0.1:9")
BENCH_API_KEY = "bench-api-key"
BENCH_WRITE_KEY = "bench-write-key"
TRACKING_ADAPTER = {
    **EXAMPLE_TRACKING_ADAPTER,
    "SINK": "thrivestack",
    "SINK_OPTIONS": {"api_key": BENCH_API_KEY, "endpoint": f"{BENCH_ENDPOINT}/api"},
    "DISPATCH": "worker",
    "BATCH_SIZE": 1000,
}
