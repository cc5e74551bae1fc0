"""Celery tasks (imported only when DISPATCH is "celery"; Celery is an optional extra).

``deliver_outbox`` drains what is due; it is enqueued after each commit that recorded
events, and should also run periodically (Celery beat) to pick up retries and anything
whose task was lost::

    app.conf.beat_schedule = {
        "tracking-adapter-sweep": {"task": "django_app.deliver_outbox", "schedule": 30.0},
    }

Any number of workers on any number of hosts can run it: claims never overlap.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from django_app.conf import app_settings
from django_app.dispatch import drain

logger = logging.getLogger("django_app.tasks")

MAX_BATCHES_PER_TASK = 20  # keep one task short; the next task or sweep goes on from there


@shared_task(name="django_app.deliver_outbox", ignore_result=True)
def deliver_outbox(max_batches: int = MAX_BATCHES_PER_TASK) -> dict[str, Any]:
    stats = drain(max_batches=max_batches)
    if stats.batches >= max_batches:
        enqueue_delivery()  # more is due: continue in a fresh task rather than hog a worker
    return stats.__dict__


def enqueue_delivery() -> None:
    """Ask a Celery worker to drain; a broker outage is logged, never raised to the caller."""
    options: dict[str, Any] = {}
    if app_settings.CELERY_QUEUE:
        options["queue"] = app_settings.CELERY_QUEUE
    try:
        deliver_outbox.apply_async(**options)
    except Exception:
        logger.exception(
            "could not enqueue django_app.deliver_outbox; events stay pending until the "
            "periodic sweep (Celery beat) or manage.py deliver_events picks them up"
        )
