-- django_app_record_event_v2: the save path's one statement on PostgreSQL (migration 0003).
--
-- Ledger check, ledger update and outbox insert for one event, keyed on (event, subject),
-- in two statements on the usual path. Returns (row_id, message_id): row_id NULL when
-- the ledger already holds the content (nothing to send) or this very recording is
-- already in the outbox; -1 when a message id the caller chose is already in the outbox
-- (nothing written). A derived message id is chained on the subject's previous one by
-- django_app_chain_id_v2, exactly as django_app.store.base.chain_message_id does in
-- Python, so every database gives the same ids.
--
-- This file is never edited once released: a change is a new version (v3) in a new file
-- and a new migration, and the store calls the version its code was written for. The
-- INSERTs name every column of their tables; tests/django/test_store_sql.py fails when
-- the models and these lists disagree.
CREATE OR REPLACE FUNCTION django_app_chain_id_v2(p_event text, p_previous text, p_message_id text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    digest bytea := substring(sha256(convert_to(
        p_event || chr(31) || p_previous || chr(31) || p_message_id, 'UTF8')) FROM 1 FOR 16);
    hex text;
BEGIN
    -- Shaped as an RFC 9562 name-based UUID: version 5, variant 10.
    digest := set_byte(digest, 6, (get_byte(digest, 6) & 15) | 80);
    digest := set_byte(digest, 8, (get_byte(digest, 8) & 63) | 128);
    hex := encode(digest, 'hex');
    RETURN substr(hex, 1, 8) || '-' || substr(hex, 9, 4) || '-' || substr(hex, 13, 4) || '-'
        || substr(hex, 17, 4) || '-' || substr(hex, 21, 12);
END
$$;

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
BEGIN
    message_id := p_message_id;
    IF p_chosen_id THEN
        -- A chosen id may be in the outbox already (derived ones are unique per
        -- recording). Unchanged content is not an error, a used id is: then nothing is
        -- written, and the caller reports it.
        SELECT l.content_hash INTO recorded_hash
          FROM django_app_ledgerentry AS l
         WHERE l.event = p_event AND l.subject_id = p_subject_id;
        IF (FOUND AND recorded_hash = p_content_hash AND NOT p_force)
           OR (NOT FOUND AND p_blank) THEN
            RETURN;
        END IF;
        IF EXISTS (SELECT 1 FROM django_app_outboxevent AS o WHERE o.message_id = p_message_id) THEN
            row_id := -1;
            RETURN;
        END IF;
    END IF;
    -- The ledger decides: an outbox row only when this subject's content changed (or
    -- p_force). Blank content is news only for a subject already recorded.
    IF p_blank THEN
        UPDATE django_app_ledgerentry AS l
           SET content_hash = p_content_hash,
               message_id = CASE WHEN p_chosen_id THEN p_message_id
                   ELSE django_app_chain_id_v2(p_event, l.message_id, p_message_id) END,
               recorded_at = p_now
         WHERE l.event = p_event AND l.subject_id = p_subject_id
           AND (l.content_hash <> p_content_hash OR p_force)
        RETURNING l.message_id INTO message_id;
    ELSE
        INSERT INTO django_app_ledgerentry AS l (event, subject_id, content_hash, message_id, recorded_at)
        VALUES (p_event, p_subject_id, p_content_hash, p_message_id, p_now)
        ON CONFLICT ON CONSTRAINT django_app_ledger_subject DO UPDATE
           SET content_hash = EXCLUDED.content_hash,
               message_id = CASE WHEN p_chosen_id THEN EXCLUDED.message_id
                   ELSE django_app_chain_id_v2(p_event, l.message_id, EXCLUDED.message_id) END,
               recorded_at = EXCLUDED.recorded_at
         WHERE l.content_hash <> EXCLUDED.content_hash OR p_force
        RETURNING l.message_id INTO message_id;
    END IF;
    IF NOT FOUND THEN
        message_id := p_message_id;
        RETURN;  -- row_id NULL: nothing to send
    END IF;
    IF message_id <> p_message_id THEN
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
    -- row_id NULL here: a derived id already there is this very recording (same subject,
    -- content and time): nothing to send.
END
$$;
