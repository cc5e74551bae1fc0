"""The fault suite: a hostile receiver, killed workers, a dropped database, racing writers.

Every test tries to lose, duplicate or misroute an event, and checks the guarantees of
DESIGN.md still hold: every committed event is delivered (or dead with its reason), retries
wait as long as the policy and the server say, duplicates come only from a request in flight
and carry the same identity, and nothing exists for a transaction that rolled back.

Already proven elsewhere, so not repeated here: a 401 keeps everything pending without
spending attempts and names the setting (test_delivery.py::
test_401_keeps_everything_pending_says_which_setting_and_resumes_when_fixed; 401 and 403 for
both HTTP sinks in tests/core), retries ending dead (test_delivery.py::
test_retries_end_in_a_visible_dead_state), a stale worker unable to overwrite a row it lost
(test_delivery.py::test_an_expired_lease_makes_a_row_claimable_again_and_a_stale_worker_...).
"""

from __future__ import annotations

import collections
import contextlib
import io
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from django_app import dispatch
from django_app.api import track_enrichment
from django_app.models import LedgerEntry, OutboxEvent, Status
from tests.django.helpers import (
    REPO,
    make_profile,
    other_session,
    pending_rows,
    thrivestack_to,
    tracking,
    worker_env,
)
from tests.testapp.models import Profile
from tracking_adapter.receiver import LoopbackReceiver, Scripted

pytestmark = pytest.mark.django_db(transaction=True)


class Boom(Exception):
    pass


def make_due() -> None:
    """Time travel for retries: every pending row is due now (as if its delay had passed)."""
    OutboxEvent.objects.filter(status=Status.PENDING).update(next_attempt_at=timezone.now())


def statuses() -> dict[str, int]:
    return collections.Counter(OutboxEvent.objects.values_list("status", flat=True))


def cities() -> list[str]:
    return [
        row.payload["properties"]["enrichment_city"] for row in OutboxEvent.objects.order_by("id")
    ]


def start(receiver: LoopbackReceiver, *args: str, **env: str) -> subprocess.Popen[str]:
    """``deliver_events`` in a subprocess on this test's database, with extra environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "django", "deliver_events", *args],
        env={**worker_env(receiver), **env},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(worker: subprocess.Popen[str], timeout: float = 15) -> tuple[str, str]:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        return worker.communicate(timeout=timeout)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# -- 1. 500s, then 200 ---------------------------------------------------------------------


def test_500s_then_200_delivers_each_event_once_with_every_delay_within_the_policy(
    settings, receiver
):
    base, cap = 10.0, 45.0
    settings.TRACKING_ADAPTER = thrivestack_to(
        receiver, RETRY={"BASE_DELAY": base, "MAX_DELAY": cap, "MAX_ATTEMPTS": 25}
    )
    failures = 5
    receiver.script(*[Scripted(500, {"message": f"outage {n}"}) for n in range(failures)])
    pending_rows(6)

    for attempt in range(1, failures + 1):
        before = timezone.now()
        stats = dispatch.drain()
        after = timezone.now()
        assert (stats.delivered, stats.retried, stats.dead) == (0, 6, 0)
        ceiling = timedelta(seconds=min(cap, base * 2 ** (attempt - 1)))
        rows = list(OutboxEvent.objects.all())
        for row in rows:
            assert row.status == Status.PENDING
            assert row.attempts == attempt
            assert f"outage {attempt - 1}" in row.last_error
            # settle() drew the delay at a moment between before and after.
            assert before <= row.next_attempt_at <= after + ceiling, (attempt, row.next_attempt_at)
        # Full jitter: rows that failed together do not come back together.
        assert len({row.next_attempt_at for row in rows}) > 1
        make_due()

    stats = dispatch.drain()

    assert stats.delivered == 6
    assert statuses() == {Status.DELIVERED: 6}
    assert set(OutboxEvent.objects.values_list("attempts", flat=True)) == {failures + 1}
    assert receiver.request_count == failures + 1
    assert receiver.item_count == 6
    assert receiver.duplicate_count == 0
    assert dispatch.drain().claimed == 0


def test_a_5xx_with_retry_after_waits_at_least_that_long_and_no_more_than_the_policy_allows(
    settings, receiver
):
    settings.TRACKING_ADAPTER = thrivestack_to(
        receiver, RETRY={"BASE_DELAY": 1.0, "MAX_DELAY": 5.0, "MAX_RETRY_AFTER": 30.0}
    )
    receiver.script(Scripted(503, {"message": "maintenance"}, {"Retry-After": "9999"}))
    pending_rows(2)
    before = timezone.now()
    dispatch.drain()
    for row in OutboxEvent.objects.all():
        # An absurd Retry-After is capped at MAX_RETRY_AFTER, never ignored, never obeyed.
        assert before + timedelta(seconds=30) <= row.next_attempt_at
        assert row.next_attempt_at <= timezone.now() + timedelta(seconds=30)


# -- 2. 429 with Retry-After ---------------------------------------------------------------


def test_429_retry_after_2_sends_nothing_before_the_time_asked_then_delivers(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    receiver.script(Scripted(429, {"message": "slow down"}, {"Retry-After": "2"}))
    pending_rows(4)
    before = timezone.now()

    assert dispatch.drain().retried == 4

    rows = list(OutboxEvent.objects.all())
    assert all(row.next_attempt_at >= before + timedelta(seconds=2) for row in rows)
    assert all("429" in row.last_error and "2s" in row.last_error for row in rows)
    assert dispatch.drain().claimed == 0  # right away: nothing is due
    assert receiver.request_count == 1
    due = max(row.next_attempt_at for row in rows)

    time.sleep(max(0.0, (due - timezone.now()).total_seconds()) + 0.05)  # the real wait

    assert dispatch.drain().delivered == 4
    assert [r.status for r in receiver.requests] == [429, 200]
    assert receiver.item_count == 4
    assert receiver.duplicate_count == 0


# -- 3. timeouts and resets ----------------------------------------------------------------


def test_a_response_lost_to_a_read_timeout_is_resent_with_the_same_identity(settings, receiver):
    # The receiver takes the batch but answers after the client gave up: the only duplicates
    # allowed are that request's events, and they must be the same events.
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    settings.TRACKING_ADAPTER["SINK_OPTIONS"]["timeout"] = 0.2
    receiver.script(Scripted(delay=0.5, accept=True))
    pending_rows(5)

    stats = dispatch.drain()

    assert stats.retried == 5
    assert all("timeout" in row.last_error for row in OutboxEvent.objects.all())
    assert receiver.wait_for_items(5, timeout=5)  # the slow request was processed anyway
    for _ in range(3):  # a pooled connection the server dropped may cost one more try
        make_due()
        if dispatch.drain().delivered == 5:
            break
    assert receiver.item_count == 10
    assert receiver.duplicate_count == 5
    first, second = receiver.items[:5], receiver.items[5:]
    assert first == second  # byte-for-byte the same items
    assert statuses() == {Status.DELIVERED: 5}


def test_a_hang_past_the_timeout_and_a_reset_are_retried_and_delivered_once(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    settings.TRACKING_ADAPTER["SINK_OPTIONS"]["timeout"] = 0.3
    receiver.script(Scripted(delay=0.8), Scripted(reset=True))  # neither request is processed
    pending_rows(5)

    assert dispatch.drain().retried == 5
    assert all("timeout" in row.last_error for row in OutboxEvent.objects.all())
    make_due()
    assert dispatch.drain().retried == 5
    assert all("could not reach" in row.last_error for row in OutboxEvent.objects.all())
    make_due()
    assert dispatch.drain().delivered == 5

    assert receiver.item_count == 5
    assert receiver.duplicate_count == 0
    assert set(OutboxEvent.objects.values_list("attempts", flat=True)) == {3}


def test_segment_duplicates_from_a_lost_response_carry_the_outbox_message_id(settings, receiver):
    settings.TRACKING_ADAPTER = tracking(
        SINK="segment",
        SINK_OPTIONS={"write_key": "test-write-key", "host": receiver.url, "timeout": 0.2},
    )
    receiver.script(Scripted(delay=0.5, accept=True), Scripted(reset=True))
    pending_rows(4)

    assert dispatch.drain().delivered == 0  # times out, but the collector keeps the batch
    assert receiver.wait_for_items(4, timeout=5)
    for _ in range(5):  # the reset, then success (a pooled connection may need one more try)
        make_due()
        dispatch.drain()
        if statuses() == {Status.DELIVERED: 4}:
            break
    assert statuses() == {Status.DELIVERED: 4}

    sent = collections.Counter(item["messageId"] for item in receiver.items)
    stored = set(OutboxEvent.objects.values_list("message_id", flat=True))
    assert set(sent) == stored
    # Twice each: the request whose answer was lost, and the resend, with the same messageId.
    assert set(sent.values()) == {2}
    assert receiver.duplicate_count == 4


# -- 4. one poisoned event in batches of 1,000 ---------------------------------------------


def test_poisoned_events_in_batches_of_1000_die_alone_and_show_in_the_admin(
    settings, receiver, admin_client
):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    poisoned = {"u17": "city is not a city", "u1234": "banned user", "u1999": "bad phone"}
    receiver.reject = lambda item: poisoned.get(item["user_id"])
    pending_rows(2500)  # batches of 1000, 1000, 500: poison in the first two

    stats = dispatch.drain(batch_size=1000)

    assert (stats.batches, stats.delivered, stats.dead, stats.retried) == (3, 2497, 3, 0)
    assert receiver.item_count == 2497
    assert receiver.duplicate_count == 0
    delivered_users = {item["user_id"] for item in receiver.items}
    assert delivered_users == {f"u{n}" for n in range(2500)} - set(poisoned)
    dead = {row.user_id: row for row in OutboxEvent.objects.filter(status=Status.DEAD)}
    assert set(dead) == set(poisoned)
    for user_id, reason in poisoned.items():
        assert reason in dead[user_id].last_error
        assert "HTTP 400" in dead[user_id].last_error
        assert dead[user_id].attempts == 1
    assert dispatch.drain().claimed == 0  # dead stays dead: never retried

    changelist = admin_client.get(
        reverse("admin:django_app_outboxevent_changelist") + "?status__exact=dead"
    ).content.decode()
    for user_id, reason in poisoned.items():
        assert f">{user_id}<" in changelist
        assert reason in changelist
    page = admin_client.get(
        reverse("admin:django_app_outboxevent_change", args=[dead["u1234"].pk])
    ).content.decode()
    assert "banned user" in page


# -- 9. transactions -----------------------------------------------------------------------


@pytest.fixture(params=["ledger", "snapshot"])
def change_detection(request: pytest.FixtureRequest, settings: Any) -> str:
    """Both ways a save is judged: the test settings (USER_ID is a property, so every save
    goes to the ledger) and paths that all start at concrete fields, so the in-memory
    snapshot of the loaded values decides first."""
    if request.param == "snapshot":
        settings.TRACKING_ADAPTER = tracking(
            SOURCE={**settings.TRACKING_ADAPTER["SOURCE"], "USER_ID": "user_id"}
        )
        from django_app.runtime import get_source

        source = get_source()
        assert source is not None
        assert source.watched_fields is not None
    return str(request.param)


def test_events_exist_exactly_for_what_committed_through_nested_savepoints(change_detection):
    kept = make_profile(city="Pune")
    gone = make_profile(city="Oslo")
    with transaction.atomic():
        kept.city = "Mumbai"
        kept.save()
        with contextlib.suppress(Boom), transaction.atomic():  # savepoint rolled back
            kept.city = "Delhi"
            kept.save()
            gone.city = "Bergen"
            gone.save()
            with transaction.atomic():  # released, but inside the one rolled back
                make_profile(city="Nowhere")
            raise Boom
        with transaction.atomic():  # savepoint released: kept
            gone.city = "Tromsø"
            gone.save()
            with contextlib.suppress(Boom), transaction.atomic():
                make_profile(city="Ghost")
                raise Boom
    with contextlib.suppress(Boom), transaction.atomic():  # the whole transaction fails
        kept.city = "Chennai"
        kept.save()
        make_profile(city="Atlantis")
        raise Boom

    assert sorted(cities()) == sorted(["Pune", "Oslo", "Mumbai", "Tromsø"])
    assert not Profile.objects.filter(city__in=["Nowhere", "Ghost", "Atlantis"]).exists()
    ledger = dict(
        LedgerEntry.objects.values_list("subject_id", "message_id"),
    )
    by_user = {row.user_id: row.message_id for row in OutboxEvent.objects.order_by("id")}
    assert ledger == by_user  # the ledger holds exactly the last committed event per user


def test_an_error_after_the_save_in_the_same_transaction_leaves_no_event(
    receiver, settings, change_detection
):
    settings.TRACKING_ADAPTER = {
        **settings.TRACKING_ADAPTER,
        "SINK": "thrivestack",
        "SINK_OPTIONS": {"api_key": "test-api-key", "endpoint": receiver.thrivestack_endpoint},
    }
    profile = make_profile(city="Pune")

    def view() -> None:
        with transaction.atomic():
            profile.city = "Delhi"
            profile.save()
            Profile.objects.create(user=profile.user)  # IntegrityError: one profile per user

    with pytest.raises(IntegrityError):
        view()
    assert cities() == ["Pune"]
    dispatch.drain()
    assert [item["properties"]["enrichment_city"] for item in receiver.items] == ["Pune"]


def test_change_detection_after_a_savepoint_rollback_records_the_retried_save(change_detection):
    profile = make_profile(city="Pune")
    with transaction.atomic():
        with contextlib.suppress(Boom), transaction.atomic():
            profile.city = "Delhi"
            profile.save()
            raise Boom
        assert Profile.objects.get(pk=profile.pk).city == "Pune"
        profile.save()  # the same instance, saved again after the rollback
    assert cities() == ["Pune", "Delhi"]
    profile.save()  # unchanged now: nothing
    assert cities() == ["Pune", "Delhi"]


def test_a_change_reverted_later_in_the_same_transaction_is_recorded(change_detection):
    # A view saving twice: Mumbai, then back to Pune. The database ends with Pune, so the
    # last event recorded must say Pune, not Mumbai.
    profile = make_profile(city="Pune")
    with transaction.atomic():
        profile.city = "Mumbai"
        profile.save()
        profile.city = "Pune"
        profile.save()
    assert cities()[-1] == "Pune"
    assert Profile.objects.get(pk=profile.pk).city == "Pune"


def test_a_partial_save_in_the_same_transaction_leaves_a_true_snapshot(change_detection):
    profile = make_profile(city="Pune")
    with transaction.atomic():
        profile.city = "Mumbai"
        profile.save()
        profile.visits = 3
        profile.save(update_fields=["visits"])
    assert cities() == ["Pune", "Mumbai"]
    profile.city = "Pune"  # a real change back: the database holds Mumbai
    profile.save()
    assert cities() == ["Pune", "Mumbai", "Pune"]


def test_a_savepoint_rollback_then_the_same_values_again_records_them(change_detection):
    profile = make_profile(city="Pune")
    with transaction.atomic():
        with contextlib.suppress(Boom), transaction.atomic():
            profile.city = "Delhi"
            profile.save()
            raise Boom
        with transaction.atomic():
            profile.city = "Delhi"
            profile.save()
    assert cities() == ["Pune", "Delhi"]
    assert track_enrichment(Profile.objects.get(pk=profile.pk)).created is False  # type: ignore[union-attr]


# -- 7. the database connection dropped under a running worker ----------------------------


def worker_backends() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return [pid for (pid,) in cursor.fetchall()]


def terminate(pids: list[int]) -> int:
    with connection.cursor() as cursor:
        for pid in pids:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    return len(pids)


@pytest.mark.postgres
def test_a_worker_whose_database_connection_is_killed_reconnects_and_loses_nothing(receiver):
    receiver.latency = 0.1  # each batch is on the wire long enough to kill the backend
    pending_rows(60, prefix="before")
    worker = start(
        receiver, "--batch-size", "10", "--poll-interval", "0.2", TRACKING_TEST_LEASE_SECONDS="1"
    )
    try:
        wait_until(lambda: receiver.item_count >= 10, 30, "the worker's first batch")
        wait_until(worker_backends, 10, "the worker's backend")
        assert terminate(worker_backends()) >= 1  # mid-drain: it holds a claimed batch
        wait_until(
            lambda: not OutboxEvent.objects.filter(status=Status.PENDING).exists(),
            30,
            "the first rows to be delivered after the reconnect",
        )
        # While it idles, kill whatever connection it has again, then give it new work.
        time.sleep(0.5)
        terminate(worker_backends())
        pending_rows(30, prefix="after")
        wait_until(
            lambda: not OutboxEvent.objects.filter(status=Status.PENDING).exists(),
            30,
            "the rows added after the second kill",
        )
        assert worker.poll() is None, "the worker died with its database connection"
    finally:
        _out, err = stop(worker)
    assert worker.returncode == 0, err
    assert "database error" in err  # it noticed, said so, and carried on
    assert statuses() == {Status.DELIVERED: 90}
    users = [item["user_id"] for item in receiver.items]
    assert set(users) == {f"before{n}" for n in range(60)} | {f"after{n}" for n in range(30)}
    # Duplicates only from the batch in flight when the backend died, same items.
    assert receiver.duplicate_count <= 10
    assert len(users) - len(set(users)) == receiver.duplicate_count


@pytest.mark.postgres
def test_the_worker_loop_survives_a_persistent_connection_killed_while_idle(settings, receiver):
    # With CONN_MAX_AGE the worker keeps its connection between polls; a database restart
    # or failover kills it while idle. The next round must reconnect, not crash.
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    pending_rows(5)
    connection.ensure_connection()
    own_pid = connection.connection.info.backend_pid  # psycopg 3 and psycopg2 alike
    with other_session() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [own_pid])
    out, err = io.StringIO(), io.StringIO()

    call_command("deliver_events", "--once", stdout=out, stderr=err)

    assert "database error" in err.getvalue()
    assert "delivered 5" in out.getvalue()
    assert receiver.item_count == 5
    assert statuses() == {Status.DELIVERED: 5}


# -- 8. four workers racing the host app ----------------------------------------------------


def save_profiles_until(stop_event: threading.Event, limit: int) -> int:
    """The host app: saves profiles in transactions, in a loop, while the workers drain."""
    saved = 0
    profiles = [make_profile(city="Start") for _ in range(20)]
    while not stop_event.is_set() and saved < limit:
        with transaction.atomic():
            profile = profiles[saved % len(profiles)]
            profile.city = f"City {saved}"
            profile.save()
            if saved % 7 == 0:
                make_profile(city=f"New {saved}")
        saved += 1
    return saved


@pytest.mark.postgres
def test_four_workers_and_a_busy_host_app_deliver_every_event_exactly_once(receiver):
    pending_rows(5000)
    workers = [start(receiver, "--batch-size", "250", "--poll-interval", "0.1") for _ in range(4)]
    halt = threading.Event()
    try:
        wait_until(lambda: receiver.item_count > 0, 30, "the workers to start")
        saved = save_profiles_until(halt, limit=200)
        total = OutboxEvent.objects.count()
        wait_until(lambda: receiver.item_count >= total, 60, "every event to arrive")
        wait_until(
            lambda: set(statuses()) == {Status.DELIVERED}, 30, "every row to be marked delivered"
        )
    finally:
        halt.set()
        outputs = [stop(worker) for worker in workers]
    for worker, (_out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    assert saved == 200
    assert total > 5000 + 200
    assert receiver.duplicate_count == 0
    assert receiver.item_count == total == OutboxEvent.objects.count()
    assert statuses() == {Status.DELIVERED: total}
    delivered_by = [int(out.split("delivered ")[-1].split(",")[0]) for out, _err in outputs]
    assert sum(delivered_by) == total
    assert sum(1 for count in delivered_by if count) >= 2, delivered_by


# -- 6. SIGKILL chaos, short form ----------------------------------------------------------


@pytest.mark.postgres
def test_sigkill_chaos_short_form_loses_nothing():
    from tests import chaos

    report = chaos.run_on_current_database(events=1000, kills=2, workers=2, seed=7)

    assert report["lost"] == 0, report
    assert report["kills"] == 2, report
    assert report["delivered"] == 1000, report
    assert report["dead"] == 0, report
    assert report["duplicates"] <= report["kills"] * report["batch_size"], report
    assert all(code in chaos.CLEAN_EXITS for code in report["worker_exits"]), report


# -- one sender per batch while its worker lives --------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_batch_bisected_past_its_lease_is_sent_by_one_worker_only(receiver):
    # 10 poisoned events in one batch of 200 against a collector taking 20 ms a request:
    # bisection needs far longer than the 1 s lease, and a second worker polls all along.
    poisoned = {f"u{n}" for n in range(5, 200, 20)}
    receiver.reject = lambda item: "bad event" if item["user_id"] in poisoned else None
    receiver.latency = 0.02
    pending_rows(200)
    workers = [
        start(
            receiver,
            "--batch-size",
            "200",
            "--poll-interval",
            "0.1",
            TRACKING_TEST_LEASE_SECONDS="1",
        )
        for _ in range(2)
    ]
    try:
        wait_until(lambda: statuses().get(Status.PENDING, 0) == 0, 60, "the batch to settle")
    finally:
        for worker in workers:
            stop(worker)
    assert receiver.request_count > 40  # the send did outlive the lease many times over
    assert receiver.duplicate_count == 0
    assert receiver.item_count == 190
    assert statuses() == {Status.DELIVERED: 190, Status.DEAD: 10}


@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_a_worker_after_the_request_in_hand_not_the_backlog(receiver):
    receiver.latency = 0.05
    pending_rows(3000)
    worker = start(receiver, "--batch-size", "100", TRACKING_TEST_LEASE_SECONDS="30")
    try:
        assert receiver.wait_for_items(100, timeout=20)
        asked = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=10)
        took = time.monotonic() - asked
    finally:
        stop(worker)
    assert worker.returncode == 0
    assert took < 3, took
    counts = statuses()
    assert 0 < counts.get(Status.PENDING, 0) <= 3000 - 100  # the backlog was left, not drained
    assert counts.get(Status.DELIVERED, 0) == receiver.item_count  # and nothing was lost
    assert receiver.duplicate_count == 0
