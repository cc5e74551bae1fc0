"""The bounded nudge: after a commit, ask a task engine to deliver, without waiting on it.

The events are already in the outbox when the nudge is sent, so a broker or queue that
hangs or refuses must not hold the host's request: the publish happens on one background
thread per nudger and process, the committing thread waits for it at most
``NUDGE_TIMEOUT`` (and not at all while publishing fails or one is in flight), and what a
lost nudge would have delivered, the periodic sweep delivers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("django_app.dispatch")

STUCK_AFTER = 10.0  # seconds a publish may take before the log says the broker is stuck
_nudgers: list[Nudger] = []


class Nudger:
    """Runs ``publish`` callables on one daemon thread. Nudges that arrive while a publish
    is in flight are folded into one more publish after it (the latest callable): a
    thousand commits during a broker hang cost one waiting thread, not a thousand.

    ``what`` names what is published, ``hint`` what happens to the events meanwhile, for
    the log lines."""

    def __init__(self, what: str, hint: str) -> None:
        self.what = what
        self.hint = hint
        self._reset()
        _nudgers.append(self)

    def _reset(self) -> None:
        # Also run in a forked child: the parent's thread does not exist there, and the
        # parent may have held this lock at the fork.
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._requested = 0  # nudges asked for
        self._done = 0  # nudges covered by a finished publish
        self._request: Callable[[], object] | None = None
        self._in_flight_since: float | None = None
        self._failing = False
        self._failures = 0
        self._stuck_logged = False

    def nudge(self, publish: Callable[[], object], *, timeout: float) -> bool:
        """Hand a publish to the thread; True if it finished (well or not) within timeout."""
        with self._cond:
            self._requested += 1
            ticket = self._requested
            self._request = publish
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
                "a publish of %s has not finished for %.0fs; saves go on without waiting "
                "and %s. Check the broker or queue and its connection timeouts",
                self.what,
                waited,
                self.hint,
            )

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._requested > self._done)
                ticket = self._requested
                assert self._request is not None
                publish = self._request
                self._in_flight_since = time.monotonic()
            ok = self._publish(publish)
            with self._cond:
                self._done = ticket
                self._in_flight_since = None
                self._stuck_logged = False
                self._failing = not ok
                self._cond.notify_all()

    def _publish(self, publish: Callable[[], object]) -> bool:
        try:
            publish()
        except Exception:
            self._failures += 1
            if self._failures == 1:  # once per outage, not once per commit
                logger.exception(
                    "could not enqueue %s; %s. Further failures are not logged until a "
                    "publish succeeds",
                    self.what,
                    self.hint,
                )
            return False
        if self._failures:
            logger.warning(
                "enqueueing %s works again after %d failed attempt(s)", self.what, self._failures
            )
            self._failures = 0
        return True


def _after_fork_in_child() -> None:
    for nudger in _nudgers:  # the parent's threads do not exist in the child
        nudger._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
