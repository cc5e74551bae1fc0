"""``manage.py reconcile_user_enriched``: a committed change whose recording failed ends up
recorded (issue item 2), on SQLite and PostgreSQL, with real database faults."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from django_app.api import build_event
from django_app.models import LedgerEntry, OutboxEvent, Status
from tests.django.helpers import REPO, make_profile, tracking, worker_env
from tests.django.test_backfill import ENRICHED_AT, existing_profiles
from tests.testapp.models import Profile

pytestmark = pytest.mark.django_db(transaction=True)


def reconcile(*args: str) -> str:
    out = io.StringIO()
    call_command("reconcile_user_enriched", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def in_step(settings) -> list[Profile]:
    """Three users whose events were recorded by their live saves (DISPATCH "worker")."""
    settings.TRACKING_ADAPTER = tracking(SINK="memory")
    profiles = [
        make_profile(city=city, enriched_at=ENRICHED_AT) for city in ("Pune", "Oslo", "Lima")
    ]
    assert OutboxEvent.objects.count() == LedgerEntry.objects.count() == 3
    return profiles


@contextmanager
def ledger_row_locked(user_id: str) -> Iterator[None]:
    """Another connection holds the user's ledger row locked (FOR UPDATE) until exit."""
    locked, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                LedgerEntry.objects.select_for_update().get(subject_id=user_id)
                locked.set()
                release.wait(30)
        except BaseException as exc:
            errors.append(exc)
            locked.set()
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold, name="ledger-lock")
    thread.start()
    locked.wait(30)
    try:
        assert errors == []
        yield
    finally:
        release.set()
        thread.join(30)


def assert_only_this_change_is_recorded(profile: Profile, before: set[int], city: str) -> None:
    new = list(OutboxEvent.objects.exclude(pk__in=before))
    assert [(row.user_id, row.status) for row in new] == [
        (profile.tracking_user_id, Status.PENDING)
    ]
    [row] = new
    assert row.payload["properties"]["enrichment_city"] == city
    # The timestamp follows SOURCE["TIMESTAMP"], like the backfill's.
    assert row.payload["timestamp"].startswith("2024-03-01T12:00:00")
    entry = LedgerEntry.objects.get(subject_id=profile.tracking_user_id)
    assert (entry.content_hash, entry.message_id) == (row.content_hash, row.message_id)
    assert entry.content_hash == build_event(Profile.objects.get(pk=profile.pk)).content_hash()


@pytest.mark.postgres
def test_a_save_whose_recording_hit_lock_timeout_is_recorded_by_reconcile(in_step, caplog):
    profile = in_step[1]
    before = set(OutboxEvent.objects.values_list("pk", flat=True))
    with ledger_row_locked(profile.tracking_user_id):
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '50ms'")
        try:
            profile.city = "Berlin"
            with caplog.at_level(logging.ERROR, logger="django_app"):
                profile.save()  # autocommit: the change commits, its recording times out
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
    assert "not recorded" in caplog.text
    assert Profile.objects.get(pk=profile.pk).city == "Berlin"
    assert OutboxEvent.objects.exclude(pk__in=before).count() == 0  # the event is lost, for now

    summary = reconcile()

    assert "3 checked, 1 out of date, 1 recorded" in summary
    assert_only_this_change_is_recorded(profile, before, "Berlin")
    again = reconcile()
    assert "3 checked, 0 out of date, 0 recorded" in again
    assert OutboxEvent.objects.count() == len(before) + 1


def test_a_save_whose_recording_found_no_outbox_table_is_recorded_by_reconcile(in_step, caplog):
    if connection.vendor != "sqlite":
        pytest.skip("the PostgreSQL fault is the lock_timeout test's")
    profile = in_step[0]
    before = set(OutboxEvent.objects.values_list("pk", flat=True))
    table = OutboxEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER TABLE "{table}" RENAME TO "{table}_away"')
    try:
        profile.city = "Tallinn"
        with caplog.at_level(logging.ERROR, logger="django_app"):
            profile.save()  # autocommit: the change commits, its recording fails
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER TABLE "{table}_away" RENAME TO "{table}"')
    assert "not recorded" in caplog.text
    assert Profile.objects.get(pk=profile.pk).city == "Tallinn"
    assert OutboxEvent.objects.exclude(pk__in=before).count() == 0

    summary = reconcile()

    assert "3 checked, 1 out of date, 1 recorded" in summary
    assert_only_this_change_is_recorded(profile, before, "Tallinn")
    assert "0 out of date, 0 recorded" in reconcile()
    assert OutboxEvent.objects.count() == len(before) + 1


def test_users_in_step_cost_reads_only_and_record_nothing(in_step, settings):
    existing_profiles(40)  # users from before the app was installed ...
    call_command("backfill_user_enriched", stdout=io.StringIO())  # ... backfilled
    rows = OutboxEvent.objects.count()
    entries = dict(LedgerEntry.objects.values_list("subject_id", "recorded_at"))

    with CaptureQueriesContext(connection) as queries:
        summary = reconcile("--batch-size", "7")

    assert "43 checked, 0 out of date, 0 recorded" in summary
    assert OutboxEvent.objects.count() == rows
    assert dict(LedgerEntry.objects.values_list("subject_id", "recorded_at")) == entries
    written = [
        q["sql"]
        for q in queries
        if q["sql"].lstrip().split()[0].upper() in {"INSERT", "UPDATE", "DELETE"}
    ]
    assert written == []


def test_blank_users_never_recorded_are_in_step_and_changed_ones_are_not(in_step, settings):
    blank = make_profile()  # created blank: not enriched yet, nothing recorded (skip_empty)
    assert not LedgerEntry.objects.filter(subject_id=blank.tracking_user_id).exists()
    [old] = existing_profiles(1)  # enriched before the app was installed: no entry
    Profile.objects.filter(pk=in_step[2].pk).update(title="CTO")  # no signals, like raw SQL

    summary = reconcile()

    assert "5 checked, 2 out of date, 2 recorded" in summary
    recorded = set(OutboxEvent.objects.values_list("user_id", flat=True)[:2])
    assert recorded == {old.tracking_user_id, in_step[2].tracking_user_id}
    assert not LedgerEntry.objects.filter(subject_id=blank.tracking_user_id).exists()


def test_dry_run_lists_the_users_and_writes_nothing(in_step):
    Profile.objects.filter(pk__in=[in_step[0].pk, in_step[2].pk]).update(country="IN")
    rows, entries = OutboxEvent.objects.count(), list(LedgerEntry.objects.values_list())

    out = reconcile("--dry-run")

    lines = out.splitlines()
    assert lines[:-1] == [in_step[0].tracking_user_id, in_step[2].tracking_user_id]
    assert lines[-1].startswith("reconcile user_enriched dry run finished in")
    assert "3 checked, 2 out of date, 0 recorded (dry run: nothing written)" in lines[-1]
    assert OutboxEvent.objects.count() == rows
    assert list(LedgerEntry.objects.values_list()) == entries
    assert "2 out of date, 2 recorded" in reconcile()


def test_recorded_events_take_the_normal_delivery_path(in_step, settings, receiver):
    from tests.django.helpers import thrivestack_to

    settings.TRACKING_ADAPTER = thrivestack_to(receiver, DISPATCH="inline")
    Profile.objects.filter(pk=in_step[1].pk).update(city="Quito")

    reconcile()

    assert receiver.wait_for_items(1)  # sent on commit, as a live save's event would be
    [item] = receiver.items
    assert (item["user_id"], item["properties"]["enrichment_city"]) == (
        in_step[1].tracking_user_id,
        "Quito",
    )
    assert OutboxEvent.objects.get(user_id=item["user_id"], status=Status.DELIVERED)


def test_as_a_scheduled_command_it_exits_0_and_says_what_it_did(receiver):
    [profile] = existing_profiles(1)
    result = subprocess.run(
        [sys.executable, "-m", "django", "reconcile_user_enriched"],
        env=worker_env(receiver),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "1 checked, 1 out of date, 1 recorded" in result.stdout
    assert OutboxEvent.objects.filter(user_id=profile.tracking_user_id).count() == 1
    quiet = subprocess.run(
        [sys.executable, "-m", "django", "reconcile_user_enriched", "--verbosity", "0"],
        env=worker_env(receiver),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")


def test_bad_options_are_command_errors(settings):
    with pytest.raises(CommandError, match="batch-size"):
        reconcile("--batch-size", "0")
    settings.TRACKING_ADAPTER = {"SINK": "memory"}
    with pytest.raises(CommandError, match="SOURCE"):
        reconcile()
