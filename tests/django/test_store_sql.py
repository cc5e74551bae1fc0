"""The store's SQL and the models agree: the function's column list, the raw-insert column
list and the migrations; and every database gives a recording the same message id."""

from __future__ import annotations

import importlib
import re
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_app.models import LedgerEntry, OutboxEvent
from django_app.recording import record_event
from django_app.store import chain_message_id, get_store
from django_app.store.base import COPY_THRESHOLD, outbox_values
from django_app.store.postgres import RECORD_FUNCTION, RECORD_SIGNATURE, Psycopg3Store
from tracking_adapter import EVENT_NAME, UserEnrichedEvent

V2 = importlib.import_module("django_app.migrations.0003_event_kinds")
V2_SOURCE = V2.V2_SQL.read_text(encoding="utf-8")


def columns(model: type) -> set[str]:
    return {field.column for field in model._meta.concrete_fields} - {"id"}


def inserted_columns(table: str) -> set[str]:
    match = re.search(rf"INSERT INTO {table}(?: AS \w+)? \(([^)]*)\)", V2_SOURCE)
    assert match, f"no INSERT INTO {table} in {V2.V2_SQL.name}"
    return {name.strip() for name in match.group(1).split(",")}


def test_the_function_inserts_every_outbox_column():
    # A column added to the model but not to the function fails its NOT NULL inside the
    # host's transaction: add it to a new version of the function (a new SQL file).
    assert inserted_columns(OutboxEvent._meta.db_table) == columns(OutboxEvent)


def test_the_function_writes_every_ledger_column():
    assert inserted_columns(LedgerEntry._meta.db_table) == columns(LedgerEntry)


def test_raw_inserts_write_every_outbox_column():
    event = UserEnrichedEvent(user_id="u", group_id="g")
    assert set(outbox_values(event, event.content_hash(), datetime.now(UTC), None)) == columns(
        OutboxEvent
    )


def test_the_store_calls_the_version_the_migration_creates():
    assert f"CREATE OR REPLACE FUNCTION {RECORD_FUNCTION}(" in V2_SOURCE
    assert RECORD_FUNCTION in V2.V2_DROP
    drop_record = V2.V2_DROP.split(";")[0]
    assert drop_record.count(",") == RECORD_SIGNATURE.count(",")


def test_constraint_names_in_the_sql_are_the_models():
    names = {c.name for m in (OutboxEvent, LedgerEntry) for c in m._meta.constraints}
    assert set(re.findall(r"ON CONSTRAINT (\w+)", V2_SOURCE)) <= names


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_migration_creates_and_drops_the_function():
    def present() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_proc WHERE proname = %s", [RECORD_FUNCTION])
            return int(cursor.fetchone()[0])

    assert present() == 1
    with connection.cursor() as cursor:
        cursor.execute(V2.V2_DROP)  # what migrating back past 0003 runs
    try:
        assert present() == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute(V2_SOURCE)
        get_store()._function_present = False
    assert present() == 1


# -- the same ids on every database ----------------------------------------------------------


def recordings() -> list[UserEnrichedEvent]:
    """A, then B, then A again, then A forced: four recordings of one user."""
    at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    a = {"enrichment_city": "Pune"}
    b = {"enrichment_city": "Delhi"}
    return [
        UserEnrichedEvent(user_id="u_same", group_id="g", timestamp=at, properties=props)
        for props in (a, b, a, a)
    ]


# Computed once by hand from the rules (derived id, then chain_message_id); the same on
# SQLite, PostgreSQL and MariaDB, so a resend after moving databases is deduplicated.
def expected_ids() -> list[str]:
    events = recordings()
    first = events[0].message_id
    second = chain_message_id(EVENT_NAME, first, events[1].message_id)
    third = chain_message_id(EVENT_NAME, second, events[2].message_id)
    fourth = chain_message_id(EVENT_NAME, third, events[3].message_id)
    return [first, second, third, fourth]


@pytest.mark.django_db(transaction=True)
def test_a_recording_gets_the_same_message_id_on_every_database():
    events = recordings()
    ids = []
    for index, event in enumerate(events):
        recorded = record_event(event, force=index == 3)
        assert recorded.created
        ids.append(recorded.event.message_id)
    assert ids == expected_ids()
    stored = list(OutboxEvent.objects.order_by("id").values_list("message_id", "payload"))
    assert [m for m, _ in stored] == ids
    assert [p["message_id"] for _, p in stored] == ids  # the payload carries the same id
    assert LedgerEntry.objects.get(subject_id="u_same").message_id == ids[-1]
    assert len(set(ids)) == 4


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_sql_chain_is_the_python_chain():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT django_app_chain_id_v2(%s, %s, %s)", ["user_enriched", "prev", "next é"]
        )
        (in_sql,) = cursor.fetchone()
    assert in_sql == chain_message_id("user_enriched", "prev", "next é")


def test_chained_ids_are_pinned():
    # A change of the rule changes every re-recording's id: make it on purpose only.
    assert chain_message_id("user_enriched", "prev", "next") == (
        "5c608fe8-4713-5ec3-87db-360aa46fe84a"
    )


# -- what every database must agree on ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_ids_differing_only_in_case_or_trailing_space_are_different_subjects():
    # MariaDB's default collation would make "Alice" and "alice" one ledger entry.
    for user_id in ("Alice", "alice", "bob", "bob "):
        assert record_event(
            UserEnrichedEvent(user_id=user_id, group_id="g", properties={"enrichment_city": "X"})
        ).created
    assert sorted(LedgerEntry.objects.values_list("subject_id", flat=True)) == sorted(
        ["Alice", "alice", "bob", "bob "]
    )
    # And each is in step: saving the same content again records nothing.
    for user_id in ("Alice", "alice", "bob", "bob "):
        again = UserEnrichedEvent(
            user_id=user_id, group_id="g", properties={"enrichment_city": "X"}
        )
        assert not record_event(again).created
    assert OutboxEvent.objects.count() == 4


@pytest.mark.django_db
def test_the_outbox_indexes_fit_the_database():
    table = OutboxEvent._meta.db_table
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, table)
    due = found["django_app_outbox_due"]
    if connection.vendor == "mysql":
        assert due["columns"] == ["status", "next_attempt_at", "id"]
        assert found["django_app_outbox_delivered"]["columns"] == ["status", "delivered_at"]
        assert "django_app_outbox_dead" not in found  # the due index's prefix serves it
    else:
        assert due["columns"] == ["next_attempt_at", "id"]
        assert {"django_app_outbox_delivered", "django_app_outbox_dead"} <= set(found)


@pytest.mark.django_db
def test_no_model_check_warns_on_this_database():
    from django.core import checks

    messages = checks.run_checks(databases=[connection.alias], tags=[checks.Tags.models])
    ours = [
        m
        for m in messages
        if getattr(m.obj, "_meta", None) and m.obj._meta.app_label == "django_app"
    ]
    assert ours == []


@pytest.mark.django_db(transaction=True)
def test_claims_without_skip_locked_are_disjoint(monkeypatch):
    from django_app import dispatch
    from tests.django.helpers import pending_rows

    if connection.vendor == "sqlite":
        pytest.skip("SQLite claims with one UPDATE; SKIP LOCKED is not its path")
    monkeypatch.setattr(connection.features, "has_select_for_update_skip_locked", False)
    pending_rows(30)
    first = dispatch.claim(20)
    second = dispatch.claim(20)
    assert len(first) == 20
    assert len(second) == 10
    assert not {r.pk for r in first} & {r.pk for r in second}


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("lock", [False, True])
def test_a_ledger_lookup_probes_the_index_per_id_whatever_the_statistics(lock):
    # A ledger never analysed (a first backfill): `subject_id = ANY(ids)` made the planner
    # read every entry of the event and filter, a cost growing with the ledger per batch.
    from django_app.store.postgres import ledger_lookup_sql

    now = datetime.now(UTC)
    LedgerEntry.objects.bulk_create(
        LedgerEntry(
            event=EVENT_NAME, subject_id=f"u{i:05d}", content_hash="h", message_id=f"m{i}",
            recorded_at=now,
        )
        for i in range(3000)
    )  # fmt: skip
    LedgerEntry.objects.create(
        event="group_enriched", subject_id="u00001", content_hash="g", message_id="gm",
        recorded_at=now,
    )  # fmt: skip
    wanted = [f"u{i:05d}" for i in range(2900, 3100)]  # 100 present, 100 absent
    store = get_store("default")
    table = connection.ops.quote_name(LedgerEntry._meta.db_table)
    with store.array_cursor() as cursor:
        cursor.execute(
            "EXPLAIN " + ledger_lookup_sql(table, store.ARRAY_PARAMETER, lock), [wanted, EVENT_NAME]
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Index Scan using django_app_ledger_subject" in plan, plan
    assert "Filter" not in plan, plan
    assert "Seq Scan" not in plan, plan

    found = store.read_ledger(wanted, event=EVENT_NAME, lock=lock)
    assert found == {f"u{i:05d}": ("h", f"m{i}") for i in range(2900, 3000)}
    assert store.read_ledger(["u00001", *wanted[:60]], event="group_enriched", lock=lock) == {
        "u00001": ("g", "gm")
    }


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("use_tz", [True, False])
def test_the_row_cursor_reads_what_django_reads(use_tz, settings):
    # The backfill's pages are read with psycopg's own timestamptz loader where Django's
    # would give the same values (USE_TZ), and with Django's where it makes them naive.
    settings.USE_TZ = use_tz
    sql = (
        "SELECT %s::timestamptz, '2024-02-29 23:59:59.123456+05:30'::timestamptz, "
        "'1969-12-31 23:00:00-10:00'::timestamptz, NULL::timestamptz, 'x'::text"
    )
    moment = datetime(2026, 3, 29, 1, 30, 15, 1000, tzinfo=UTC)
    with connection.cursor() as cursor:
        cursor.execute(sql, [moment])
        expected = cursor.fetchall()
    with get_store("default").row_cursor() as cursor:
        cursor.execute(sql, [moment])
        found = cursor.fetchall()
    assert found == expected
    assert [value.utcoffset() for value in found[0][:3]] == [
        value.utcoffset() for value in expected[0][:3]
    ]
    assert (found[0][0].tzinfo is None) is (not use_tz)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_locked_ledger_lookup_holds_the_entries_it_read_until_commit():
    # write_ledger_if_unchanged's compare-and-set relies on it: a live save must wait for
    # the backfill's entries, not write between its read and its write.
    from django.db import OperationalError, connections, transaction

    now = datetime.now(UTC)
    LedgerEntry.objects.bulk_create(
        LedgerEntry(
            event=EVENT_NAME, subject_id=f"s{i:03d}", content_hash="h", message_id=f"m{i}",
            recorded_at=now,
        )
        for i in range(80)
    )  # fmt: skip
    store = get_store("default")
    other = connections.create_connection("default")
    try:
        with transaction.atomic():
            assert len(store.read_ledger([f"s{i:03d}" for i in range(80)], lock=True)) == 80
            with other.cursor() as cursor:
                cursor.execute("SET lock_timeout = '200ms'")
                with pytest.raises(OperationalError):
                    cursor.execute(
                        "SELECT 1 FROM django_app_ledgerentry WHERE subject_id = 's042' FOR UPDATE"
                    )
        with other.cursor() as cursor:  # committed: free again
            cursor.execute(
                "SELECT 1 FROM django_app_ledgerentry WHERE subject_id = 's042' FOR UPDATE"
            )
            assert cursor.fetchone() == (1,)
    finally:
        other.close()


# Below and above the bulk statements' threshold; above it, with live saves racing the
# writer (PostgreSQL: its plain insert fails, and the insert with a conflict clause runs)
# and without (the plain insert goes through).
@pytest.mark.parametrize(("size", "racing"), [(10, True), (120, True), (120, False)])
@pytest.mark.django_db(transaction=True)
def test_the_ledgers_compare_and_set_writes_exactly_the_entries_still_as_read(size, racing):
    """Every database, both paths (the portable one, and PostgreSQL's insert of the new
    entries): an entry is written only if the subject's entry is still the one expected,
    and the count returned is what was written."""
    now = datetime.now(UTC)
    held = [f"held{i:03d}" for i in range(size)]  # entries as read: message id m-<subject>
    LedgerEntry.objects.bulk_create(
        LedgerEntry(subject_id=s, content_hash="old", message_id=f"m-{s}", recorded_at=now)
        for s in held
    )
    # Absent when read, inserted by a live save before the write: its entry must stay.
    raced = [f"raced{i:03d}" for i in range(size // 2 if racing else 0)]
    LedgerEntry.objects.bulk_create(
        LedgerEntry(subject_id=s, content_hash="live", message_id="live", recorded_at=now)
        for s in raced
    )
    fresh = [f"fresh{i:03d}" for i in range(size)]
    stale = held[: size // 2]  # expected an older message id than the one held: skipped
    entries = [
        *[(s, "new", f"n-{s}", f"m-{s}") for s in held[size // 2 :]],
        *[(s, "new", f"n-{s}", f"older-{s}") for s in stale],
        *[(s, "new", f"n-{s}", None) for s in raced + fresh],
    ]
    store = get_store("default")
    with CaptureQueriesContext(connection) as queries:
        written = store.write_ledger_if_unchanged(entries, now)

    assert written == len(held) - len(stale) + len(fresh)
    if isinstance(store, Psycopg3Store) and size >= COPY_THRESHOLD:
        inserts = [
            query["sql"]
            for query in queries
            if query["sql"].startswith("INSERT INTO")
            and LedgerEntry._meta.db_table in query["sql"]
            and "DO UPDATE" not in query["sql"]  # the entries that changed
        ]
        # The new entries: a plain insert, then (only when live saves got there first) the
        # insert whose conflict clause skips the subjects they hold.
        assert ["ON CONFLICT" in sql for sql in inserts] == ([False, True] if racing else [False])
    found = dict(LedgerEntry.objects.values_list("subject_id", "message_id"))
    assert all(found[s] == f"n-{s}" for s in held[size // 2 :] + fresh)
    assert all(found[s] == f"m-{s}" for s in stale)
    assert all(found[s] == "live" for s in raced)
    assert len(found) == len(held) + len(raced) + len(fresh)
