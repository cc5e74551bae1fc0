"""django_app's migrations, forwards and back, with data in the tables, on every database:
existing rows get their event kind, the ledger keeps its entries under the new key, and
the save path's function is the one the current code calls."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from django_app.store import get_store
from django_app.store.postgres import RECORD_SIGNATURE

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_EVENT_KINDS = [("django_app", "0002_record_event_function")]
LATEST = [("django_app", "0004_mysql_ids_and_indexes")]


def migrate(targets: list[tuple[str, str]]):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    if any(name is None for _, name in targets):
        return None
    return MigrationExecutor(connection).loader.project_state(targets).apps


def function_present(signature: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", [signature])
        return bool(cursor.fetchone()[0])


def test_existing_rows_become_user_enriched_and_keep_their_ledger_entries():
    old = migrate(BEFORE_EVENT_KINDS)
    try:
        now = datetime(2024, 1, 1, tzinfo=UTC)
        old.get_model("django_app", "OutboxEvent").objects.create(
            message_id="m-1", user_id="Alice", payload={"user_id": "Alice"}, created_at=now
        )
        ledger = old.get_model("django_app", "LedgerEntry")
        ledger.objects.create(user_id="Alice", content_hash="h" * 64, message_id="m-1")
        ledger.objects.create(user_id="bob", content_hash="i" * 64, message_id="m-2")
        if connection.vendor == "postgresql":
            assert function_present(
                "django_app_record_event(text, text, text, text, jsonb, timestamp with time "
                "zone, boolean, boolean, boolean)"
            )
    finally:
        new = migrate(LATEST)
    get_store()._function_present = False
    row = new.get_model("django_app", "OutboxEvent").objects.get()
    assert (row.event, row.message_id, row.user_id) == ("user_enriched", "m-1", "Alice")
    entries = new.get_model("django_app", "LedgerEntry").objects.order_by("subject_id")
    assert [(e.event, e.subject_id, e.message_id) for e in entries] == [
        ("user_enriched", "Alice", "m-1"),
        ("user_enriched", "bob", "m-2"),
    ]
    if connection.vendor == "postgresql":
        assert function_present(RECORD_SIGNATURE)
        assert not function_present(
            "django_app_record_event(text, text, text, text, jsonb, timestamp with time "
            "zone, boolean, boolean, boolean)"
        )


def test_every_migration_reverses_cleanly():
    migrate([("django_app", None)])
    try:
        assert "django_app_outboxevent" not in connection.introspection.table_names()
    finally:
        migrate(LATEST)
    get_store()._function_present = False
    assert "django_app_outboxevent" in connection.introspection.table_names()
    if connection.vendor == "postgresql":
        assert function_present(RECORD_SIGNATURE)
