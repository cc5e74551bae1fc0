"""Recording events: one small write in the caller's transaction, never an exception.

``record_event`` consults the ledger (same content already recorded for this user? then
nothing to do), writes the outbox row and the ledger, and asks for delivery once the
transaction commits. On PostgreSQL that is one function call (see ``_record_one_statement``);
elsewhere a few statements in an atomic block. ``safe_record`` logs whatever fails, and
data that could make a statement fail is refused before any SQL runs.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone

from django_app import dispatch
from django_app.conf import app_settings
from django_app.dispatch import Claimed
from django_app.models import LedgerEntry, OutboxEvent, Status
from django_app.postgres import sends_many_statements, server_bound_cursor
from django_app.runtime import secrets
from tracking_adapter import (
    ConfigurationError,
    EventValidationError,
    MappingError,
    UserEnrichedEvent,
)
from tracking_adapter.security import redact

logger = logging.getLogger("django_app")

# Set by django_app.testing.capture_events(): events go to the list instead of the outbox.
_capture: list[Callable[[UserEnrichedEvent], None]] = []


@dataclass(frozen=True)
class Recorded:
    """What ``record_event`` did: ``row`` is None when the content was already recorded."""

    event: UserEnrichedEvent
    row: Claimed | None

    @property
    def created(self) -> bool:
        return self.row is not None


def apply_exclusions(event: UserEnrichedEvent) -> UserEnrichedEvent:
    """Drop the properties the site chose never to store nor send (EXCLUDE_PROPERTIES).

    Events built by ``django_app.api`` are already without them; this covers events built
    elsewhere. An event with nothing to drop is returned as it is (no second validation on
    the save path), and a message id the caller chose is kept.
    """
    excluded = app_settings.EXCLUDE_PROPERTIES
    if not excluded:
        return event
    wire = event.properties.to_wire()
    if not any(wire.get(name) not in (None, "", []) for name in excluded):
        return event
    kept = {k: v for k, v in wire.items() if k not in excluded}
    dropped = {"message_id", "properties"} if event.has_default_message_id else {"properties"}
    data = event.model_dump(exclude=dropped)
    return UserEnrichedEvent.model_validate({**data, "properties": kept})


def record_event(
    event: UserEnrichedEvent,
    *,
    force: bool = False,
    skip_empty: bool = False,
    using: str | None = None,
) -> Recorded:
    """Record ``event`` for delivery unless the same content was already recorded for the user.

    ``skip_empty``: a user never recorded before whose properties are all empty has not been
    enriched yet (a profile created blank); the automatic source passes it.

    May raise ``DatabaseError``; callers on the save path use ``safe_record``.
    """
    using = using or router.db_for_write(OutboxEvent)
    if connections[using].vendor == "postgresql" and not _capture and _has_function(using):
        recorded = _record_one_statement(event, force=force, skip_empty=skip_empty, using=using)
    else:
        [recorded] = record_events([event], force=force, skip_empty=skip_empty, using=using)
    if recorded.row is not None:
        dispatch.request_delivery([recorded.row.pk], using=using)
    return recorded


def _record_one_statement(
    event: UserEnrichedEvent, *, force: bool, skip_empty: bool, using: str
) -> Recorded:
    """The save path on PostgreSQL: the ledger check, the ledger update and the outbox
    insert in one call of the function migration 0002 creates, so a tracked save costs one
    round trip more than an untracked one, and the server reuses its plans (a statement
    sent as SQL would be parsed and planned on every save: Django leaves prepared
    statements off for the sake of connection poolers).

    The ledger upsert changes a row only when the user's content changed (or ``force``);
    the outbox insert happens only then. No savepoint: neither part can conflict (the
    ledger upserts on its key, the outbox skips a message id it already holds).
    """
    event = apply_exclusions(event)
    now = timezone.now()
    chosen_id = not event.has_default_message_id
    if not chosen_id:
        # Unique per recording: the same content recorded again later (A, then B, then A)
        # must not reuse the id an earlier event was sent with.
        event = event.model_copy(update={"message_id": chain_message_id(now.isoformat(), event)})
    content_hash = event.content_hash()
    # Blank properties are not news for a user never recorded: then the function only
    # updates an existing ledger entry.
    blank = skip_empty and event.properties.is_blank()
    params: list[Any] = [
        event.user_id,
        event.group_id,
        content_hash,
        event.message_id,
        event.to_json().decode("utf-8"),
        now,
        force,
        blank,
        chosen_id,
    ]
    inserted = _call_protected(using, f"SELECT {RECORD_FUNCTION}({', '.join(['%s'] * 9)})", params)
    if inserted is None:
        return Recorded(event, None)
    if inserted == -1:  # nothing was written: the transaction is intact
        raise IntegrityError(f"message id {event.message_id!r} is already in the outbox")
    return Recorded(event, Claimed(inserted, event.message_id, event.user_id, 0, ""))


_savepoints = itertools.count(1)


def _call_protected(using: str, sql: str, params: list[Any]) -> Any:
    """Run our one statement so that, whatever the server does with it (a statement or lock
    timeout, a deadlock, a function missing or changed), the host's transaction is intact.

    Inside the host's transaction a failed statement would abort it, and its ``COMMIT``
    would then silently roll back the host's own data; so the call runs in a savepoint,
    sent in the same string as the call (savepoint, call, release: one round trip). On a
    failure the savepoint is rolled back and the error raised for ``safe_record`` to log.
    Outside a transaction (autocommit) a failed statement only loses our write.
    """
    connection = connections[using]
    if not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0]
    with connection.cursor() as cursor:
        if not sends_many_statements(cursor):
            # A driver or cursor that cannot send several statements in one string
            # (psycopg2 keeps only the last result; server-side binding refuses them).
            with transaction.atomic(using=using):
                cursor.execute(sql, params)
                return cursor.fetchone()[0]
        name = f"tracking_adapter_{next(_savepoints)}"
        try:
            cursor.execute(f"SAVEPOINT {name}; {sql}; RELEASE SAVEPOINT {name}", params)
            cursor.nextset()  # from the SAVEPOINT's result to the call's
            return cursor.fetchone()[0]
        except BaseException:
            _function_present.discard(using)  # it may be what failed: look it up again
            try:
                cursor.execute(f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}")
            except Exception:
                # The connection itself is gone: the host's COMMIT will fail loudly, which
                # is the truth; make sure Django does not pretend otherwise.
                transaction.set_rollback(True, using=using)
            raise


RECORD_FUNCTION = "django_app_record_event"  # created by migration 0002, on PostgreSQL
_RECORD_SIGNATURE = (
    f"{RECORD_FUNCTION}"
    "(text, text, text, text, jsonb, timestamp with time zone, boolean, boolean, boolean)"
)
_function_present: set[str] = set()  # database aliases where it was found
_function_missing_since: dict[str, float] = {}  # alias -> when it was last found missing
FUNCTION_RECHECK_SECONDS = 60.0


def _has_function(using: str) -> bool:
    """Whether migration 0002's function exists. Looked up once per process while it does;
    while it does not (code deployed before ``migrate``, a test run with
    ``--nomigrations``), saves record with the ORM like on other databases, and it is
    looked up again a minute later. Calling a missing function would abort the host's
    transaction, so this is not left to chance."""
    if using in _function_present:
        return True
    missing_since = _function_missing_since.get(using)
    if missing_since is not None and time.monotonic() - missing_since < FUNCTION_RECHECK_SECONDS:
        return False
    # In a savepoint: inside the host's transaction even this must not be able to abort it.
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", [_RECORD_SIGNATURE])
        (present,) = cursor.fetchone()
    if present:
        _function_present.add(using)
        _function_missing_since.pop(using, None)
        return True
    if missing_since is None:
        logger.warning(
            "%s is missing from the database %r: django_app's migrations are not all "
            "applied. Saves are recorded the slower way until they are: run "
            "manage.py migrate django_app.",
            RECORD_FUNCTION,
            using,
        )
    _function_missing_since[using] = time.monotonic()
    return False


def _outbox_values(
    event: UserEnrichedEvent, content_hash: str, now: datetime, lease: Lease | None
) -> dict[str, Any]:
    """Column values of one new outbox row (for raw inserts and COPY), keyed by column."""
    return {
        "message_id": event.message_id,
        "user_id": event.user_id,
        "group_id": event.group_id,
        "content_hash": content_hash,
        "payload": event.to_json().decode("utf-8"),
        "status": Status.PENDING.value,
        "attempts": 0,
        "next_attempt_at": lease.until if lease else now,
        "lease_expires_at": lease.until if lease else None,
        "claim_token": lease.token if lease else "",
        "sink": "",
        "last_error": "",
        "created_at": now,
        "updated_at": now,
        "delivered_at": None,
    }


@dataclass(frozen=True)
class Lease:
    """Rows recorded already claimed by their recorder (a backfill sending them itself)."""

    token: str
    until: datetime


def record_events(
    events: Sequence[UserEnrichedEvent],
    *,
    force: bool = False,
    skip_empty: bool = False,
    lease: Lease | None = None,
    using: str | None = None,
) -> list[Recorded]:
    """Record a batch in one transaction: one ledger read, one insert, one ledger upsert.

    Returns one ``Recorded`` per event, in order. Nothing asks for delivery here:
    ``record_event`` does for the live path; rows recorded under a ``lease`` are their
    recorder's to send.
    """
    events = [apply_exclusions(event) for event in events]
    if _capture:
        for event in events:
            for capture in _capture:
                capture(event)
        return [Recorded(event, None) for event in events]
    using = using or router.db_for_write(OutboxEvent)
    hashes = [event.content_hash() for event in events]
    now = timezone.now()
    with transaction.atomic(using=using):
        ledger = read_ledger({event.user_id for event in events}, using)
        indexes = choose_events(events, hashes, ledger, force=force, skip_empty=skip_empty)
        chosen_events = [events[i] for i in indexes]
        chosen_hashes = [hashes[i] for i in indexes]
        rows = insert_outbox(chosen_events, chosen_hashes, now, lease, using)
        write_ledger(
            [
                (e.user_id, h, e.message_id)
                for e, h in zip(chosen_events, chosen_hashes, strict=True)
            ],
            now,
            using,
        )
    by_index = dict(zip(indexes, rows, strict=True))
    return [Recorded(event, by_index.get(index)) for index, event in enumerate(events)]


def choose_events(
    events: list[UserEnrichedEvent],
    hashes: Sequence[str],
    ledger: dict[str, tuple[str, str]],
    *,
    force: bool = False,
    skip_empty: bool = False,
) -> list[int]:
    """Indexes of the events to record: content the ledger does not hold for the user (the
    last event of a user wins). A re-recorded user's event gets a message id chained on the
    previous one, replaced in ``events``."""
    chosen: dict[str, int] = {}
    for index, (event, content_hash) in enumerate(zip(events, hashes, strict=True)):
        previous = ledger.get(event.user_id)
        if previous is not None and previous[0] == content_hash and not force:
            continue
        if previous is None and skip_empty and event.properties.is_blank():
            continue
        if previous is not None and event.has_default_message_id:
            # A re-recording (forced, or content that changed back) must not reuse an
            # id already sent; chaining on the previous id keeps ids deterministic.
            events[index] = event.model_copy(
                update={"message_id": chain_message_id(previous[1], event)}
            )
        chosen[event.user_id] = index
    return sorted(chosen.values())


def insert_outbox(
    events: Sequence[UserEnrichedEvent],
    hashes: Sequence[str],
    now: datetime,
    lease: Lease | None,
    using: str,
) -> list[Claimed]:
    """New pending outbox rows (claimed under ``lease`` if given), in order."""
    if not events:
        return []
    if connections[using].vendor == "postgresql" and len(events) >= COPY_THRESHOLD:
        pks = copy_outbox(events, hashes, now, lease, using)
    else:
        extra: dict[str, Any] = (
            {
                "claim_token": lease.token,
                "next_attempt_at": lease.until,
                "lease_expires_at": lease.until,
            }
            if lease
            else {}
        )
        created = OutboxEvent.objects.using(using).bulk_create(
            [
                OutboxEvent(
                    message_id=event.message_id,
                    user_id=event.user_id,
                    group_id=event.group_id,
                    content_hash=content_hash,
                    payload=event.model_dump(mode="json"),
                    created_at=now,
                    **extra,
                )
                for event, content_hash in zip(events, hashes, strict=True)
            ]
        )
        pks = [row.pk for row in created]
    claim_token = lease.token if lease else ""
    return [
        Claimed(pk, event.message_id, event.user_id, 0, claim_token)
        for pk, event in zip(pks, events, strict=True)
    ]


COPY_THRESHOLD = 50  # below this, one INSERT is as quick and simpler


def read_ledger(user_ids: set[str], using: str, *, lock: bool = True) -> dict[str, tuple[str, str]]:
    """``user_id -> (content_hash, message_id)`` for these users; with ``lock``, locked until
    commit (so inside a transaction)."""
    connection = connections[using]
    if connection.vendor == "postgresql" and len(user_ids) >= COPY_THRESHOLD:
        # One array parameter, bound server-side, instead of a thousand quoted literals.
        table = connection.ops.quote_name(LedgerEntry._meta.db_table)
        with server_bound_cursor(connection) as cursor:
            cursor.execute(
                f"SELECT user_id, content_hash, message_id FROM {table} "
                f"WHERE user_id = ANY(%b){' FOR UPDATE' if lock else ''}",
                [list(user_ids)],
            )
            return {user_id: (digest, message_id) for user_id, digest, message_id in cursor}
    entries = LedgerEntry.objects.using(using).filter(user_id__in=user_ids)
    if lock:
        entries = entries.select_for_update()
    return {
        user_id: (content_hash, message_id)
        for user_id, content_hash, message_id in entries.values_list(
            "user_id", "content_hash", "message_id"
        )
    }


def write_ledger(
    entries: list[tuple[str, str, str]], now: datetime, using: str, *, only_new: bool = False
) -> None:
    """Upsert ``(user_id, content_hash, message_id)`` entries; with ``only_new``, insert only
    the users the ledger does not hold (an entry written meanwhile wins)."""
    if not entries:
        return
    connection = connections[using]
    if connection.vendor == "postgresql" and len(entries) >= COPY_THRESHOLD:
        table = connection.ops.quote_name(LedgerEntry._meta.db_table)
        user_ids, hashes, message_ids = (list(column) for column in zip(*entries, strict=True))
        on_conflict = (
            "DO NOTHING"
            if only_new
            else "DO UPDATE SET content_hash = EXCLUDED.content_hash, "
            "message_id = EXCLUDED.message_id, recorded_at = EXCLUDED.recorded_at"
        )
        with server_bound_cursor(connection) as cursor:
            cursor.execute(
                f"INSERT INTO {table} (user_id, content_hash, message_id, recorded_at) "
                "SELECT u, h, m, %b FROM unnest(%b::text[], %b::text[], %b::text[]) AS t(u, h, m) "
                f"ON CONFLICT (user_id) {on_conflict}",
                [now, user_ids, hashes, message_ids],
            )
        return
    rows = [
        LedgerEntry(user_id=u, content_hash=h, message_id=m, recorded_at=now) for u, h, m in entries
    ]
    if only_new:
        LedgerEntry.objects.using(using).bulk_create(rows, ignore_conflicts=True)
        return
    LedgerEntry.objects.using(using).bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["user_id"],
        update_fields=["content_hash", "message_id", "recorded_at"],
    )


def write_ledger_if_unchanged(
    entries: Sequence[tuple[str, str, str, str | None]], now: datetime, using: str
) -> int:
    """Compare-and-set ``(user_id, content_hash, message_id, expected_message_id)`` entries:
    each is written only if the user's entry still has the expected message id (None: the
    user still has no entry). Returns how many were written.

    For a writer that read the ledger, then spent a while (a backfill sending a batch):
    a live save that recorded newer content for the user meanwhile keeps its entry.
    """
    if not entries:
        return 0
    # No savepoint of its own: a caller's transaction (the backfill's) is enough.
    with transaction.atomic(using=using, savepoint=False):
        current = read_ledger({entry[0] for entry in entries}, using)  # locked until commit
        updates, inserts = [], []
        for user_id, content_hash, message_id, expected in entries:
            found = current.get(user_id)
            if expected is None and found is None:
                inserts.append((user_id, content_hash, message_id))
            elif expected is not None and found is not None and found[1] == expected:
                updates.append((user_id, content_hash, message_id))
        # In key order, like any other writer of many entries, so that two never deadlock.
        write_ledger(sorted(updates), now, using)
        write_ledger(sorted(inserts), now, using, only_new=True)
    return len(updates) + len(inserts)


def copy_outbox(
    events: Sequence[UserEnrichedEvent],
    hashes: Sequence[str],
    now: datetime,
    lease: Lease | None,
    using: str,
) -> list[int]:
    """Insert outbox rows with PostgreSQL's ``COPY``; returns their pks, in order.

    ``bulk_create`` sends JSON payloads as text arrays that the driver escapes character by
    character, and builds a model instance per row: together most of a backfill's database
    time. ``COPY`` streams the rows as they are; ids are taken from the sequence first.
    """
    connection = connections[using]
    table = OutboxEvent._meta.db_table
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [table, len(events)],
        )
        pks = [pk for (pk,) in cursor.fetchall()]
        rows = [
            {"id": pk, **_outbox_values(event, content_hash, now, lease)}
            for pk, event, content_hash in zip(pks, events, hashes, strict=True)
        ]
        columns = ", ".join(quote(column) for column in rows[0])
        with cursor.cursor.copy(f"COPY {quote(table)} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(list(row.values()))
    return pks


def chain_message_id(previous: str, event: UserEnrichedEvent) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"user_enriched:{previous}:{event.message_id}"))


def storable(text: str) -> str:
    """``text`` as every database can keep it: NUL and lone surrogates (which the bad data
    being reported may well hold) spelled out as escapes."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def record_invalid(
    problem: EventValidationError, *, user_id: Any, source: str, using: str | None = None
) -> OutboxEvent:
    """Keep a dead row for data that could not become an event, so nothing vanishes silently."""
    text = storable(redact(f"{source}: invalid data, not sent: {problem}", secrets()))
    user = storable(str(user_id))[:255] if user_id not in (None, "") else "(unknown)"
    logger.warning("user_enriched for user %s not recorded: %s", user, text)
    return OutboxEvent.objects.using(using or router.db_for_write(OutboxEvent)).create(
        message_id=f"invalid-{uuid.uuid4()}",
        user_id=user,
        payload={"problems": [[storable(path), storable(msg)] for path, msg in problem.problems]},
        status=Status.DEAD,
        last_error=text,
    )


def safe_record(
    build: Callable[[], UserEnrichedEvent],
    *,
    user_id: Callable[[], Any],
    source: str,
    force: bool = False,
    skip_empty: bool = False,
) -> Recorded | None:
    """Build and record, never raising: the save path must not break because of tracking."""
    try:
        try:
            try:
                event = build()
            except RecursionError:
                # Input shaped to exhaust the stack (a cycle, absurd nesting) that slipped
                # past the schema's depth limit: bad data all the same, so a dead row.
                raise EventValidationError([("(event)", "nested too deeply to validate")]) from None
        except EventValidationError as exc:
            with transaction.atomic():
                record_invalid(exc, user_id=_quietly(user_id), source=source)
            return None
        return record_event(event, force=force, skip_empty=skip_empty)
    except IntegrityError as exc:
        logger.error(
            "user_enriched for %s not recorded: its message id is already in the outbox (%s). "
            "Give each event its own message_id.",
            source,
            exc,
        )
    except (MappingError, ConfigurationError) as exc:
        logger.error(
            "user_enriched not recorded: %s. Fix TRACKING_ADAPTER "
            "(manage.py check reports this too).",
            exc,
        )
    except Exception:
        logger.exception(
            "user_enriched for %s (user %s) not recorded because of a database or unexpected "
            "error; the save itself went through (the host's transaction is intact). It is not "
            "lost: manage.py reconcile_user_enriched records it (schedule it every few "
            "minutes). Check that django_app's migrations are applied.",
            source,
            storable(str(_quietly(user_id)))[:255],
        )
    return None


def _quietly(getter: Callable[[], Any]) -> Any:
    try:
        return getter()
    except Exception:
        return None


def is_capturing() -> bool:
    """Whether events go to ``capture_events()`` rather than the outbox and the sink."""
    return bool(_capture)


@contextmanager
def capturing(sink: Callable[[UserEnrichedEvent], None]) -> Iterator[None]:
    _capture.append(sink)
    try:
        yield
    finally:
        _capture.remove(sink)
