-- django_app_record_event_v2: the save path's one statement on PostgreSQL (migration 0003).
--
-- Ledger check, ledger update and outbox insert for one event, keyed on (event, subject).
-- Returns (row_id, message_id): row_id NULL when the ledger already holds the content
-- (nothing to send), -1 when the message id is already in the outbox (nothing written).
-- A default message id is chained on the subject's previous one, exactly as
-- django_app.store.ids.chain_message_id does, so every database gives the same ids.
--
-- This file is never edited once released: a change is a new version (v3) in a new file
-- and a new migration, and the store calls the version its code was written for. The
-- INSERT names every column of the outbox table; tests/django/test_store_sql.py fails
-- when the model and this list disagree.
CREATE OR REPLACE FUNCTION django_app_record_event_v2(
    p_event text,
    p_subject_id text,
    p_user_id text,
    p_group_id text,
    p_content_hash text,
    p_message_id text,
    p_payload jsonb,
    p_now timestamptz,
    p_force boolean,
    p_blank boolean,
    p_chosen_id boolean,
    OUT row_id bigint,
    OUT message_id text
)
LANGUAGE plpgsql
AS $$
DECLARE
    recorded_hash text;
    recorded_id text;
    digest bytea;
    hex text;
BEGIN
    message_id := p_message_id;
    SELECT l.content_hash, l.message_id INTO recorded_hash, recorded_id
      FROM django_app_ledgerentry AS l
     WHERE l.event = p_event AND l.subject_id = p_subject_id
       FOR UPDATE;
    IF (FOUND AND recorded_hash = p_content_hash AND NOT p_force)
       OR (NOT FOUND AND p_blank) THEN
        RETURN;  -- row_id NULL: nothing to send
    END IF;
    IF FOUND AND NOT p_chosen_id THEN
        -- A re-recording must not reuse an id already sent: chain on the previous one.
        digest := substring(sha256(convert_to(
            p_event || chr(31) || recorded_id || chr(31) || p_message_id, 'UTF8')) FROM 1 FOR 16);
        digest := set_byte(digest, 6, (get_byte(digest, 6) & 15) | 80);
        digest := set_byte(digest, 8, (get_byte(digest, 8) & 63) | 128);
        hex := encode(digest, 'hex');
        message_id := substr(hex, 1, 8) || '-' || substr(hex, 9, 4) || '-' || substr(hex, 13, 4)
            || '-' || substr(hex, 17, 4) || '-' || substr(hex, 21, 12);
        p_payload := jsonb_set(p_payload, '{message_id}', to_jsonb(message_id));
    END IF;
    INSERT INTO django_app_outboxevent (
        event, message_id, user_id, group_id, content_hash, payload, status, attempts,
        next_attempt_at, lease_expires_at, claim_token, sink, last_error,
        created_at, updated_at, delivered_at
    ) VALUES (
        p_event, message_id, p_user_id, p_group_id, p_content_hash, p_payload, 'pending', 0,
        p_now, NULL, '', '', '',
        p_now, p_now, NULL
    )
    ON CONFLICT ON CONSTRAINT django_app_outbox_message_id DO NOTHING
    RETURNING id INTO row_id;
    IF row_id IS NULL THEN
        -- The id is taken, nothing written. A derived id means this very recording is
        -- already there (same subject, content and time): nothing to send. A chosen id
        -- means the caller reused one: -1, reported as such.
        IF p_chosen_id THEN
            row_id := -1;
        END IF;
        RETURN;
    END IF;
    INSERT INTO django_app_ledgerentry AS l (event, subject_id, content_hash, message_id, recorded_at)
    VALUES (p_event, p_subject_id, p_content_hash, message_id, p_now)
    ON CONFLICT ON CONSTRAINT django_app_ledger_subject DO UPDATE
       SET content_hash = EXCLUDED.content_hash,
           message_id = EXCLUDED.message_id,
           recorded_at = EXCLUDED.recorded_at;
END
$$;
