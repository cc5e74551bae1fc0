"""The outbox and its delivery, against a real HTTP server on loopback."""

from __future__ import annotations

import json
import logging
import select
import signal
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from django_app import dispatch
from django_app.dispatchers import Dispatcher
from django_app.models import OutboxEvent, Status
from tests.django.helpers import make_profile, pending_rows, start_worker, thrivestack_to
from tracking_adapter.receiver import Scripted

pytestmark = pytest.mark.django_db(transaction=True)


def test_worker_dispatch_delivers_committed_events_exactly_once(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    profile = make_profile(city="Pune", country="India", first_name="Santosh")
    assert OutboxEvent.objects.get().status == Status.PENDING
    assert receiver.item_count == 0  # worker dispatch: nothing sent on the save path

    stats = dispatch.drain()

    assert (stats.delivered, stats.retried, stats.dead) == (1, 0, 0)
    row = OutboxEvent.objects.get()
    assert row.status == Status.DELIVERED
    assert row.attempts == 1
    assert row.delivered_at is not None
    assert row.sink.startswith("thrivestack http://127.0.0.1:")
    [item] = receiver.items
    assert item["event_name"] == "user_enriched"
    assert item["user_id"] == profile.tracking_user_id
    assert item["context"] == {"group_id": "acct_1"}
    assert item["properties"]["enrichment_city"] == "Pune"
    assert item["properties"]["enrichment_phone"] == []
    assert list(item) == ["user_id", "event_name", "properties", "context", "timestamp"]
    assert dispatch.drain().claimed == 0  # nothing left, nothing sent twice
    assert receiver.item_count == 1


def test_a_poisoned_event_is_dead_with_the_servers_reason_and_the_rest_delivered(
    settings, receiver
):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    receiver.reject = lambda item: "bad city" if item["user_id"] == "u7" else None
    pending_rows(20)

    stats = dispatch.drain(batch_size=20)

    assert (stats.delivered, stats.dead) == (19, 1)
    dead = OutboxEvent.objects.get(status=Status.DEAD)
    assert dead.user_id == "u7"
    assert "bad city" in dead.last_error
    assert receiver.item_count == 19
    assert receiver.duplicate_count == 0


def test_401_keeps_everything_pending_says_which_setting_and_resumes_when_fixed(
    settings, receiver, caplog
):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    settings.TRACKING_ADAPTER["SINK_OPTIONS"] = {
        "api_key": "wrong-key-0000",
        "endpoint": receiver.thrivestack_endpoint,
    }
    pending_rows(5)

    with caplog.at_level(logging.ERROR, logger="django_app.dispatch"):
        stats = dispatch.drain()

    assert (stats.delivered, stats.retried, stats.dead) == (0, 5, 0)
    rows = OutboxEvent.objects.all()
    assert {row.status for row in rows} == {Status.PENDING}
    assert {row.attempts for row in rows} == {0}  # a config error is not the events' fault
    assert all(row.next_attempt_at > timezone.now() + timedelta(seconds=200) for row in rows)
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("SINK_OPTIONS" in message and "api_key" in message for message in loud)
    assert not any("wrong-key-0000" in message for message in loud)

    settings.TRACKING_ADAPTER = thrivestack_to(receiver)  # the key is fixed
    OutboxEvent.objects.update(next_attempt_at=timezone.now())
    assert dispatch.drain().delivered == 5


def test_429_waits_at_least_as_long_as_the_server_asked(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    receiver.script(Scripted(429, {"message": "slow down"}, {"Retry-After": "120"}))
    pending_rows(3)
    before = timezone.now()

    stats = dispatch.drain()

    assert stats.retried == 3
    for row in OutboxEvent.objects.all():
        assert row.status == Status.PENDING
        assert row.attempts == 1
        assert row.next_attempt_at >= before + timedelta(seconds=120)
        assert "429" in row.last_error


def test_retries_end_in_a_visible_dead_state(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver, RETRY={"MAX_ATTEMPTS": 2})
    [row] = pending_rows(1)
    for _ in range(2):
        receiver.script(Scripted(500, {"message": "boom"}))
        OutboxEvent.objects.update(next_attempt_at=timezone.now())
        dispatch.drain()
    row.refresh_from_db()
    assert row.status == Status.DEAD
    assert row.attempts == 2
    assert "gave up after 2 attempts" in row.last_error
    assert "boom" in row.last_error


def test_an_expired_lease_makes_a_row_claimable_again_and_a_stale_worker_cannot_overwrite(
    settings, receiver
):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    pending_rows(2)
    first = dispatch.claim(10)
    assert len(first) == 2
    assert dispatch.claim(10) == []  # leased: nobody else gets them

    OutboxEvent.objects.update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )  # lease ran out
    second = dispatch.claim(10)
    assert [row.pk for row in second] == [row.pk for row in first]

    sink = dispatch.get_sink()
    dispatch.settle(first, [dispatch.Outcome.rejected("stale")] * 2, sink)  # the old worker
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {Status.PENDING}
    dispatch.settle(second, dispatch.send_claimed(second, sink), sink)
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {Status.DELIVERED}
    assert receiver.item_count == 2


def test_a_sink_that_raises_leaves_events_pending(settings):
    settings.TRACKING_ADAPTER = {
        **settings.TRACKING_ADAPTER,
        "SINK": "tests.django.sinks.ExplodingSink",
    }
    pending_rows(2)
    stats = dispatch.drain()
    assert stats.retried == 2
    assert {row.last_error for row in OutboxEvent.objects.all()} == {
        "ExplodingSink raised RuntimeError: the warehouse is on fire"
    }


class TestInlineDispatch:
    def test_sends_on_commit_and_never_for_a_rollback(self, settings, receiver):
        settings.TRACKING_ADAPTER = thrivestack_to(receiver, DISPATCH="inline")
        with transaction.atomic():
            profile = make_profile(city="Pune")
            assert receiver.item_count == 0  # not before the commit
        assert receiver.wait_for_items(1, timeout=5)
        assert OutboxEvent.objects.get().status == Status.DELIVERED

        with pytest.raises(RuntimeError), transaction.atomic():
            profile.city = "Mumbai"
            profile.save()
            raise RuntimeError("the view failed after the save")
        assert OutboxEvent.objects.count() == 1
        assert receiver.item_count == 1

    def test_one_transaction_with_many_events_is_sent_in_one_request(self, settings, receiver):
        settings.TRACKING_ADAPTER = thrivestack_to(receiver, DISPATCH="inline")
        with transaction.atomic():
            for number in range(5):
                make_profile(city=f"City {number}")
        assert receiver.wait_for_items(5, timeout=5)
        assert receiver.request_count == 1

    def test_an_unreachable_service_never_breaks_the_save(self, settings, receiver):
        settings.TRACKING_ADAPTER = thrivestack_to(receiver, DISPATCH="inline", INLINE_TIMEOUT=0.3)
        receiver.script(Scripted(delay=2.0))  # hangs past the inline timeout
        started = time.monotonic()
        make_profile(city="Pune")
        assert time.monotonic() - started < 1.5
        row = OutboxEvent.objects.get()
        assert row.status == Status.PENDING
        assert "0.3s" in row.last_error  # the read timeout or the deadline, both INLINE_TIMEOUT

    def test_a_trickling_collector_holds_the_commit_no_longer_than_the_inline_timeout(
        self, settings, receiver
    ):
        # One byte every 0.2 s passes any per-read timeout; the overall deadline cuts it.
        settings.TRACKING_ADAPTER = thrivestack_to(receiver, DISPATCH="inline", INLINE_TIMEOUT=0.5)
        receiver.script(Scripted(200, {"success": True, "pad": "x" * 40}, trickle=0.2))
        started = time.monotonic()
        with transaction.atomic():
            make_profile(city="Pune")
        assert time.monotonic() - started < 2.0
        row = OutboxEvent.objects.get()
        assert row.status == Status.PENDING
        assert "0.5s" in row.last_error

    def test_inline_bisection_stops_at_the_inline_timeout_and_leaves_the_rest_pending(
        self, settings, receiver
    ):
        # Every request is refused with a 400 after 0.3 s: the bisection of 64 events goes on
        # for many requests; inline delivery gives up when its time is spent.
        settings.TRACKING_ADAPTER = thrivestack_to(receiver, DISPATCH="inline", INLINE_TIMEOUT=0.5)
        for _ in range(200):
            receiver.script(Scripted(400, {"error": "bad event"}, delay=0.3))
        started = time.monotonic()
        with transaction.atomic():
            for number in range(64):
                make_profile(city=f"City {number}")
        assert time.monotonic() - started < 2.0
        assert receiver.request_count <= 4
        assert OutboxEvent.objects.filter(status=Status.PENDING).count() > 0


class TestDeliverEventsCommand:
    def test_once_drains_what_is_due_and_reports(self, settings, receiver, capsys):
        settings.TRACKING_ADAPTER = thrivestack_to(receiver)
        pending_rows(30)
        call_command("deliver_events", "--once", "--batch-size", "7")
        assert "delivered 30" in capsys.readouterr().out
        assert receiver.item_count == 30
        assert receiver.request_count == 5

    def test_the_worker_stops_cleanly_on_sigterm(self, receiver):
        worker = start_worker(receiver, "--poll-interval", "0.2")
        try:
            # Its first line comes once its handlers are installed (a fixed sleep raced a
            # slow start on a busy machine: SIGTERM then killed it before it could stop).
            assert worker.stdout is not None
            ready, _, _ = select.select([worker.stdout], [], [], 60)
            assert ready, "the worker printed nothing within 60 s"
            first = worker.stdout.readline()
            assert first.startswith("deliver_events starting"), first
            time.sleep(0.5)
            assert worker.poll() is None  # polling, not exited
            worker.send_signal(signal.SIGTERM)
            out, err = worker.communicate(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
        assert worker.returncode == 0, err
        assert "delivered 0" in out


@pytest.mark.postgres
def test_two_workers_on_postgresql_deliver_5000_events_exactly_once(receiver):
    receiver.latency = 0.03  # long enough that both workers are draining at the same time
    pending_rows(5000)
    workers = [start_worker(receiver, "--once", "--batch-size", "100") for _ in range(2)]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (_out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    assert receiver.item_count == 5000
    assert receiver.duplicate_count == 0
    assert OutboxEvent.objects.filter(status=Status.DELIVERED).count() == 5000
    delivered_by = [int(out.split("delivered ")[1].split(",")[0]) for out, _ in outputs]
    assert sum(delivered_by) == 5000
    assert min(delivered_by) > 0, f"one worker did all the work: {delivered_by}"
    user_ids = [item["user_id"] for item in receiver.items]
    assert len(set(user_ids)) == 5000
    assert json.loads(json.dumps(receiver.items[0]))["event_name"] == "user_enriched"


class RecordingDispatcher(Dispatcher):
    """A dispatcher of the host's own, named by dotted path."""

    calls: list[list[int]] = []

    def after_commit(self, ids, using):
        RecordingDispatcher.calls.append(list(ids))


def test_a_dispatcher_of_your_own_gets_the_committed_rows_only(settings, receiver):
    RecordingDispatcher.calls.clear()
    settings.TRACKING_ADAPTER = thrivestack_to(
        receiver, DISPATCH="tests.django.test_delivery.RecordingDispatcher"
    )
    with transaction.atomic():
        make_profile(city="Pune")
        make_profile(city="Delhi")
    with pytest.raises(RuntimeError), transaction.atomic():
        make_profile(city="Nowhere")
        raise RuntimeError("rolled back")
    assert RecordingDispatcher.calls == [
        list(OutboxEvent.objects.order_by("id").values_list("id", flat=True))
    ]
    assert receiver.item_count == 0  # delivery is the dispatcher's business
