"""The Celery app of the drain benchmark: Redis database 13, a queue of its own."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

QUEUE = "bench-tracking"

app = Celery("bench")
app.conf.update(
    broker_url=os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/13"),
    task_default_queue=QUEUE,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
app.autodiscover_tasks(["django_app"])
