"""Event kinds: each outbox row names its event, and the ledger is keyed on (event,
subject), so a second event type needs no schema change. Existing rows are user_enriched.

On PostgreSQL the save path's function is replaced by django_app_record_event_v2, read
from django_app/sql/record_event_v2.sql (a released SQL file is never edited: a change is
a new version and a new migration).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from django.db import migrations, models

V2_SQL = Path(__file__).resolve().parents[1] / "sql" / "record_event_v2.sql"
V2_DROP = (
    "DROP FUNCTION IF EXISTS django_app_record_event_v2"
    "(text, text, text, text, text, text, jsonb, timestamptz, boolean, boolean, boolean);"
    " DROP FUNCTION IF EXISTS django_app_chain_id_v2(text, text, text);"
)
_v1 = importlib.import_module("django_app.migrations.0002_record_event_function")


def _on_postgresql(sql: str) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("django_app", "0002_record_event_function")]

    operations = [
        migrations.RunPython(_on_postgresql(_v1.DROP), _on_postgresql(_v1.CREATE)),
        migrations.AddField(
            model_name="outboxevent",
            name="event",
            field=models.CharField(default="user_enriched", max_length=64),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="event",
            field=models.CharField(default="user_enriched", max_length=64),
        ),
        migrations.RemoveConstraint(model_name="ledgerentry", name="django_app_ledger_user"),
        migrations.RenameField(model_name="ledgerentry", old_name="user_id", new_name="subject_id"),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.UniqueConstraint(
                fields=("event", "subject_id"), name="django_app_ledger_subject"
            ),
        ),
        migrations.RunPython(
            _on_postgresql(V2_SQL.read_text(encoding="utf-8")), _on_postgresql(V2_DROP)
        ),
    ]
