"""The fast paths keep the same behaviour as the general ones."""

from __future__ import annotations

import io
import os

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from django_app.backfill import Backfill, BackfillOptions
from django_app.models import LedgerEntry, OutboxEvent
from django_app.runtime import get_source
from django_app.store import DuplicateMessageId, get_store
from django_app.store.postgres import RECORD_FUNCTION
from tests.django.helpers import make_profile, pg_driver, thrivestack_to, tracking
from tests.django.test_backfill import existing_profiles
from tracking_adapter import UserEnrichedEvent

pytestmark = pytest.mark.django_db(transaction=True)

FIELD_PATH_SOURCE = {
    "MODEL": "testapp.Profile",
    "USER_ID": "user.username",
    "GROUP_ID": "account.external_id",
    "TIMESTAMP": "enriched_at",
    "PROPERTIES": {"enrichment_city": "city", "enrichment_employment_name": "company"},
}


def test_reading_tuples_builds_the_same_events_as_reading_instances(settings):
    settings.TRACKING_ADAPTER = tracking(SOURCE=FIELD_PATH_SOURCE)
    existing_profiles(20)
    fast = Backfill(get_source(), BackfillOptions(batch_size=50))
    assert fast.columns() is not None
    [rows] = list(fast.batches())
    from_tuples = fast.build(rows)

    settings.TRACKING_ADAPTER = tracking(
        SOURCE={
            **FIELD_PATH_SOURCE,
            "PROPERTIES": {
                "enrichment_city": lambda p: p.city,  # a callable forces the instance path
                "enrichment_employment_name": "company",
            },
        }
    )
    slow = Backfill(get_source(), BackfillOptions(batch_size=50))
    assert slow.columns() is None
    [instances] = list(slow.batches())
    from_instances = slow.build(instances)

    assert [e.to_thrivestack() for e in from_tuples] == [e.to_thrivestack() for e in from_instances]
    assert [e.message_id for e in from_tuples] == [e.message_id for e in from_instances]


@pytest.mark.postgres
def test_a_tracked_save_costs_one_statement_on_postgresql(settings):
    settings.TRACKING_ADAPTER = tracking(SOURCE=FIELD_PATH_SOURCE)
    profile = make_profile(city="Pune")
    profile.city = "Mumbai"
    with CaptureQueriesContext(connection) as tracked, transaction.atomic():
        profile.save()
    profile.visits += 1  # not mapped: no event, no statement
    with CaptureQueriesContext(connection) as untracked, transaction.atomic():
        profile.save()
    statements = [q["sql"] for q in tracked.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
    if pg_driver() == "psycopg":
        assert len(statements) == 2, statements  # the UPDATE and our one call (in a savepoint)
        assert statements[1].startswith("SAVEPOINT "), statements[1]
        assert f"; SELECT * FROM {RECORD_FUNCTION}(" in statements[1], statements[1]
        assert len(untracked.captured_queries) == len(tracked.captured_queries) - 1
        # The same savepoint name each time: psycopg parses a query string it has seen once.
        profile.city = "Delhi"
        with CaptureQueriesContext(connection) as again, transaction.atomic():
            profile.save()
        [call] = [q["sql"] for q in again.captured_queries if RECORD_FUNCTION in q["sql"]]
        assert call.split(";")[0] == statements[1].split(";")[0], (call, statements[1])
    else:  # psycopg2: Django's own savepoint, the call, the release (three statements)
        assert len(statements) == 4, statements
        savepoint, call, release = statements[1:]
        assert savepoint.startswith("SAVEPOINT "), statements
        assert call.startswith(f"SELECT * FROM {RECORD_FUNCTION}("), statements
        assert release == "RELEASE " + savepoint, statements
        assert len(untracked.captured_queries) == len(tracked.captured_queries) - 3
    expected = 3 if pg_driver() == "psycopg" else 2
    assert OutboxEvent.objects.filter(user_id=profile.user.username).count() == expected


def test_the_pass_runs_on_the_database_and_driver_it_asked_for():
    """A pass that silently fell back (psycopg 3 in the psycopg2 pass, SQLite for MariaDB)
    would pass while testing nothing new."""
    connection.ensure_connection()
    raw = type(connection.connection).__module__.split(".")[0]
    database = os.environ.get("TEST_DATABASE") or "sqlite"
    if database == "postgres":
        from django.db.backends.postgresql.psycopg_any import is_psycopg3

        wanted = os.environ.get("TEST_PG_DRIVER") or "psycopg"
        assert connection.vendor == "postgresql"
        assert is_psycopg3 == (wanted == "psycopg")
        assert raw == wanted, type(connection.connection)
        store = type(get_store()).__name__
        assert store == ("Psycopg3Store" if wanted == "psycopg" else "PostgresStore"), store
    elif database == "mariadb":
        assert connection.vendor == "mysql"
        assert connection.mysql_is_mariadb, connection.mysql_server_info
        assert raw == "MySQLdb", type(connection.connection)
    else:
        assert connection.vendor == "sqlite"


@pytest.mark.postgres
def test_workers_split_the_backfill_and_send_each_user_once(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver, SOURCE=FIELD_PATH_SOURCE)
    existing_profiles(1500)
    out = io.StringIO()
    call_command("backfill_user_enriched", "--workers", "3", "--batch-size", "200", stdout=out)
    assert receiver.item_count == 1500
    assert receiver.duplicate_count == 0
    assert "sent:         1,500" in out.getvalue()
    assert LedgerEntry.objects.count() == 1500
    assert not OutboxEvent.objects.exists()


def test_exclusions_drop_only_what_is_there_and_keep_a_chosen_message_id(settings):
    from django_app.recording import apply_exclusions

    settings.TRACKING_ADAPTER = tracking(EXCLUDE_PROPERTIES=["enrichment_city"])
    clean = UserEnrichedEvent(user_id="u", group_id="g", properties={"enrichment_state": "MH"})
    assert apply_exclusions(clean) is clean  # nothing to drop: not validated again

    chosen = UserEnrichedEvent(
        user_id="u", group_id="g", message_id="mine-1", properties={"enrichment_city": "Pune"}
    )
    dropped = apply_exclusions(chosen)
    assert dropped.properties.enrichment_city == ""
    assert dropped.message_id == "mine-1"

    derived = UserEnrichedEvent(user_id="u", group_id="g", properties={"enrichment_city": "Pune"})
    assert (
        apply_exclusions(derived).message_id != derived.message_id
    )  # re-derived from the kept data


@pytest.mark.postgres
def test_without_the_function_saves_are_recorded_the_slower_way_and_the_host_goes_on(
    settings, caplog
):
    from tests.django.test_store_sql import V2

    settings.TRACKING_ADAPTER = tracking(SOURCE=FIELD_PATH_SOURCE)
    profile = make_profile(city="Pune")
    store = get_store()
    store._function_present = False
    try:
        with transaction.atomic():  # the host's transaction, as with ATOMIC_REQUESTS
            with connection.cursor() as cursor:  # code deployed before migrate
                cursor.execute(V2.V2_DROP)
            profile.city = "Mumbai"
            profile.save()
            assert OutboxEvent.objects.filter(user_id=profile.user.username).count() == 2
            assert any("manage.py migrate django_app" in r.getMessage() for r in caplog.records)
            transaction.set_rollback(True)  # puts the function back
    finally:
        store._function_present = False
        store._function_missing_since = None
    profile.city = "Delhi"
    profile.save()
    assert OutboxEvent.objects.filter(user_id=profile.user.username).count() == 2  # 1 + Delhi


def test_a_reused_message_id_writes_nothing_and_is_reported_alike_on_every_database():
    from django_app.recording import record_event

    first = UserEnrichedEvent(user_id="u", group_id="g", message_id="mine-1")
    changed = UserEnrichedEvent(
        user_id="u", group_id="g", message_id="mine-1", properties={"enrichment_city": "Pune"}
    )
    with transaction.atomic():
        assert record_event(first).created
        with pytest.raises(DuplicateMessageId, match="mine-1"):
            record_event(changed)
        # Nothing was written, and the transaction still works.
        assert LedgerEntry.objects.get(subject_id="u").content_hash == first.content_hash()
        assert OutboxEvent.objects.filter(user_id="u").count() == 1
