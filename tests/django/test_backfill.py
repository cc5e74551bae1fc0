"""``manage.py backfill_user_enriched`` against a real loopback receiver, on SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import pty
import select
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from django_app.backfill import (
    BACKFILL_GC_THRESHOLDS,
    BACKFILL_SWITCH_INTERVAL,
    Backfill,
    BackfillOptions,
)
from django_app.models import LedgerEntry, OutboxEvent, Status
from django_app.runtime import get_source
from django_app.store import OutboxStore
from tests.django.helpers import REPO, thrivestack_to, tracking, worker_env
from tests.testapp.models import Account, Profile
from tracking_adapter import UserEnrichedEvent
from tracking_adapter.receiver import Scripted
from tracking_adapter.sinks import Outcome, SendResult, Sink
from tracking_adapter.wire_schema import event_json_schema

pytestmark = pytest.mark.django_db(transaction=True)

ENRICHED_AT = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def existing_profiles(count: int, *, start: int = 0) -> list[Profile]:
    """Enriched users that existed before the app was installed (no events recorded)."""
    account, _ = Account.objects.get_or_create(external_id="acct_1")
    users = User.objects.bulk_create(
        [User(username=f"bf{number}") for number in range(start, start + count)]
    )
    return Profile.objects.bulk_create(
        [
            Profile(
                user=user,
                account=account,
                city=f"City {number}",
                company="ThriveStack",
                enriched_at=ENRICHED_AT + timedelta(days=number % 10),
            )
            for number, user in zip(range(start, start + count), users, strict=True)
        ]
    )


def backfill(*args: str) -> str:
    out = io.StringIO()
    call_command("backfill_user_enriched", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_each_user_is_sent_once_and_reruns_send_only_what_changed(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    profiles = existing_profiles(2500)

    summary = backfill("--batch-size", "400")

    assert receiver.item_count == 2500
    assert receiver.duplicate_count == 0
    assert len({item["user_id"] for item in receiver.items}) == 2500
    assert "read:         2,500" in summary
    assert "sent:         2,500" in summary
    # Delivered straight away: the ledger holds each user's content, the outbox nothing.
    assert LedgerEntry.objects.count() == 2500
    assert OutboxEvent.objects.count() == 0
    # The event's timestamp is when the enrichment happened, not when the backfill ran.
    first = next(i for i in receiver.items if i["user_id"] == profiles[0].tracking_user_id)
    assert first["timestamp"] == "2024-03-01T12:00:00.000Z"
    assert first["properties"]["enrichment_city"] == "City 0"

    summary = backfill("--batch-size", "400")
    assert receiver.item_count == 2500
    assert "unchanged:    2,500" in summary

    changed = profiles[::25]
    Profile.objects.filter(pk__in=[p.pk for p in changed]).update(company="Acme")  # no signals
    summary = backfill("--batch-size", "400")
    assert receiver.item_count == 2500 + len(changed) == 2600
    assert {i["user_id"] for i in receiver.items[2500:]} == {p.tracking_user_id for p in changed}
    assert "sent:         100" in summary
    assert receiver.duplicate_count == 0


def test_an_interrupted_run_resumes_and_every_user_ends_delivered_once(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    existing_profiles(1200)
    run = Backfill(get_source(), BackfillOptions(batch_size=200))
    for batches, _stats in enumerate(run.run(), start=1):
        if batches == 2:
            run.stopping = True  # what Ctrl-C does
    assert run.stats.read < 1200

    summary = backfill("--batch-size", "200")

    assert "read:         1,200" in summary
    assert len({item["user_id"] for item in receiver.items}) == 1200
    assert receiver.duplicate_count == 0
    assert LedgerEntry.objects.count() == 1200


def test_a_crash_after_sending_loses_nothing_and_the_resend_keeps_its_message_ids(
    settings, receiver
):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    existing_profiles(300)

    # The run dies after the sink accepted a batch and before the ledger was written.
    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    run = Backfill(get_source(), BackfillOptions(batch_size=100))
    with (
        mock.patch.object(OutboxStore, "write_ledger_if_unchanged", crash),
        pytest.raises(KeyboardInterrupt),
    ):
        list(run.run())
    assert receiver.item_count == 100
    assert LedgerEntry.objects.count() == 0

    summary = backfill("--batch-size", "100")  # the re-run sends that batch again

    assert "sent:         300" in summary
    assert len({item["user_id"] for item in receiver.items}) == 300
    assert receiver.item_count == 400
    # The 100 sent twice are the same items (same content and enrichment time, so the
    # same derived message id): a collector that deduplicates drops them.
    assert receiver.duplicate_count == 100
    assert "unchanged:    300" in backfill("--batch-size", "100")


def test_no_deliver_leaves_every_event_in_the_outbox_for_the_workers(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    existing_profiles(300)
    run = Backfill(get_source(), BackfillOptions(batch_size=300, deliver=False))
    list(run.run())
    assert OutboxEvent.objects.filter(status=Status.PENDING).count() == 300
    assert receiver.item_count == 0

    backfill()  # a re-run skips those users: the ledger has them
    assert receiver.item_count == 0
    call_command("deliver_events", "--once", stdout=io.StringIO())  # the worker delivers
    assert receiver.item_count == 300
    assert receiver.duplicate_count == 0


def test_what_the_sink_does_not_accept_is_kept_in_the_outbox_retried_or_dead(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    profiles = existing_profiles(250)
    bad = profiles[150].tracking_user_id
    receiver.reject = lambda item: "bad city" if item["user_id"] == bad else None
    receiver.script(Scripted(500, {"message": "boom"}))  # the first batch fails, for now

    summary = backfill("--batch-size", "100")

    assert receiver.item_count == 149  # batches 2 and 3, but the one refused
    assert "sent:         149" in summary
    assert "to retry:     100" in summary
    assert "rejected:     1" in summary
    assert "bad city" in summary
    pending = OutboxEvent.objects.filter(status=Status.PENDING)
    assert pending.count() == 100
    assert all(row.attempts == 1 and "500" in row.last_error for row in pending)
    dead = OutboxEvent.objects.get(status=Status.DEAD)
    assert dead.user_id == bad
    assert "bad city" in dead.last_error
    assert LedgerEntry.objects.count() == 250  # sent, or the outbox's to send

    assert "unchanged:    250" in backfill()  # a re-run does not send them a second time
    assert receiver.item_count == 149
    OutboxEvent.objects.update(next_attempt_at=timezone.now())
    call_command("deliver_events", "--once", stdout=io.StringIO())
    assert receiver.item_count == 249
    assert len({item["user_id"] for item in receiver.items}) == 249
    assert receiver.duplicate_count == 0


def test_dry_run_prints_valid_items_and_records_nothing(settings, receiver):
    from jsonschema import Draft202012Validator

    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    existing_profiles(30)
    out, err = io.StringIO(), io.StringIO()
    call_command("backfill_user_enriched", "--dry-run", stdout=out, stderr=err)

    lines = out.getvalue().splitlines()
    assert len(lines) == 30
    validator = Draft202012Validator(event_json_schema())
    for line in lines:
        item = json.loads(line)
        assert list(validator.iter_errors(item)) == []
        UserEnrichedEvent.model_validate(item)
    assert OutboxEvent.objects.count() == 0
    assert LedgerEntry.objects.count() == 0
    assert receiver.item_count == 0
    assert "would record: 30" in err.getvalue()


def test_bad_rows_are_reported_with_their_pk_and_field_and_the_rest_goes(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    profiles = existing_profiles(50)
    Profile.objects.filter(pk=profiles[10].pk).update(account=None)  # no group id

    summary = backfill()

    assert receiver.item_count == 49
    assert "invalid:      1" in summary
    assert f"invalid row pk={profiles[10].pk}: group_id: missing" in summary


def test_filters_since_until_limit_and_user_id(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    profiles = existing_profiles(40)

    backfill("--since", "2024-03-05", "--until", "2024-03-07")
    days = {item["timestamp"][:10] for item in receiver.items}
    assert days == {"2024-03-05", "2024-03-06"}
    assert receiver.item_count == 8

    receiver.clear()
    backfill("--limit", "5", "--force")
    assert receiver.item_count == 5

    receiver.clear()
    wanted = [profiles[3].tracking_user_id, profiles[33].tracking_user_id]
    backfill("--user-id", wanted[0], "--user-id", wanted[1], "--force")
    assert sorted(item["user_id"] for item in receiver.items) == sorted(wanted)


def test_bad_options_are_command_errors(settings):
    with pytest.raises(CommandError, match="--since"):
        backfill("--since", "last tuesday")
    with pytest.raises(CommandError, match="batch-size"):
        backfill("--batch-size", "0")
    with pytest.raises(CommandError, match="no installed model"):
        backfill("--model", "testapp.Nope")
    settings.TRACKING_ADAPTER = {"SINK": "memory"}
    with pytest.raises(CommandError, match="SOURCE"):
        backfill()


def test_a_terminal_shows_a_progress_bar_with_rate_and_eta(receiver):
    existing_profiles(600)
    primary, secondary = pty.openpty()
    worker = subprocess.Popen(
        [sys.executable, "-m", "django", "backfill_user_enriched", "--batch-size", "100"],
        env=worker_env(receiver),
        cwd=REPO,
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=secondary,
    )
    os.close(secondary)
    screen = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(primary, 4096)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    out, _ = worker.communicate(timeout=60)
    os.close(primary)
    assert worker.returncode == 0
    text = screen.decode()
    assert "rows/s" in text
    assert "ETA" in text
    assert "600/600 read" in text
    assert "sent:         600" in out.decode()
    assert receiver.item_count == 600


def test_without_a_terminal_only_the_summary_is_printed(receiver):
    existing_profiles(20)
    result = subprocess.run(
        [sys.executable, "-m", "django", "backfill_user_enriched"],
        env=worker_env(receiver),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("backfill finished in")
    quiet = subprocess.run(
        [sys.executable, "-m", "django", "backfill_user_enriched", "--verbosity", "0"],
        env=worker_env(receiver),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert quiet.returncode == 0
    assert quiet.stdout == ""


def test_workers_option_takes_a_count_or_auto():
    from django_app.management.commands.backfill_user_enriched import AUTO, workers_option

    assert workers_option("auto") == AUTO
    assert workers_option("3") == 3
    for bad in ("0", "-1", "many"):
        with pytest.raises(argparse.ArgumentTypeError, match="or 'auto'"):
            workers_option(bad)
    with pytest.raises(CommandError, match="--workers"):
        backfill("--workers", "0")


def test_auto_workers_use_the_cpus_only_for_large_runs_on_postgresql(monkeypatch):
    from django_app.management.commands import backfill_user_enriched as command

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    big = 20 * 1000
    assert command.auto_workers(big, BackfillOptions(), "postgresql") == command.MAX_AUTO_WORKERS
    assert command.auto_workers(big - 1, BackfillOptions(), "postgresql") == 1
    assert command.auto_workers(big, BackfillOptions(), "sqlite") == 1
    assert command.auto_workers(big, BackfillOptions(limit=big), "postgresql") == 1
    assert command.auto_workers(big, BackfillOptions(dry_run=True), "postgresql") == 1
    assert command.auto_workers(2000, BackfillOptions(batch_size=100), "postgresql") == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert command.auto_workers(big, BackfillOptions(), "postgresql") == 2


@pytest.mark.postgres
def test_by_default_a_large_run_on_postgresql_is_shared_by_processes(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    existing_profiles(1000)

    summary = backfill("--batch-size", "50")  # 20 batches: enough for --workers auto

    expected = min(len(os.sched_getaffinity(0)), 4)
    if expected > 1:
        assert f", {expected} processes)" in summary
    assert "sent:         1,000" in summary
    assert len({item["user_id"] for item in receiver.items}) == 1000
    assert receiver.duplicate_count == 0


class LiveSaveDuringSend(Sink):
    """Delivers everything; during the first send the host app saves one profile anew."""

    def __init__(self, profile: Profile, city: str) -> None:
        self.profile, self.city, self.sent = profile, city, 0

    def send(self, events):
        if not self.sent:
            self.profile.city = self.city
            self.profile.save()  # a live save, committed while the batch is on the wire
        self.sent += len(events)
        return SendResult.every(len(events), Outcome.delivered())


def test_a_live_save_during_the_send_keeps_its_ledger_entry(settings):
    settings.TRACKING_ADAPTER = tracking(SINK="memory")
    [profile] = existing_profiles(1)
    profile.refresh_from_db()  # loaded as the host would: its snapshot says city "City 0"
    sink = LiveSaveDuringSend(profile, city="Berlin")

    list(Backfill(get_source(), BackfillOptions(), sink=sink).run())

    assert sink.sent == 1  # the backfill sent "City 0"
    live = OutboxEvent.objects.get(status=Status.PENDING)  # the live save recorded "Berlin"
    assert (
        LedgerEntry.objects.get(subject_id=profile.tracking_user_id).message_id == live.message_id
    )
    profile.city = "City 0"  # back to what the backfill sent: news after "Berlin"
    profile.save()
    assert OutboxEvent.objects.filter(status=Status.PENDING).count() == 2


@pytest.mark.postgres
def test_rows_of_one_user_in_consecutive_batches_are_sent_once(settings, receiver):
    # Every profile maps to the same user and content: the batch on the wire has not
    # written the ledger when the next one is checked.
    same_user = {
        "MODEL": "testapp.Profile",
        "USER_ID": "account.external_id",
        "GROUP_ID": "account.external_id",
        "TIMESTAMP": "enriched_at",
        "PROPERTIES": {"enrichment_employment_name": "company"},
    }
    settings.TRACKING_ADAPTER = thrivestack_to(receiver, SOURCE=same_user)
    existing_profiles(6)

    summary = backfill("--batch-size", "1", "--workers", "1")

    assert receiver.item_count == 1
    assert "sent:         1\n" in summary
    assert "unchanged:    5" in summary


@pytest.mark.postgres
def test_inside_a_transaction_or_a_capture_the_run_stays_in_one_process(settings, receiver):
    from django_app.testing import capture_events

    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    with transaction.atomic():
        existing_profiles(25)
        summary = backfill("--batch-size", "1")  # 25 batches: auto would fork
        assert "processes" not in summary
        assert receiver.item_count == 25
    assert Profile.objects.count() == 25  # the caller's transaction was not broken
    with pytest.raises(CommandError, match=r"transaction\.atomic"), transaction.atomic():
        backfill("--workers", "2")

    with capture_events() as captured:
        backfill("--batch-size", "1", "--force")
    assert len(captured) == 25
    assert receiver.item_count == 25  # captured, not sent


class NotesTheCollector(Sink):
    def __init__(self) -> None:
        self.seen: set[tuple[bool, tuple[int, int, int]]] = set()

    def send(self, events):
        self.seen.add((gc.isenabled(), gc.get_threshold()))
        return SendResult.every(len(events), Outcome.delivered())


def test_a_run_collects_garbage_less_often_and_restores_the_collector_after(settings):
    settings.TRACKING_ADAPTER = tracking()
    existing_profiles(30)
    before = gc.get_threshold()
    sink = NotesTheCollector()
    run = Backfill(get_source(), BackfillOptions(batch_size=10), sink=sink)

    for _ in run.run():
        assert gc.get_threshold() == BACKFILL_GC_THRESHOLDS
    assert sink.seen == {(True, BACKFILL_GC_THRESHOLDS)}  # less often, never off
    assert run.stats.sent == 30
    assert gc.get_threshold() == before

    stopped = Backfill(get_source(), BackfillOptions(batch_size=10, force=True), sink=sink)
    batches = stopped.run()
    next(batches)
    assert gc.get_threshold() == BACKFILL_GC_THRESHOLDS
    batches.close()  # a caller that stops iterating midway gets the collector back too
    assert gc.get_threshold() == before


class NotesTheSwitchInterval(Sink):
    def __init__(self) -> None:
        self.seen: set[float] = set()

    def send(self, events):
        self.seen.add(sys.getswitchinterval())  # in the sending thread
        return SendResult.every(len(events), Outcome.delivered())


def test_a_run_hands_the_interpreter_to_the_sender_sooner_and_restores_the_interval(settings):
    settings.TRACKING_ADAPTER = tracking()
    existing_profiles(30)
    before = sys.getswitchinterval()
    assert BACKFILL_SWITCH_INTERVAL is not None
    assert before > BACKFILL_SWITCH_INTERVAL
    sink = NotesTheSwitchInterval()
    run = Backfill(get_source(), BackfillOptions(batch_size=10), sink=sink)

    for _ in run.run():
        assert sys.getswitchinterval() == pytest.approx(BACKFILL_SWITCH_INTERVAL)
    assert sorted(sink.seen) == [pytest.approx(BACKFILL_SWITCH_INTERVAL)]
    assert run.stats.sent == 30
    assert sys.getswitchinterval() == before

    stopped = Backfill(get_source(), BackfillOptions(batch_size=10, force=True), sink=sink)
    batches = stopped.run()
    next(batches)
    batches.close()  # stopped midway: restored too
    assert sys.getswitchinterval() == before
