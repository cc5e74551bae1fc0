"""PostgreSQL's fast paths on top of the portable store.

``PostgresStore`` (any driver): the save path is one call of ``django_app_record_event_v2``
(``django_app/sql/record_event_v2.sql``, created by migration 0003), in a savepoint so that
nothing the server does with it can abort the host's transaction.

``Psycopg3Store`` (psycopg 3, Django's preferred driver): also the savepoint sent in the same
string as the call (one round trip), lists bound server-side as one array parameter, and
``COPY`` for bulk inserts. psycopg2 gets the first class only: correct, a little slower.
Nothing here imports a driver at module level.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from django_app.models import LedgerEntry, OutboxEvent, Status
from django_app.store.base import (
    COPY_THRESHOLD,
    Claimed,
    DuplicateMessageId,
    Lease,
    Ledger,
    OutboxStore,
    Recorded,
    event_name,
    outbox_values,
    subject_of,
)
from tracking_adapter import EVENT_NAME, EnrichedEvent

logger = logging.getLogger("django_app")

RECORD_FUNCTION = "django_app_record_event_v2"
RECORD_SIGNATURE = (
    f"{RECORD_FUNCTION}(text, text, text, text, text, text, jsonb, timestamp with time zone, "
    "boolean, boolean, boolean)"
)
FUNCTION_RECHECK_SECONDS = 60.0

# One name for every call: a savepoint made and released within one statement string
# cannot meet another of ours, and the same string lets psycopg reuse its parse of the
# query (a fresh name per call made each call parse it again: 7% of a tracked save's client
# instructions, ``python -m bench.instructions save_project``).
_SAVEPOINT = "tracking_adapter_record"


def ledger_lookup_sql(table: str, array_parameter: str, lock: bool) -> str:
    """The entries of an array of subject ids (the first parameter) for one event (the
    second), found by one probe of the unique index per id, in the array's order.

    Not ``subject_id = ANY(ids)``: for that, the planner scans every entry of the event and
    filters, both while the table has no statistics yet (a first backfill fills an empty
    ledger faster than autovacuum analyses it) and once it has, where 1,000 ids are a few
    percent of the entries; either way a batch costs time in proportion to the ledger
    (12 ms at 50,000 entries against 2.6 ms here, and growing). ``LIMIT 1`` keeps the
    planner from flattening the lateral subquery back into that join; (event, subject_id)
    is unique, so it changes nothing else."""
    return (
        "SELECT l.subject_id, l.content_hash, l.message_id "
        f"FROM unnest({array_parameter}::text[]) AS wanted(subject_id) CROSS JOIN LATERAL ("
        f"SELECT subject_id, content_hash, message_id FROM {table} "
        "WHERE event = %s AND subject_id = wanted.subject_id "
        f"LIMIT 1{' FOR UPDATE' if lock else ''}) AS l"
    )


class PostgresStore(OutboxStore):
    def __init__(self, using: str) -> None:
        super().__init__(using)
        self._function_present = False
        self._function_missing_since: float | None = None

    # How a list is passed as one array parameter, and the cursor that takes it.
    ARRAY_PARAMETER = "%s"

    def array_cursor(self) -> Any:
        return self.connection.cursor()

    def read_ledger(
        self, subject_ids: Iterable[str], *, event: str = EVENT_NAME, lock: bool = True
    ) -> Ledger:
        # Sorted: writers that lock many entries take them in one order, so two never deadlock.
        subject_ids = sorted(subject_ids) if lock else list(subject_ids)
        if len(subject_ids) < COPY_THRESHOLD:
            return super().read_ledger(subject_ids, event=event, lock=lock)
        with self.array_cursor() as cursor:
            table = self.connection.ops.quote_name(LedgerEntry._meta.db_table)
            sql = ledger_lookup_sql(table, self.ARRAY_PARAMETER, lock)
            cursor.execute(sql, [subject_ids, event])
            return {subject: (digest, message_id) for subject, digest, message_id in cursor}

    def record_one(
        self, event: EnrichedEvent, *, force: bool = False, skip_empty: bool = False
    ) -> Recorded:
        """The ledger check, the ledger update and the outbox insert in one call of the
        function, so a tracked save costs one round trip more than an untracked one and the
        server reuses its plans (a statement sent as SQL would be planned on every save:
        Django leaves prepared statements off for the sake of connection poolers)."""
        if not self._has_function():
            return super().record_one(event, force=force, skip_empty=skip_empty)
        row_id, message_id = self._call_protected(
            *self.record_call(event, force=force, skip_empty=skip_empty)
        )
        if row_id is None:
            return Recorded(event, None)
        if row_id == -1:  # nothing was written: the transaction is intact
            raise DuplicateMessageId(event.message_id)
        if message_id != event.message_id:  # chained on the subject's previous id
            event = event.model_copy(update={"message_id": message_id})
        return Recorded(
            event, Claimed(row_id, message_id, event.user_id, 0, "", event=event.EVENT_NAME)
        )

    @staticmethod
    def record_call(
        event: EnrichedEvent, *, force: bool = False, skip_empty: bool = False
    ) -> tuple[str, list[Any]]:
        """The statement calling the record function for ``event``, and its parameters."""
        # Blank properties are not news for a subject never recorded: then the function
        # records only if the ledger already has the subject.
        blank = skip_empty and event.properties.is_blank()
        params: list[Any] = [
            event_name(event),
            subject_of(event),
            event.user_id,
            event.group_id,
            event.content_hash(),
            event.message_id,
            event.to_json().decode("utf-8"),
            timezone.now(),
            force,
            blank,
            not event.has_default_message_id,  # a message id the caller chose
        ]
        return f"SELECT * FROM {RECORD_FUNCTION}({', '.join(['%s'] * len(params))})", params

    def _call_protected(self, sql: str, params: list[Any]) -> Any:
        """Run our one statement so that, whatever the server does with it (a statement or
        lock timeout, a deadlock, a function missing or changed), the host's transaction is
        intact: inside it, a failed statement would abort it, and its ``COMMIT`` would then
        silently roll back the host's own data. So the call runs in a savepoint; on a
        failure the savepoint is rolled back and the error raised for ``safe_record`` to log.
        Outside a transaction (autocommit) a failed statement only loses our write."""
        connection = self.connection
        try:
            if not connection.in_atomic_block:
                with connection.cursor() as cursor:
                    cursor.execute(sql, params)
                    return cursor.fetchone()
            return self._call_in_savepoint(sql, params)
        except BaseException:
            self._function_present = False  # it may be what failed: look it up again
            raise

    def _call_in_savepoint(self, sql: str, params: list[Any]) -> Any:
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()

    def _has_function(self) -> bool:
        """Whether migration 0003's function exists. Looked up once while it does; while it
        does not (code deployed before ``migrate``, a test run with ``--nomigrations``),
        saves record with the portable statements, and it is looked up again a minute
        later. Calling a missing function would abort the host's transaction, so this is
        not left to chance."""
        if self._function_present:
            return True
        missing_since = self._function_missing_since
        if (
            missing_since is not None
            and time.monotonic() - missing_since < FUNCTION_RECHECK_SECONDS
        ):
            return False
        # In a savepoint: inside the host's transaction even this must not abort it.
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", [RECORD_SIGNATURE])
            (present,) = cursor.fetchone()
        if present:
            self._function_present = True
            self._function_missing_since = None
            return True
        if missing_since is None:
            logger.warning(
                "%s is missing from the database %r: django_app's migrations are not all "
                "applied. Saves are recorded the slower way until they are: run "
                "manage.py migrate django_app.",
                RECORD_FUNCTION,
                self.using,
            )
        self._function_missing_since = time.monotonic()
        return False


class Psycopg3Store(PostgresStore):
    def _call_in_savepoint(self, sql: str, params: list[Any]) -> Any:
        import psycopg

        connection = self.connection
        with connection.cursor() as cursor:
            if not isinstance(getattr(cursor, "cursor", None), psycopg.ClientCursor):
                # Server-side binding refuses several statements in one string.
                return super()._call_in_savepoint(sql, params)
            name = _SAVEPOINT
            try:
                cursor.execute(f"SAVEPOINT {name}; {sql}; RELEASE SAVEPOINT {name}", params)
                cursor.nextset()  # from the SAVEPOINT's result to the call's
                return cursor.fetchone()
            except BaseException:
                try:
                    cursor.execute(f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}")
                except Exception:
                    # The connection itself is gone: the host's COMMIT will fail loudly,
                    # which is the truth; make sure Django does not pretend otherwise.
                    transaction.set_rollback(True, using=self.using)
                raise

    ARRAY_PARAMETER = "%b"

    def row_cursor(self) -> Any:
        cursor = self.connection.cursor()
        if settings.USE_TZ:
            # Django's timestamptz loader parses in Python, then sets the zone the value
            # already has (the session's); psycopg's own (C, with psycopg[binary]) gives the
            # same aware datetimes, 3.6 of 8.1 µs per backfill row sooner. Without USE_TZ,
            # Django's makes them naive: kept.
            import psycopg
            from psycopg.pq import Format

            oid = psycopg.adapters.types["timestamptz"].oid
            loader = psycopg.adapters.get_loader(oid, Format.TEXT)
            cursor.cursor.adapters.register_loader(oid, loader)
        return cursor

    def array_cursor(self) -> Any:
        return self.server_bound_cursor()

    def server_bound_cursor(self) -> Any:
        """A psycopg cursor binding parameters server-side (Django's binds client-side),
        wrapped like Django's own cursors (query logging, execute wrappers, error
        translation). A list then goes to PostgreSQL as one array parameter rather than as
        escaped text. Pass lists as ``%b`` (binary): the text form of an array is built by
        psycopg in Python, about four times slower for a thousand ids."""
        import psycopg

        connection = self.connection
        connection.ensure_connection()
        cursor = psycopg.Cursor(connection.connection)
        if connection.queries_logged:
            return connection.make_debug_cursor(cursor)
        return connection.make_cursor(cursor)

    def write_ledger(
        self,
        entries: Sequence[tuple[str, str, str]],
        now: datetime,
        *,
        event: str = EVENT_NAME,
        only_new: bool = False,
    ) -> None:
        if len(entries) < COPY_THRESHOLD:
            super().write_ledger(entries, now, event=event, only_new=only_new)
            return
        self._upsert_ledger(entries, now, event, only_new=only_new)

    def _insert_if_absent(
        self, entries: Sequence[tuple[str, str, str]], now: datetime, event: str
    ) -> int:
        # No read first: the row count says how many were inserted (the read cost a round
        # trip and a probe of the index per entry, and a subject inserted between the two
        # went uncounted). First as a plain insert: the entries were absent when the caller
        # read the ledger, and almost always still are; a conflict clause makes the server
        # probe the unique index once more per entry before inserting it (a first backfill:
        # 15.5-16.4 -> 12.5-13.5 µs of PostgreSQL's CPU per event, three alternated rounds
        # of ``python -m bench.run --only backfill --contenders floor,project,project-1-process
        # --repeat 1``). If a live save recorded one of the subjects meanwhile, the savepoint
        # undoes the insert and the conflict clause skips the subjects now held.
        if len(entries) < COPY_THRESHOLD:
            return super()._insert_if_absent(entries, now, event)
        try:
            with transaction.atomic(using=self.using):
                return self._insert_ledger(entries, now, event, on_conflict="")
        except IntegrityError:
            return self._upsert_ledger(entries, now, event, only_new=True)

    def _upsert_ledger(
        self, entries: Sequence[tuple[str, str, str]], now: datetime, event: str, *, only_new: bool
    ) -> int:
        on_conflict = (
            "DO NOTHING"
            if only_new
            else "DO UPDATE SET content_hash = EXCLUDED.content_hash, "
            "message_id = EXCLUDED.message_id, recorded_at = EXCLUDED.recorded_at"
        )
        return self._insert_ledger(
            entries, now, event, on_conflict=f" ON CONFLICT (event, subject_id) {on_conflict}"
        )

    def _insert_ledger(
        self,
        entries: Sequence[tuple[str, str, str]],
        now: datetime,
        event: str,
        *,
        on_conflict: str,
    ) -> int:
        """Insert the entries, each column as one array parameter, followed by
        ``on_conflict`` (empty: a conflict is an ``IntegrityError``); how many rows it wrote."""
        table = self.connection.ops.quote_name(LedgerEntry._meta.db_table)
        subjects, hashes, message_ids = (list(column) for column in zip(*entries, strict=True))
        with self.server_bound_cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (event, subject_id, content_hash, message_id, recorded_at) "
                "SELECT %b, s, h, m, %b FROM unnest(%b::text[], %b::text[], %b::text[]) "
                f"AS t(s, h, m){on_conflict}",
                [event, now, subjects, hashes, message_ids],
            )
            return int(cursor.rowcount)

    def _insert_rows(
        self,
        events: Sequence[EnrichedEvent],
        hashes: Sequence[str],
        now: datetime,
        lease: Lease | None,
    ) -> list[int]:
        """``COPY`` for many rows: ``bulk_create`` sends JSON payloads as text arrays that
        the driver escapes character by character, and builds a model instance per row:
        together most of a backfill's database time. Ids are taken from the sequence first."""
        if len(events) < COPY_THRESHOLD:
            return super()._insert_rows(events, hashes, now, lease)
        connection = self.connection
        table = OutboxEvent._meta.db_table
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                [table, len(events)],
            )
            pks = [pk for (pk,) in cursor.fetchall()]
            rows = [
                {"id": pk, **outbox_values(event, content_hash, now, lease)}
                for pk, event, content_hash in zip(pks, events, hashes, strict=True)
            ]
            columns = ", ".join(quote(column) for column in rows[0])
            with cursor.cursor.copy(f"COPY {quote(table)} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(list(row.values()))
        return pks

    def mark_delivered(self, ids: list[int], token: str, now: datetime, sink_name: str) -> int:
        """The ids as one binary array parameter: the ORM's ``pk__in`` prepares a thousand
        parameters one by one."""
        table = self.connection.ops.quote_name(OutboxEvent._meta.db_table)
        with self.server_bound_cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET status = %s, delivered_at = %s, updated_at = %s, "
                "attempts = attempts + 1, lease_expires_at = NULL, last_error = '', sink = %s "
                "WHERE id = ANY(%b) AND claim_token = %s",
                [Status.DELIVERED.value, now, now, sink_name, ids, token],
            )
            return int(cursor.rowcount)


__all__ = ["RECORD_FUNCTION", "DuplicateMessageId", "PostgresStore", "Psycopg3Store"]
