"""Delivery through Django's Tasks framework (DISPATCH "tasks").

``django.tasks`` from Django 6.0; on Django 5.2 the ``django-tasks`` backport, which has
the same API. Any Tasks backend runs it: the database queue of ``django-tasks-db`` (its
``db_worker`` command is the worker), RQ, Redis, Celery or a cloud queue. The task is
enqueued after each commit that recorded events, on the backend ``TASKS_BACKEND`` names
(default ``"default"``) and the queue ``TASKS_QUEUE`` names (default: the backend's default
queue), through a bounded nudge; and it should also run periodically (the backend's own
scheduler, or cron running ``manage.py deliver_events --once``) to pick up retries and
anything whose nudge was lost. Any number of workers can run it: claims never overlap.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connections

from django_app.conf import SETTING_NAME, app_settings
from django_app.dispatch import drain
from django_app.nudge import Nudger

try:  # Django 6.0+
    from django.tasks import DEFAULT_TASK_QUEUE_NAME, task
except ImportError:  # Django 5.2 with the django-tasks backport
    from django_tasks import DEFAULT_TASK_QUEUE_NAME, task  # type: ignore[no-redef]

logger = logging.getLogger("django_app.dispatch")

MAX_BATCHES_PER_TASK = 20  # keep one task short; the next task or sweep goes on from there
SWEEP_HINT = (
    "events stay pending until the next delivery task, a periodic run of "
    "manage.py deliver_events --once, or a worker picks them up"
)


@task
def deliver_outbox(max_batches: int = MAX_BATCHES_PER_TASK) -> dict[str, int]:
    stats = drain(max_batches=max_batches)
    if stats.batches >= max_batches:
        enqueue_delivery()  # more is due: continue in a fresh task rather than hog a worker
    return dict(stats.__dict__)


def configured_task() -> Any:
    """The delivery task on the backend and queue the settings name."""
    return deliver_outbox.using(
        backend=app_settings.TASKS_BACKEND,
        queue_name=app_settings.TASKS_QUEUE or DEFAULT_TASK_QUEUE_NAME,
    )


def _is_immediate(backend: Any) -> bool:
    return type(backend).__name__ == "ImmediateBackend"


def _enqueue(configured: Any) -> None:
    try:
        configured.enqueue()
    finally:
        # This runs on the nudger's thread: a database-backed queue opened a connection
        # of that thread's own, which nothing else would ever close.
        for connection in connections.all(initialized_only=True):
            connection.close()


def enqueue_delivery() -> None:
    """Enqueue the delivery task, waiting at most NUDGE_TIMEOUT; never raises."""
    try:
        configured = configured_task()
        if _is_immediate(configured.get_backend()):
            configured.enqueue()  # the immediate backend means "run it now, here"
            return
        nudger.nudge(partial(_enqueue, configured), timeout=float(app_settings.NUDGE_TIMEOUT))
    except Exception:
        logger.exception("could not enqueue %s; %s", nudger.what, SWEEP_HINT)


def backend_problem() -> tuple[str, str] | None:
    """Why the configured Tasks backend cannot take the task, or None."""
    name = app_settings.TASKS_BACKEND
    defined = getattr(settings, "TASKS", None)
    if defined is not None and name not in defined:
        return (
            f"{SETTING_NAME}['TASKS_BACKEND'] is {name!r}, which settings.TASKS does not "
            f"define (it has {', '.join(map(repr, defined)) or 'none'})",
            "Name a backend of settings.TASKS, or define it.",
        )
    try:
        configured = configured_task()
        configured.get_backend().validate_task(configured)
    except Exception as exc:
        return (
            f"the Tasks backend {app_settings.TASKS_BACKEND!r} refuses the delivery task: {exc}",
            f"Check settings.TASKS[{app_settings.TASKS_BACKEND!r}] (its QUEUES must include "
            f"{SETTING_NAME}['TASKS_QUEUE']).",
        )
    return None


nudger = Nudger("the delivery task on Django's Tasks framework", SWEEP_HINT)
