"""``manage.py forget_user_enriched``: erasure requests."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from django_app.models import LedgerEntry, OutboxEvent, Status
from tests.django.helpers import make_profile

pytestmark = pytest.mark.django_db


def forget(*args: str) -> str:
    out = io.StringIO()
    call_command("forget_user_enriched", *args, stdout=out)
    return out.getvalue()


def test_deletes_every_row_and_the_ledger_entry_of_that_user_only():
    erased = make_profile(city="Pune")
    kept = make_profile(city="Berlin")
    erased.city = "Mumbai"
    erased.save()
    OutboxEvent.objects.filter(user_id=erased.tracking_user_id).update(status=Status.DELIVERED)
    OutboxEvent.objects.create(
        message_id="dead-1", user_id=erased.tracking_user_id, payload={}, status=Status.DEAD
    )
    assert OutboxEvent.objects.filter(user_id=erased.tracking_user_id).count() == 3

    text = forget(erased.tracking_user_id)

    assert "deleted 3 outbox row(s) and 1 ledger entry" in text
    assert not OutboxEvent.objects.filter(user_id=erased.tracking_user_id).exists()
    assert not LedgerEntry.objects.filter(subject_id=erased.tracking_user_id).exists()
    assert OutboxEvent.objects.filter(user_id=kept.tracking_user_id).count() == 1
    assert LedgerEntry.objects.filter(subject_id=kept.tracking_user_id).exists()


def test_dry_run_counts_and_keeps_everything():
    profile = make_profile(city="Pune")
    text = forget(profile.tracking_user_id, "--dry-run")
    assert "would delete 1 outbox row(s) and 1 ledger entry" in text
    assert OutboxEvent.objects.count() == 1


def test_empty_user_id_is_refused():
    with pytest.raises(CommandError, match="USER_ID"):
        forget(" ")
