"""``manage.py prune_events``: only old delivered rows go; pending and dead rows always stay."""

from __future__ import annotations

import io
import itertools
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from django_app.management.commands.prune_events import parse_age
from django_app.models import OutboxEvent, Status

pytestmark = pytest.mark.django_db

_ids = itertools.count()


def row(status: str, *, delivered_ago: timedelta | None = None, created_ago: timedelta) -> int:
    now = timezone.now()
    event = OutboxEvent.objects.create(
        message_id=f"prune-{next(_ids)}",
        user_id="user_1",
        payload={},
        status=status,
        created_at=now - created_ago,
        next_attempt_at=now - created_ago,
        delivered_at=None if delivered_ago is None else now - delivered_ago,
    )
    return event.pk


def prune(*args: str) -> str:
    out = io.StringIO()
    call_command("prune_events", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def remaining() -> set[int]:
    return set(OutboxEvent.objects.values_list("pk", flat=True))


@pytest.fixture
def rows() -> dict[str, int]:
    day = timedelta(days=1)
    return {
        "old_delivered": row(Status.DELIVERED, delivered_ago=10 * day, created_ago=11 * day),
        "older_delivered": row(Status.DELIVERED, delivered_ago=400 * day, created_ago=400 * day),
        "recent_delivered": row(Status.DELIVERED, delivered_ago=2 * day, created_ago=30 * day),
        "old_pending": row(Status.PENDING, created_ago=60 * day),
        "old_dead": row(Status.DEAD, created_ago=60 * day),
        # A row delivered long ago and then requeued by hand: pending, so it stays.
        "requeued": row(Status.PENDING, delivered_ago=60 * day, created_ago=60 * day),
        "dead_after_delivery": row(Status.DEAD, delivered_ago=60 * day, created_ago=60 * day),
    }


def test_deletes_only_delivered_rows_older_than_the_age(rows: dict[str, int]) -> None:
    out = prune("--older-than", "7d")
    assert remaining() == {
        rows["recent_delivered"],
        rows["old_pending"],
        rows["old_dead"],
        rows["requeued"],
        rows["dead_after_delivery"],
    }
    assert "deleted 2 " in out


def test_age_is_measured_from_delivery_not_creation(rows: dict[str, int]) -> None:
    # recent_delivered was created 30 days ago but delivered 2 days ago.
    prune("--older-than", "3w")
    assert rows["recent_delivered"] in remaining()
    assert rows["old_delivered"] in remaining()  # 10 days < 3 weeks
    assert rows["older_delivered"] not in remaining()


def test_dry_run_deletes_nothing_and_reports_the_count(rows: dict[str, int]) -> None:
    before = remaining()
    out = prune("--older-than", "7d", "--dry-run")
    assert remaining() == before
    assert "would delete 2 " in out
    assert out.rstrip().endswith(" UTC")  # the cutoff says its time zone


def test_dry_run_counts_what_a_real_run_deletes(rows: dict[str, int]) -> None:
    out = prune("--older-than", "1d", "--dry-run")
    assert "would delete 3 " in out
    assert "deleted 3 " in prune("--older-than", "1d")


def test_default_age_is_seven_days(rows: dict[str, int]) -> None:
    prune()
    assert rows["old_delivered"] not in remaining()
    assert rows["recent_delivered"] in remaining()


def test_nothing_to_delete(rows: dict[str, int]) -> None:
    before = remaining()
    assert "deleted 0 " in prune("--older-than", "1000w")
    assert remaining() == before


def test_deletes_across_several_batches() -> None:
    old = timedelta(days=30)
    ids = [row(Status.DELIVERED, delivered_ago=old, created_ago=old) for _ in range(7)]
    keep = row(Status.PENDING, created_ago=old)
    out = prune("--older-than", "7d", "--batch-size", "2")
    assert remaining() == {keep}
    assert "deleted 7 " in out
    assert len(ids) == 7


@pytest.mark.parametrize("bad", ["xyz", "7", "d", "7x", "-7d", "7 days", ""])
def test_bad_age_raises_command_error_naming_the_option(bad: str) -> None:
    with pytest.raises(CommandError, match="--older-than"):
        prune(f"--older-than={bad}")


def test_bad_age_deletes_nothing(rows: dict[str, int]) -> None:
    before = remaining()
    with pytest.raises(CommandError):
        prune("--older-than", "xyz")
    assert remaining() == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        (" 3d ", timedelta(days=3)),
    ],
)
def test_parse_age_units(text: str, expected: timedelta) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize(
    ("age", "kept"),
    [
        # A row delivered 2 hours ago, pruned with each unit around that age.
        ("7140s", False),
        ("7260s", True),
        ("119m", False),
        ("121m", True),
        ("1h", False),
        ("3h", True),
        ("1d", True),
        ("1w", True),
    ],
)
def test_units_through_the_command(age: str, kept: bool) -> None:
    pk = row(Status.DELIVERED, delivered_ago=timedelta(hours=2), created_ago=timedelta(hours=3))
    prune("--older-than", age)
    assert (pk in remaining()) is kept


def test_command_output_respects_stdout_option(rows: Any) -> None:
    out = prune("--older-than=7d")
    assert out.strip().startswith("deleted")


@pytest.mark.parametrize("size", ["0", "-1"])
def test_bad_batch_size_raises_command_error(size: str) -> None:
    old = timedelta(days=30)
    pk = row(Status.DELIVERED, delivered_ago=old, created_ago=old)
    with pytest.raises(CommandError, match="--batch-size"):
        prune("--older-than", "7d", f"--batch-size={size}")
    assert pk in remaining()
