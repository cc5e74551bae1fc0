"""The Celery app a host project would have, pointed at the local Redis broker (db 15)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("tests")
app.conf.update(
    broker_url=os.environ.get("CELERY_TEST_BROKER", "redis://127.0.0.1:6379/15"),
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # Its own queue per test process: two suites running at once on one machine share the
    # Redis database, and one's worker must not take the other's tasks.
    task_default_queue=f"tracking-tests-{os.getpid()}",
)
app.autodiscover_tasks(["django_app"])
