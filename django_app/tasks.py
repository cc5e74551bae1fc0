"""Celery tasks (imported only when DISPATCH is "celery"; Celery is an optional extra).

``deliver_outbox`` drains what is due; it is enqueued after each commit that recorded
events, and should also run periodically (Celery beat) to pick up retries and anything
whose task was lost::

    CELERY_BEAT_SCHEDULE = {
        "tracking-adapter-sweep": {
            "task": "django_app.deliver_outbox",
            "schedule": 30.0,
            "options": {"queue": "tracking"},  # the CELERY_QUEUE, when one is set
        },
    }

Any number of workers on any number of hosts can run it: claims never overlap.

The task sent after a commit is only a nudge, bounded in time (``django_app.nudge``).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from celery import current_app, shared_task

from django_app.checks import celery_bootstrap_hint, is_celery_fallback_app
from django_app.conf import app_settings
from django_app.dispatch import drain
from django_app.nudge import Nudger

logger = logging.getLogger("django_app.tasks")

MAX_BATCHES_PER_TASK = 20  # keep one task short; the next task or sweep goes on from there
SWEEP_HINT = (
    "events stay pending until the periodic sweep (Celery beat running "
    "django_app.deliver_outbox) or manage.py deliver_events picks them up"
)


@shared_task(name="django_app.deliver_outbox", ignore_result=True)
def deliver_outbox(max_batches: int = MAX_BATCHES_PER_TASK) -> dict[str, Any]:
    stats = drain(max_batches=max_batches)
    if stats.batches >= max_batches:
        enqueue_delivery()  # more is due: continue in a fresh task rather than hog a worker
    return stats.__dict__


def enqueue_delivery() -> None:
    """Ask a Celery worker to drain, waiting at most NUDGE_TIMEOUT; never raises."""
    options: dict[str, Any] = {}
    if app_settings.CELERY_QUEUE:
        options["queue"] = app_settings.CELERY_QUEUE
    try:
        # Resolved here, in the caller's thread: Celery's current app is per thread, and the
        # nudger thread would otherwise fall back to Celery's default app.
        task = current_app.tasks[deliver_outbox.name]
        if is_celery_fallback_app(task.app):
            _warn_fallback_app_once()
        if task.app.conf.task_always_eager:
            task.apply_async(**options)  # eager means "run it now, here": no thread
            return
        nudger.nudge(
            partial(task.apply_async, **options), timeout=float(app_settings.NUDGE_TIMEOUT)
        )
    except Exception:
        logger.exception("could not enqueue django_app.deliver_outbox; %s", SWEEP_HINT)


_fallback_warned = False


def _warn_fallback_app_once() -> None:
    global _fallback_warned
    if _fallback_warned:
        return
    _fallback_warned = True  # once per process: a setup problem, not one per commit
    logger.error(
        "django_app.deliver_outbox is sent through Celery's fallback app: no Celery app is "
        "set up in this process, so the task ignores the CELERY_* settings and may reach no "
        "worker; %s. %s",
        SWEEP_HINT,
        celery_bootstrap_hint(),
    )


nudger = Nudger("django_app.deliver_outbox on Celery", SWEEP_HINT)
