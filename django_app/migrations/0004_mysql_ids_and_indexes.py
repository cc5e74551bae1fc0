"""MySQL and MariaDB: ids compared byte for byte, and indexes that fit a database without
partial indexes. Other databases are left exactly as they were.

Ids: the default collation (utf8mb4_general_ci) ignores case and trailing spaces, so users
"Alice" and "alice" (or "bob" and "bob ") would share one ledger entry and one message id.
The id columns get a binary collation that does not pad (utf8mb4_nopad_bin on MariaDB,
utf8mb4_0900_bin on MySQL 8). A later AlterField of one of these columns would reset it:
such a migration must set the collation again.

Indexes: the three partial indexes (due pending rows, delivered rows by age, dead rows) are
declared by this migration from now on, not by the model, so that ``check`` on MySQL no
longer warns W037: PostgreSQL and SQLite keep the partial indexes 0001 created; MySQL gets
composite ones led by ``status`` instead (the due index also serves the dead rows).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

PARTIAL_INDEXES = ("django_app_outbox_due", "django_app_outbox_delivered", "django_app_outbox_dead")
BINARY_ID_COLUMNS = {
    "outboxevent": ("event", "message_id", "user_id", "group_id"),
    "ledgerentry": ("event", "subject_id", "message_id"),
}
MYSQL_INDEXES = {
    "django_app_outbox_due": ("status", "next_attempt_at", "id"),
    "django_app_outbox_delivered": ("status", "delivered_at"),
}


def binary_collation(connection: Any) -> str:
    return "utf8mb4_nopad_bin" if connection.mysql_is_mariadb else "utf8mb4_0900_bin"


def _columns(apps: Any, schema_editor: Any, binary: bool) -> None:
    connection = schema_editor.connection
    if connection.vendor != "mysql":
        return
    collation = binary_collation(connection) if binary else None
    quote = schema_editor.quote_name
    for model_name, names in BINARY_ID_COLUMNS.items():
        model = apps.get_model("django_app", model_name)
        table = model._meta.db_table
        for name in names:
            field = model._meta.get_field(name)
            kind = f"varchar({field.max_length}) CHARACTER SET utf8mb4"
            if collation:
                kind += f" COLLATE {collation}"
            schema_editor.execute(
                f"ALTER TABLE {quote(table)} MODIFY {quote(field.column)} {kind} NOT NULL"
            )


def ids_binary(apps: Any, schema_editor: Any) -> None:
    _columns(apps, schema_editor, binary=True)


def ids_default(apps: Any, schema_editor: Any) -> None:
    _columns(apps, schema_editor, binary=False)


def _outbox_table(apps: Any, schema_editor: Any) -> str:
    return str(schema_editor.quote_name(apps.get_model("django_app", "outboxevent")._meta.db_table))


def mysql_indexes(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "mysql":
        return
    table, quote = _outbox_table(apps, schema_editor), schema_editor.quote_name
    for name in PARTIAL_INDEXES:  # created by 0001 as full indexes (conditions ignored)
        schema_editor.execute(f"DROP INDEX {quote(name)} ON {table}")
    for name, columns in MYSQL_INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX {quote(name)} ON {table} ({', '.join(map(quote, columns))})"
        )


def mysql_indexes_back(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "mysql":
        return
    table, quote = _outbox_table(apps, schema_editor), schema_editor.quote_name
    for name in MYSQL_INDEXES:
        schema_editor.execute(f"DROP INDEX {quote(name)} ON {table}")
    # What 0001 created there: the same columns, the conditions ignored.
    for name, columns in {
        "django_app_outbox_due": ("next_attempt_at", "id"),
        "django_app_outbox_delivered": ("delivered_at",),
        "django_app_outbox_dead": ("id",),
    }.items():
        schema_editor.execute(
            f"CREATE INDEX {quote(name)} ON {table} ({', '.join(map(quote, columns))})"
        )


class Migration(migrations.Migration):
    dependencies = [("django_app", "0003_event_kinds")]

    operations = [
        # Not atomic: MySQL cannot run DDL in a transaction (it commits each statement).
        migrations.RunPython(ids_binary, ids_default, atomic=False),
        migrations.SeparateDatabaseAndState(
            # The model stops declaring them; the database keeps what each vendor needs.
            state_operations=[
                migrations.RemoveIndex(model_name="outboxevent", name=name)
                for name in PARTIAL_INDEXES
            ],
            database_operations=[
                migrations.RunPython(mysql_indexes, mysql_indexes_back, atomic=False)
            ],
        ),
    ]
