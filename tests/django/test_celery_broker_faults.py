"""DISPATCH "celery" under a broker that hangs or refuses: a commit waits at most
NUDGE_TIMEOUT for the publish of the delivery task, and the events stay in the outbox
for the sweep. The hung broker is a real TCP server that accepts and reads but never
answers; the refused one is a loopback port with nothing listening."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from celery import Celery
from django.db import transaction

from django_app import tasks
from django_app.models import OutboxEvent, Status
from django_app.nudge import Nudger
from tests.core.raw_http import RawServer
from tests.django.helpers import make_profile, thrivestack_to

pytestmark = pytest.mark.django_db(transaction=True)

SAVE_BOUND = 1.0  # seconds: NUDGE_TIMEOUT is 0.1; a hung publish held saves past 25 s


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def celery_app_on(url: str) -> Celery:
    app = Celery("broker-fault", broker=url, set_as_current=False)
    app.conf.update(task_ignore_result=True)
    app.finalize(auto=True)  # registers the shared task django_app.deliver_outbox
    return app


@pytest.fixture
def fresh_nudger(monkeypatch: pytest.MonkeyPatch) -> Nudger:
    # Its own name: an earlier test's nudger may still be failing a publish in the
    # background, and its log line must not count as this one's.
    nudger = Nudger(f"{tasks.nudger.what} (test {uuid.uuid4().hex[:8]})", tasks.SWEEP_HINT)
    monkeypatch.setattr(tasks, "nudger", nudger)
    return nudger


@pytest.fixture
def broker_app(request: pytest.FixtureRequest) -> Iterator[Celery]:
    """The current Celery app points at a hung or a refused broker for the test."""
    from celery import _state

    answer = threading.Event()
    with RawServer(lambda connection: answer.wait(30)) as silent:  # reads, never answers
        port = urlsplit(silent.url).port if request.param == "hung" else free_port()
        app = celery_app_on(f"redis://127.0.0.1:{port}/0")
        previous = _state._tls.current_app
        app.set_current()
        try:
            yield app
        finally:
            _state._set_current_app(previous)
            answer.set()  # closes the connections: frees the nudger thread waiting on them


def timed_saves(count: int) -> list[float]:
    durations = []
    for n in range(count):
        started = time.monotonic()
        with transaction.atomic():
            make_profile(city=f"City {n}")
        durations.append(time.monotonic() - started)
    return durations


@pytest.mark.parametrize("broker_app", ["hung", "refused"], indirect=True)
def test_saves_are_not_held_by_a_broker_that_hangs_or_refuses(
    settings: Any, receiver: Any, broker_app: Celery, fresh_nudger: Nudger
) -> None:
    settings.TRACKING_ADAPTER = thrivestack_to(receiver, DISPATCH="celery")
    durations = timed_saves(5)
    assert max(durations) < SAVE_BOUND, durations
    assert sum(durations) < 2 * SAVE_BOUND, durations
    # Nothing is lost: the events wait in the outbox for the sweep.
    assert OutboxEvent.objects.filter(status=Status.PENDING).count() == 5


def test_a_refused_broker_is_logged_once_with_what_to_do(
    settings: Any,
    receiver: Any,
    fresh_nudger: Nudger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from celery import _state

    app = celery_app_on(f"redis://127.0.0.1:{free_port()}/0")
    app.conf.task_publish_retry = False  # fail fast: this test is about the log
    app.conf.broker_transport_options = {"max_retries": 0}
    previous = _state._tls.current_app
    app.set_current()
    settings.TRACKING_ADAPTER = thrivestack_to(receiver, DISPATCH="celery", NUDGE_TIMEOUT=2.0)
    try:
        with caplog.at_level(logging.ERROR, logger="django_app.tasks"):
            timed_saves(4)
            deadline = time.monotonic() + 10
            while fresh_nudger._done < fresh_nudger._requested and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        _state._set_current_app(previous)
    failures = [
        r
        for r in caplog.records
        if "could not enqueue" in r.getMessage() and fresh_nudger.what in r.getMessage()
    ]
    assert len(failures) == 1, [r.getMessage() for r in caplog.records]
    assert "periodic sweep" in failures[0].getMessage()
    assert "deliver_events" in failures[0].getMessage()


def test_a_hung_publish_folds_later_nudges_into_one(fresh_nudger: Nudger) -> None:
    release = threading.Event()
    published: list[int] = []

    class Task:
        def apply_async(self, **options: Any) -> None:
            release.wait(10)
            published.append(1)

    started = time.monotonic()
    for _ in range(50):
        fresh_nudger.nudge(Task().apply_async, timeout=0.1)
    held = time.monotonic() - started
    assert held < SAVE_BOUND  # the first waited 0.1 s; the other 49 did not wait
    release.set()
    deadline = time.monotonic() + 5
    while len(published) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert published == [1, 1]  # the hung one, then one for the 49 that came meanwhile


def test_a_forked_child_nudges_on_its_own_even_if_forked_mid_publish(
    fresh_nudger: Nudger,
) -> None:
    release = threading.Event()

    class HungTask:
        def apply_async(self, **options: Any) -> None:
            release.wait(10)

    class Task:
        def apply_async(self, **options: Any) -> None:
            pass

    fresh_nudger.nudge(HungTask().apply_async, timeout=0.05)
    assert fresh_nudger._in_flight_since is not None  # the parent's publish hangs
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread does not exist here
        code = 1
        try:
            code = 0 if fresh_nudger.nudge(Task().apply_async, timeout=5) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    release.set()
    assert os.waitstatus_to_exitcode(status) == 0


def test_an_eager_celery_app_delivers_in_the_committing_thread(
    settings: Any, receiver: Any, fresh_nudger: Nudger
) -> None:
    from celery import _state

    app = celery_app_on(f"redis://127.0.0.1:{free_port()}/0")  # never contacted
    app.conf.task_always_eager = True  # what host test suites often set
    previous = _state._tls.current_app
    app.set_current()
    settings.TRACKING_ADAPTER = thrivestack_to(receiver, DISPATCH="celery")
    try:
        with transaction.atomic():
            make_profile(city="Pune")
    finally:
        _state._set_current_app(previous)
    assert receiver.item_count == 1  # already sent when the commit returned
    assert OutboxEvent.objects.get().status == Status.DELIVERED
    assert fresh_nudger._thread is None  # no background thread for eager apps


def test_a_task_sent_through_celerys_fallback_app_is_logged_once(
    settings: Any,
    receiver: Any,
    fresh_nudger: Nudger,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from celery import _state

    monkeypatch.setattr(_state._tls, "current_app", None)
    monkeypatch.setattr(_state, "default_app", None)  # as in a project without celery.py
    monkeypatch.setattr(tasks, "_fallback_warned", False)
    fallback = _state.get_current_app()
    fallback.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"  # refused: never reached
    settings.TRACKING_ADAPTER = thrivestack_to(receiver, DISPATCH="celery")
    with caplog.at_level(logging.ERROR, logger="django_app.tasks"):
        for city in ("Pune", "Delhi"):
            with transaction.atomic():
                make_profile(city=city)
    warned = [r for r in caplog.records if "fallback app" in r.getMessage()]
    assert len(warned) == 1
    assert "from .celery import app as celery_app" in warned[0].getMessage()
    assert OutboxEvent.objects.filter(status=Status.PENDING).count() == 2
