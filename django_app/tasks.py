"""Celery tasks (imported only when DISPATCH is "celery"; Celery is an optional extra).

``deliver_outbox`` drains what is due; it is enqueued after each commit that recorded
events, and should also run periodically (Celery beat) to pick up retries and anything
whose task was lost::

    app.conf.beat_schedule = {
        "tracking-adapter-sweep": {"task": "django_app.deliver_outbox", "schedule": 30.0},
    }

Any number of workers on any number of hosts can run it: claims never overlap.

The task sent after a commit is only a nudge: the events are already in the outbox, so a
broker that hangs or refuses must not hold the host's request. The publish happens on one
background thread per process; the committing thread waits for it at most
``NUDGE_TIMEOUT`` seconds (and not at all while the broker is failing), and whatever a lost
nudge would have delivered, the sweep delivers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import current_app, shared_task

from django_app.conf import app_settings
from django_app.dispatch import drain

logger = logging.getLogger("django_app.tasks")

MAX_BATCHES_PER_TASK = 20  # keep one task short; the next task or sweep goes on from there
STUCK_AFTER = 10.0  # seconds a publish may take before the log says the broker is stuck
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
        if task.app.conf.task_always_eager:
            task.apply_async(**options)  # eager means "run it now, here": no thread
            return
        nudger.nudge(task, options, timeout=float(app_settings.NUDGE_TIMEOUT))
    except Exception:
        logger.exception("could not enqueue django_app.deliver_outbox; %s", SWEEP_HINT)


class Nudger:
    """Publishes ``deliver_outbox`` from one daemon thread. Nudges that arrive while a
    publish is in flight are folded into one more publish after it: a thousand commits
    during a broker hang cost one waiting thread, not a thousand."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Also run in a forked child: the parent's thread does not exist there, and the
        # parent may have held this lock at the fork.
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._requested = 0  # nudges asked for
        self._done = 0  # nudges covered by a finished publish
        self._request: tuple[Any, dict[str, Any]] | None = None
        self._in_flight_since: float | None = None
        self._failing = False
        self._failures = 0
        self._stuck_logged = False

    def nudge(self, task: Any, options: dict[str, Any], *, timeout: float) -> bool:
        """Hand a publish to the thread; True if it finished (well or not) within timeout."""
        with self._cond:
            self._requested += 1
            ticket = self._requested
            self._request = (task, options)
            busy = self._in_flight_since is not None
            if busy:
                self._warn_if_stuck()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="tracking-adapter-nudge", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
            if busy or self._failing or timeout <= 0:
                return False
            return self._cond.wait_for(lambda: self._done >= ticket, timeout)

    def _warn_if_stuck(self) -> None:
        assert self._in_flight_since is not None
        waited = time.monotonic() - self._in_flight_since
        if waited >= STUCK_AFTER and not self._stuck_logged:
            self._stuck_logged = True
            logger.error(
                "the Celery broker has not answered a publish of django_app.deliver_outbox "
                "for %.0fs; saves go on without waiting and %s. Check the broker "
                "(CELERY_BROKER_URL) and its connection timeouts",
                waited,
                SWEEP_HINT,
            )

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._requested > self._done)
                ticket = self._requested
                assert self._request is not None
                task, options = self._request
                self._in_flight_since = time.monotonic()
            ok = self._publish(task, options)
            with self._cond:
                self._done = ticket
                self._in_flight_since = None
                self._stuck_logged = False
                self._failing = not ok
                self._cond.notify_all()

    def _publish(self, task: Any, options: dict[str, Any]) -> bool:
        try:
            task.apply_async(**options)
        except Exception:
            self._failures += 1
            if self._failures == 1:  # once per outage, not once per commit
                logger.exception(
                    "could not enqueue django_app.deliver_outbox; %s. Further failures are "
                    "not logged until a publish succeeds",
                    SWEEP_HINT,
                )
            return False
        if self._failures:
            logger.warning(
                "enqueueing django_app.deliver_outbox works again after %d failed attempt(s)",
                self._failures,
            )
            self._failures = 0
        return True


nudger = Nudger()


def _after_fork_in_child() -> None:
    nudger._reset()  # the module's nudger at the time of the fork (tests swap it)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
