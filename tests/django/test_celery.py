"""DISPATCH "celery": a real Celery worker, on the real Redis broker, drains the outbox."""

from __future__ import annotations

import time

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
