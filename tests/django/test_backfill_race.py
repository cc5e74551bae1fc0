"""A backfill racing live saves: the event it sends is never older than the ledger entry it
replaces, and the ledger ends holding each user's latest content (issue item 10).

The live save runs in another thread, on its own connection, committed for real; the only
thing arranged is *when*: between the backfill's read of a batch's rows and its read of the
ledger (``Backfill.build`` runs between the two).
"""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction

from django_app.api import build_event
from django_app.backfill import Backfill, BackfillOptions
from django_app.models import LedgerEntry, OutboxEvent, Status
from django_app.runtime import get_source
from django_app.store.base import COPY_THRESHOLD
from tests.django.helpers import thrivestack_to, tracking
from tests.django.test_backfill import backfill, existing_profiles
from tests.testapp.models import Profile
from tracking_adapter.sinks import Outcome, SendResult, Sink

pytestmark = pytest.mark.django_db(transaction=True)

# How long the hook waits for the live save. On PostgreSQL it commits at once (the backfill's
# snapshot blocks no writer); on SQLite the backfill's read transaction holds a shared lock,
# so the save commits just after the snapshot ends, which is a valid order too.
LIVE_SAVE_WAIT = 1.0


def live_save_between_reads(
    monkeypatch: pytest.MonkeyPatch, pk: int, city: str
) -> threading.Thread:
    """Arrange for a live save of profile ``pk`` (new city) during the first batch, after
    its rows were read and before the ledger is; returns the thread doing it."""
    errors: list[BaseException] = []

    def save() -> None:
        try:
            profile = Profile.objects.get(pk=pk)
            profile.city = city
            profile.save()  # autocommit: committed, and its event recorded, by the live path
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=save, name="live-save")
    thread.errors = errors  # type: ignore[attr-defined]
    original = Backfill.build

    def build(self: Backfill, rows: list[Any]) -> Any:
        if not thread.is_alive() and thread.ident is None:
            thread.start()
            thread.join(LIVE_SAVE_WAIT)
        return original(self, rows)

    monkeypatch.setattr(Backfill, "build", build)
    return thread


def content_key(item: dict[str, Any]) -> tuple[str, str]:
    return item["user_id"], json.dumps([item.get("group_id"), item["properties"]], sort_keys=True)


def assert_in_step_after_the_race(receiver: Any, pk: int, city: str) -> None:
    call_command("deliver_events", "--once", stdout=io.StringIO())  # the live event goes
    profile = Profile.objects.get(pk=pk)
    user_id = profile.tracking_user_id
    sent = Counter(content_key(item) for item in receiver.items)
    assert [pair for pair, count in sent.items() if count > 1] == [], "a (user, content) sent twice"
    entry = LedgerEntry.objects.get(subject_id=user_id)
    assert entry.content_hash == build_event(profile).content_hash(), "ledger behind the data"
    mine = [item for item in receiver.items if item["user_id"] == user_id]
    assert mine[-1]["properties"]["enrichment_city"] == city, "the live change is not last"


@pytest.mark.parametrize("in_step", [True, False], ids=["backfilled-before", "first-backfill"])
@pytest.mark.parametrize("deliver", ["--deliver", "--no-deliver"])
def test_a_live_save_between_the_row_read_and_the_ledger_read(
    settings, receiver, monkeypatch, in_step, deliver
):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)  # DISPATCH "worker"
    profiles = existing_profiles(3)
    target = profiles[1]
    if in_step:
        backfill("--workers", "1")  # every user's content sent and in the ledger
    thread = live_save_between_reads(monkeypatch, target.pk, "Berlin")

    backfill("--workers", "1", deliver)  # --no-deliver: recorded in the outbox instead

    thread.join()
    assert thread.errors == []  # type: ignore[attr-defined]
    assert_in_step_after_the_race(receiver, target.pk, "Berlin")


@pytest.mark.postgres
def test_inside_a_read_committed_transaction_the_race_is_caught_too(
    settings, receiver, monkeypatch
):
    # The caller's transaction fixes the isolation level (READ COMMITTED, Django's default):
    # no snapshot for the batch can be had, so the rows chosen are read again.
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    profiles = existing_profiles(3)
    backfill("--workers", "1")
    target = profiles[2]
    thread = live_save_between_reads(monkeypatch, target.pk, "Lisbon")

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SHOW transaction_isolation")
            assert cursor.fetchone()[0] == "read committed"
        backfill("--workers", "1")

    thread.join()
    assert thread.errors == []  # type: ignore[attr-defined]
    assert_in_step_after_the_race(receiver, target.pk, "Lisbon")


class LiveSaveThenRetry(Sink):
    """During the first send the host app saves the profile anew; the sink answers "retry"
    (or ``outcome``)."""

    def __init__(self, pk: int, city: str, outcome: Outcome | None = None) -> None:
        self.pk, self.city, self.sent = pk, city, 0
        self.outcome = outcome or Outcome.retry("busy", 0.01)

    def send(self, events: Any) -> SendResult:
        if not self.sent:
            profile = Profile.objects.get(pk=self.pk)
            profile.city = self.city
            profile.save()  # committed, and recorded by the live path, while on the wire
        self.sent += len(events)
        return SendResult.every(len(events), self.outcome)


def test_a_live_save_while_a_first_backfill_is_on_the_wire_keeps_its_ledger_entry(settings):
    # Enough new users for the bulk ledger insert (PostgreSQL with psycopg 3: a plain
    # insert, which the live save's entry makes fail, then the one that skips it).
    settings.TRACKING_ADAPTER = tracking(SINK="memory")
    profiles = existing_profiles(COPY_THRESHOLD + 10)
    target = profiles[7]
    sink = LiveSaveThenRetry(target.pk, "Oslo", Outcome.delivered())
    run = Backfill(get_source(), BackfillOptions(), sink=sink)

    list(run.run())

    assert sink.sent == len(profiles)
    [live] = OutboxEvent.objects.filter(status=Status.PENDING)
    assert live.payload["properties"]["enrichment_city"] == "Oslo"
    entries = dict(LedgerEntry.objects.values_list("subject_id", "message_id"))
    assert len(entries) == len(profiles)
    assert entries[target.tracking_user_id] == live.message_id  # the newer event's, kept
    assert run.stats.superseded == 1


def test_an_event_refused_while_a_live_save_superseded_it_is_not_kept_to_retry(settings):
    settings.TRACKING_ADAPTER = tracking(SINK="memory")
    [profile] = existing_profiles(1)
    sink = LiveSaveThenRetry(profile.pk, "Oslo")
    run = Backfill(get_source(), BackfillOptions(), sink=sink)

    list(run.run())

    assert sink.sent == 1  # the backfill sent the older content, refused for now
    # Only the live save's event is left to deliver: retrying the older one would deliver
    # it after the newer one.
    pending = list(OutboxEvent.objects.filter(status=Status.PENDING))
    assert [row.payload["properties"]["enrichment_city"] for row in pending] == ["Oslo"]
    entry = LedgerEntry.objects.get(subject_id=profile.tracking_user_id)
    assert entry.message_id == pending[0].message_id
    assert run.stats.to_retry == 0
    assert run.stats.superseded == 1
