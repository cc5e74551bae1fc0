"""The save path's function on PostgreSQL: ledger check, ledger update and outbox insert.

A tracked save runs one statement of ours. As a plain SQL statement (a data-modifying CTE)
the server parses, analyses and plans it on every save, since Django leaves prepared
statements off so that connection poolers keep working; that was half of the statement's
cost. A PL/pgSQL function keeps the plans of its statements for the life of the session,
which is safe behind any pooler, and its call is trivial to parse.

The SQL is written out here, not imported, so that this migration keeps meaning what it
meant when it was applied. Other databases need nothing: they record with the ORM.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

FUNCTION = "django_app_record_event"
# Returns the new outbox row's id; NULL when the ledger already holds the content (nothing
# to send); -1 when the message id is already in the outbox (nothing written).

CREATE = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}(
    p_user_id text,
    p_group_id text,
    p_content_hash text,
    p_message_id text,
    p_payload jsonb,
    p_now timestamptz,
    p_force boolean,
    p_blank boolean,
    p_chosen_id boolean
) RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    recorded_hash text;
    new_id bigint;
BEGIN
    IF p_chosen_id THEN
        -- A message id the caller chose may be in the outbox already (the ids derived on
        -- the save path are unique per recording). Unchanged content is not an error,
        -- a used id is: then nothing is written, and the caller reports it.
        SELECT content_hash INTO recorded_hash
          FROM django_app_ledgerentry WHERE user_id = p_user_id;
        IF (FOUND AND recorded_hash = p_content_hash AND NOT p_force)
           OR (NOT FOUND AND p_blank) THEN
            RETURN NULL;
        END IF;
        IF EXISTS (SELECT 1 FROM django_app_outboxevent WHERE message_id = p_message_id) THEN
            RETURN -1;
        END IF;
    END IF;
    -- The ledger decides: an outbox row only when this user's content changed (or p_force).
    IF p_blank THEN
        UPDATE django_app_ledgerentry AS l
           SET content_hash = p_content_hash, message_id = p_message_id, recorded_at = p_now
         WHERE l.user_id = p_user_id AND (l.content_hash <> p_content_hash OR p_force);
    ELSE
        INSERT INTO django_app_ledgerentry AS l (user_id, content_hash, message_id, recorded_at)
        VALUES (p_user_id, p_content_hash, p_message_id, p_now)
        ON CONFLICT (user_id) DO UPDATE
           SET content_hash = EXCLUDED.content_hash,
               message_id = EXCLUDED.message_id,
               recorded_at = EXCLUDED.recorded_at
         WHERE l.content_hash <> EXCLUDED.content_hash OR p_force;
    END IF;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO django_app_outboxevent (
        message_id, user_id, group_id, content_hash, payload, status, attempts,
        next_attempt_at, lease_expires_at, claim_token, sink, last_error,
        created_at, updated_at, delivered_at
    ) VALUES (
        p_message_id, p_user_id, p_group_id, p_content_hash, p_payload, 'pending', 0,
        p_now, NULL, '', '', '',
        p_now, p_now, NULL
    )
    ON CONFLICT (message_id) DO NOTHING
    RETURNING id INTO new_id;
    RETURN coalesce(new_id, -1);
END
$$;
"""

DROP = (
    f"DROP FUNCTION IF EXISTS {FUNCTION}"
    "(text, text, text, text, jsonb, timestamptz, boolean, boolean, boolean);"
)


def create_function(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_function(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("django_app", "0001_initial")]

    operations = [migrations.RunPython(create_function, drop_function, elidable=False)]
