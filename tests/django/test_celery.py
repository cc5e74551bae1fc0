"""DISPATCH "celery": a real Celery worker, on the real Redis broker, drains the outbox."""

from __future__ import annotations

import os
import re
import textwrap
import time
from pathlib import Path

import pytest
from django.db import transaction

from django_app.models import OutboxEvent, Status
from tests.django.helpers import make_profile, thrivestack_to

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def celery_worker():
    from celery.contrib.testing.worker import start_worker

    import django_app.tasks  # noqa: F401 - registers the task on the app
    from tests.celery_app import app

    app.set_current()
    with app.connection_for_write() as connection:
        # A clean queue: this process's own (see tests/celery_app.py), not the whole database.
        connection.default_channel.queue_purge(app.conf.task_default_queue)
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10) as worker:
        yield worker


def wait_until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_committed_events_are_delivered_by_a_celery_worker_and_rolled_back_ones_never(
    settings, receiver, celery_worker
):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver, DISPATCH="celery")

    with transaction.atomic():
        committed = make_profile(city="Pune")
    with pytest.raises(RuntimeError), transaction.atomic():
        make_profile(city="Nowhere")
        raise RuntimeError("rolled back")

    assert receiver.wait_for_items(1, timeout=15)
    assert wait_until(lambda: OutboxEvent.objects.filter(status=Status.DELIVERED).count() == 1)
    time.sleep(0.5)  # give a wrong second delivery the chance to show up
    assert receiver.item_count == 1
    assert receiver.items[0]["user_id"] == committed.tracking_user_id
    assert receiver.items[0]["properties"]["enrichment_city"] == "Pune"
    assert OutboxEvent.objects.count() == 1


def test_the_periodic_sweep_delivers_what_no_task_was_enqueued_for(
    settings, receiver, celery_worker
):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)  # worker dispatch: no task on commit
    make_profile(city="Pune")
    make_profile(city="Delhi")
    settings.TRACKING_ADAPTER = thrivestack_to(receiver, DISPATCH="celery")

    from django_app.tasks import deliver_outbox

    deliver_outbox.delay()  # what the beat schedule does
    assert receiver.wait_for_items(2, timeout=15)
    assert wait_until(lambda: OutboxEvent.objects.filter(status=Status.DELIVERED).count() == 2)


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_celery_settings():
    """The README's Celery settings, run: its CELERY_BEAT_SCHEDULE and TRACKING_ADAPTER changes."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    [block] = [b for b in blocks if "CELERY_BEAT_SCHEDULE" in b]
    namespace = {"TRACKING_ADAPTER": {}}
    exec(compile(textwrap.dedent(block), "README Celery settings", "exec"), namespace)
    return namespace


def queued(app, queue):
    with app.connection_for_write() as connection:
        return connection.default_channel.queue_declare(queue=queue).message_count


@pytest.fixture
def queue_worker():
    """A worker that reads one queue only, as `celery -A proj worker -Q <queue>` does, on an
    app of its own (the worker's queue selection stays on its app)."""
    from celery import Celery, _state
    from celery.contrib.testing.worker import start_worker

    import django_app.tasks  # noqa: F401 - the shared task, registered on finalize
    from tests.celery_app import app as tests_app

    queue = f"tracking-queue-tests-{os.getpid()}"  # not tests_app's default queue
    app = Celery("tests-queue", set_as_current=False)
    app.conf.update(
        broker_url=tests_app.conf.broker_url,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_default_queue=tests_app.conf.task_default_queue,  # per process, read by no one
    )
    app.finalize(auto=True)
    previous = (_state._tls.current_app, _state.default_app)
    with app.connection_for_write() as connection:
        for name in (queue, app.conf.task_default_queue):
            connection.default_channel.queue_purge(name)
    try:
        with start_worker(
            app, pool="solo", perform_ping_check=False, shutdown_timeout=10, queues=[queue]
        ):
            yield app, queue
    finally:
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge(app.conf.task_default_queue)
        _state._set_current_app(previous[0])
        _state.set_default_app(previous[1])


def test_with_celery_queue_the_readme_sweep_and_the_nudge_reach_a_worker_of_that_queue(
    settings, receiver, queue_worker
):
    from celery import beat
    from celery.worker import state

    app, queue = queue_worker
    readme = readme_celery_settings()
    entry = readme["CELERY_BEAT_SCHEDULE"]["tracking-adapter-sweep"]
    assert entry["task"] == "django_app.deliver_outbox"
    assert entry["options"] == {"queue": readme["TRACKING_ADAPTER"]["CELERY_QUEUE"]}
    entry = {**entry, "options": {"queue": queue}}  # the README's entry, on this test's queue
    settings.TRACKING_ADAPTER = thrivestack_to(receiver, CELERY_QUEUE=queue)  # no nudge yet
    make_profile(city="Delhi")

    # The sweep, published as beat publishes it. Without the entry's options it goes to the
    # app's default queue ("celery" in a host project), which this worker never reads.
    scheduler = beat.Scheduler(app, lazy=True)
    try:
        without_options = {key: value for key, value in entry.items() if key != "options"}
        scheduler.apply_async(
            beat.ScheduleEntry(name="no-options", app=app, **without_options),
            producer=scheduler.producer,
            advance=False,
        )
        time.sleep(1.0)
        assert receiver.item_count == 0
        assert queued(app, app.conf.task_default_queue) == 1

        scheduler.apply_async(
            beat.ScheduleEntry(name="tracking-adapter-sweep", app=app, **entry),
            producer=scheduler.producer,
            advance=False,
        )
        assert receiver.wait_for_items(1, timeout=15)
    finally:
        scheduler.close()
    assert wait_until(lambda: OutboxEvent.objects.filter(status=Status.DELIVERED).count() == 1)
    assert wait_until(lambda: not state.active_requests)  # the sweep's task has ended

    # The nudge after a commit: only it can deliver this event now.
    settings.TRACKING_ADAPTER = thrivestack_to(receiver, DISPATCH="celery", CELERY_QUEUE=queue)
    with transaction.atomic():
        make_profile(city="Pune")
    assert receiver.wait_for_items(2, timeout=15)
    assert wait_until(lambda: OutboxEvent.objects.filter(status=Status.DELIVERED).count() == 2)
    assert [item["properties"]["enrichment_city"] for item in receiver.items] == ["Delhi", "Pune"]
    assert queued(app, queue) == 0
    assert queued(app, app.conf.task_default_queue) == 1  # still the one without options
