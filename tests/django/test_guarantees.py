"""The host never breaks because of tracking, whatever the database does with our statement.

Each test makes the save path's statement fail for a reason that is not the data (a lock
wait that times out, a statement timeout, the recording function gone after it was looked
up) inside the host's own ``atomic()`` block, and checks that the host's data is committed
all the same: a failed statement of ours must not abort the host's transaction.
"""

from __future__ import annotations

import logging

import pytest
from django.db import connection, transaction

from django_app.models import LedgerEntry, OutboxEvent
from django_app.store import get_store
from django_app.store.postgres import RECORD_FUNCTION, RECORD_SIGNATURE
from tests.django.helpers import make_profile, other_session, pg_driver, tracking
from tests.testapp.models import Account, Profile

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

FIELD_SOURCE = {
    "MODEL": "testapp.Profile",
    "USER_ID": "tracking_user_id",
    "GROUP_ID": "account.external_id",
    "PROPERTIES": {"enrichment_city": "city"},
}


@pytest.fixture
def tracked(settings):
    settings.TRACKING_ADAPTER = tracking(SOURCE=FIELD_SOURCE)
    Account.objects.get_or_create(external_id="acct_1")
    profile = make_profile(city="Pune")
    assert LedgerEntry.objects.filter(subject_id=profile.tracking_user_id).exists()
    yield profile
    with connection.cursor() as cursor:
        cursor.execute("RESET lock_timeout; RESET statement_timeout")


@pytest.mark.parametrize("timeout", ["lock_timeout", "statement_timeout"])
def test_a_timed_out_statement_of_ours_leaves_the_hosts_transaction_committed(
    tracked, timeout, caplog
):
    user = tracked.tracking_user_id
    with other_session() as other:  # another request, say
        # Another transaction holds the user's ledger row: our upsert has to wait for it.
        other.execute(
            "SELECT 1 FROM django_app_ledgerentry WHERE subject_id = %s FOR UPDATE", [user]
        )
        with connection.cursor() as cursor:
            cursor.execute(f"SET {timeout} = '150ms'")
        with transaction.atomic():  # the host's transaction (ATOMIC_REQUESTS, say)
            tracked.city = "Mumbai"
            tracked.save()
            tracked.account.name = "renamed in the same transaction"
            tracked.account.save()  # the host goes on: its transaction is still usable
        other.rollback()
    tracked.refresh_from_db()
    assert tracked.city == "Mumbai"
    assert Account.objects.get(pk=tracked.account_id).name == "renamed in the same transaction"
    assert OutboxEvent.objects.filter(user_id=user).count() == 1  # the Mumbai event was lost
    assert any("not recorded" in r.getMessage() for r in caplog.records)


def test_a_recording_function_gone_after_it_was_looked_up_leaves_the_host_intact(tracked, caplog):
    store = get_store()
    store._function_present = True
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER FUNCTION {RECORD_SIGNATURE} RENAME TO {RECORD_FUNCTION}_x")
    try:
        with transaction.atomic():
            tracked.city = "Mumbai"
            tracked.save()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                f"ALTER FUNCTION {RECORD_FUNCTION}_x"
                f"{RECORD_SIGNATURE.removeprefix(RECORD_FUNCTION)} "
                f"RENAME TO {RECORD_FUNCTION}"
            )
    assert Profile.objects.get(pk=tracked.pk).city == "Mumbai"
    assert any(r.levelno >= logging.ERROR for r in caplog.records)
    # Looked up again, found again: the next change is recorded the fast way.
    tracked.city = "Delhi"
    with transaction.atomic():
        tracked.save()
    assert store._function_present
    assert OutboxEvent.objects.filter(user_id=tracked.tracking_user_id).count() == 2


def test_the_protected_call_is_still_one_round_trip(tracked):
    from django.test.utils import CaptureQueriesContext

    tracked.city = "Mumbai"
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        tracked.save()
    statements = [q["sql"] for q in queries.captured_queries]
    ours = [n for n, sql in enumerate(statements) if RECORD_FUNCTION in sql]
    assert len(ours) == 1, statements
    call = statements[ours[0]]
    if pg_driver() == "psycopg":  # the savepoint goes in the same string as the call
        assert call.startswith("SAVEPOINT "), call
        assert "RELEASE SAVEPOINT" in call, call
    else:  # psycopg2: Django's own savepoint around the call, three statements
        assert call.startswith(f"SELECT * FROM {RECORD_FUNCTION}("), call
        before, after = statements[ours[0] - 1], statements[ours[0] + 1]
        assert before.startswith("SAVEPOINT "), statements
        assert after == "RELEASE " + before, statements
