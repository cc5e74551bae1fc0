"""Backfilling existing users: read the source model by primary key, send, write down.

Each batch is read with keyset pagination (``pk > last``, never OFFSET), turned into events
with the live path's mapping, checked against the ledger (content already sent for the user
is skipped), sent straight to the sink, and then written down in one short transaction: the
ledger takes every event sent, the outbox only those the sink did not accept, which are
then rescheduled or dead-lettered like any delivery. While batch *k* is on the wire, batch
*k+1* is read and checked (a window of one batch in flight), so database and network overlap.

The rows of a batch and the ledger entries they are checked against are read in one
snapshot (``Backfill.snapshot``), and the ledger is written with a compare-and-set against
the entries read: so an event sent is never older than the entry it replaces, and a live
save committed meanwhile keeps its entry and its own, newer, event.
``manage.py reconcile_user_enriched`` is the same walk, recording into the outbox only the
users whose content the ledger does not hold.

Safety: nothing is marked sent before the sink accepted it. If the run dies mid-batch, the
ledger does not hold that batch, and a re-run sends it again with the same message ids
(deduplicated by Segment-compatible collectors). ``--no-deliver`` instead records every
event in the outbox for the workers to send.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from django.core.exceptions import EmptyResultSet, FieldDoesNotExist
from django.db import connections, models, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Max, Min, Q
from django.utils import timezone

from django_app import dispatch
from django_app.api import build_event, validate_events
from django_app.conf import app_settings
from django_app.models import LedgerEntry, OutboxEvent
from django_app.recording import is_capturing, record_events
from django_app.runtime import get_sink, secrets
from django_app.source import Source, aware
from django_app.store import Claimed, Lease, choose_events, get_store, ledger_key, subject_of
from tracking_adapter import EnrichedEvent, EventValidationError, MappingError, PropertyMap
from tracking_adapter.security import redact
from tracking_adapter.sinks import Outcome, Sink
from tracking_adapter.sinks.base import Status as OutcomeStatus


@dataclass
class BackfillStats:
    read: int = 0
    recorded: int = 0
    sent: int = 0
    unchanged: int = 0
    invalid: int = 0
    rejected: int = 0
    to_retry: int = 0
    # Chosen, then not written down: a live save recorded newer content for the user meanwhile.
    superseded: int = 0
    invalid_rows: list[str] = field(default_factory=list)
    rejected_reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class BackfillOptions:
    batch_size: int = 1000
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None
    subject_ids: Sequence[str] = ()  # --user-id / --group-id: only these subjects
    force: bool = False
    deliver: bool = True
    dry_run: bool = False
    # A user never recorded whose properties are all blank is skipped (the automatic
    # source's rule: a profile created blank has not been enriched yet).
    skip_empty: bool = False
    # Recorded events (deliver=False) are handed to DISPATCH at commit (inline: sent in
    # this process; celery: a task), like a live save's; otherwise they wait for workers.
    request_delivery: bool = False
    # Primary keys this run covers, [start, stop); set for each process of --workers.
    pk_range: tuple[Any, Any] | None = None


MAX_INVALID_ROWS_LISTED = 50
MAX_BACKOFF_PAUSE = 30.0
# The cyclic collector's thresholds while a backfill runs (see fewer_collections).
BACKFILL_GC_THRESHOLDS = (100_000, 50, 100)
# The interpreter's thread switch interval while a backfill runs, in seconds (see
# prompt_handoffs); None leaves it as it is.
BACKFILL_SWITCH_INTERVAL: float | None = 0.001
# PostgreSQL isolation levels under which a transaction's statements share one snapshot.
SNAPSHOT_ISOLATION = frozenset({"repeatable read", "serializable"})

T = TypeVar("T")


def field_lookup(model: type[models.Model], path: str) -> str | None:
    """The ORM lookup (``user__username``) for an attribute path made only of fields, or None."""
    current = model
    parts = path.split(".")
    for position, part in enumerate(parts):
        try:
            model_field = current._meta.get_field(part)
        except FieldDoesNotExist:
            return None
        related = getattr(model_field, "related_model", None)
        if position < len(parts) - 1:
            if not (model_field.is_relation and isinstance(related, type)):
                return None
            current = related
    return "__".join(parts)


def relations_to_join(model: type[models.Model], paths: Sequence[str]) -> list[str]:
    """Forward FK/one-to-one prefixes of the paths, for ``select_related`` (no N+1 queries)."""
    joins = set()
    for path in paths:
        current, walked = model, []
        for part in path.split(".")[:-1]:
            try:
                model_field = current._meta.get_field(part)
            except FieldDoesNotExist:
                break
            related = getattr(model_field, "related_model", None)
            if not (model_field.is_relation and model_field.concrete and isinstance(related, type)):
                break
            if getattr(model_field, "many_to_many", False):
                break
            walked.append(part)
            current = related
        if walked:
            joins.add("__".join(walked))
    return sorted(joins)


def fetch_tuples(queryset: models.QuerySet[Any]) -> list[tuple[Any, ...]]:
    """The rows of a ``values_list`` queryset, read in one go, converted only where a field
    converts its database value (a JSONField, say): what ``list(queryset)`` returns, without
    the ORM's per-row iterator machinery, which costs as much as the driver's own decoding."""
    compiler = queryset.query.get_compiler(using=queryset.db)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:
        return []
    converters = compiler.get_converters([column for column, _, _ in compiler.select])
    with get_store(queryset.db).row_cursor() as cursor:
        cursor.execute(sql, params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    if converters:
        return [tuple(row) for row in compiler.apply_converters(rows, converters)]
    return rows


def _isolation(connection: BaseDatabaseWrapper) -> str:
    """The current transaction's isolation level on PostgreSQL (``read committed``, ...)."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW transaction_isolation")
        row = cursor.fetchone()
    return str(row[0]) if row else ""


@contextmanager
def _sqlite_read_transaction(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """A deferred transaction on SQLite, for reads only: its reads see one state of the
    database, and it takes no write lock (``atomic()`` would, in IMMEDIATE mode)."""
    with connection.cursor() as cursor:
        cursor.execute("BEGIN DEFERRED")
    try:
        yield
    except BaseException:
        try:
            with connection.cursor() as cursor:
                cursor.execute("ROLLBACK")
        except Exception:
            connection.close()  # the transaction cannot outlive its connection
        raise
    with connection.cursor() as cursor:
        cursor.execute("COMMIT")


@dataclass
class CheckedBatch:
    """One batch read: its events and what the ledger held for their users, as of the
    rows' snapshot. ``read_again`` is set when the two could not be read in one snapshot."""

    rows: int
    events: list[EnrichedEvent]
    ledger: dict[tuple[str, str], tuple[str, str]]  # by ledger_key
    read_again: Callable[[], list[Any]] | None


@dataclass
class SendBatch:
    """Events chosen to send, with what the ledger held for their users when chosen."""

    events: list[EnrichedEvent]
    hashes: list[str]
    expected: list[str | None]  # each user's ledger message id then (None: no entry)
    keys: list[tuple[str, str]]  # each event's ledger_key

    def ledger_entries(self) -> dict[tuple[str, str], tuple[str, str]]:
        """The entries this batch writes once sent: ``ledger_key -> (content_hash, message_id)``."""
        return {
            k: (h, e.message_id)
            for k, e, h in zip(self.keys, self.events, self.hashes, strict=True)
        }


class Backfill:
    """One backfill run; ``run()`` yields stats after each batch (for a progress display)."""

    def __init__(
        self,
        source: Source,
        options: BackfillOptions,
        *,
        sink: Sink | None = None,
        emit: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.source = source
        self.options = options
        self.sink = sink
        self.emit = emit or (lambda item: None)  # where --dry-run items go
        self.stats = BackfillStats()
        self.stopping = False
        self.source_label: str | None = None  # --model, for worker processes to rebuild
        self.workers = 1  # processes sharing the run (run_parallel), for the summary
        # Inside the caller's transaction: whether its statements share one snapshot.
        self._caller_snapshot: bool | None = None

    # -- what to read -------------------------------------------------------------------
    def _paths(self) -> list[str]:
        mapping = self.source.mapping
        candidates = [mapping.user_id, mapping.group_id]
        properties = mapping.properties
        fields_map = getattr(properties, "fields", None)
        if isinstance(fields_map, dict):
            candidates += list(fields_map.values())
        return [path for path in candidates if isinstance(path, str)]

    def queryset(self) -> models.QuerySet[Any]:
        model = self.source.model
        queryset = model._default_manager.all()
        joins = relations_to_join(model, self._paths())
        if joins:
            queryset = queryset.select_related(*joins)
        timestamp_path = self.source.timestamp_path
        if self.options.since or self.options.until:
            lookup = field_lookup(model, timestamp_path) if timestamp_path else None
            if lookup is None:
                raise MappingError(
                    f"--since/--until filter on {self.source.setting}['TIMESTAMP'], which "
                    "must be set to a field path (like 'enriched_at')"
                )
            if self.options.since:
                queryset = queryset.filter(**{f"{lookup}__gte": self.options.since})
            if self.options.until:
                queryset = queryset.filter(**{f"{lookup}__lt": self.options.until})
        subject_path = self.source.subject_path
        if self.options.subject_ids and isinstance(subject_path, str):
            lookup = field_lookup(model, subject_path)
            if lookup is not None:
                queryset = queryset.filter(Q(**{f"{lookup}__in": list(self.options.subject_ids)}))
        if self.options.pk_range is not None:
            start, stop = self.options.pk_range
            queryset = queryset.filter(pk__gte=start)
            if stop is not None:
                queryset = queryset.filter(pk__lt=stop)
        return queryset.order_by("pk")

    def _filters_subjects_in_python(self) -> bool:
        path = self.source.subject_path
        return bool(self.options.subject_ids) and not (
            isinstance(path, str) and field_lookup(self.source.model, path) is not None
        )

    def count(self) -> int:
        total = self.queryset().count()
        return min(total, self.options.limit) if self.options.limit else total

    def columns(self) -> list[str] | None:
        """ORM lookups to read with ``values_list`` when every path is a plain field path.

        Rows then come back as tuples: no model instances, no ``post_init`` signals, which
        is most of the cost of reading. Otherwise (properties, methods, a provider payload
        or a MAPPER) instances are read and mapped like the live path does.
        """
        mapping = self.source.mapping
        properties = mapping.properties
        if not isinstance(properties, PropertyMap):
            return None
        paths = [mapping.user_id, mapping.group_id, self.source.timestamp_path or "pk"]
        paths += list(properties.fields.values())
        lookups = []
        for path in paths:
            lookup = field_lookup(self.source.model, path) if isinstance(path, str) else None
            if lookup is None:
                return None
            lookups.append(lookup)
        return ["pk", *lookups]

    def batches(self) -> Iterator[list[Any]]:
        """The rows, batch by batch, in primary-key order (keyset: ``pk > last``)."""
        return self._walk(lambda rows, again, consistent: rows)

    def _walk(
        self,
        check: Callable[[list[Any], Callable[[], list[Any]], bool], T],
        *,
        snapshot: bool = False,
    ) -> Iterator[T]:
        """The keyset walk. Each batch's rows go to ``check`` with a function reading the
        same page again and whether the rows and what ``check`` reads share one snapshot of
        the database (with ``snapshot``: see ``snapshot()``); its results are yielded."""
        queryset = self.queryset()
        columns = self.columns()
        if columns is not None:
            queryset = queryset.values_list(*columns)

        def read(page: models.QuerySet[Any]) -> list[Any]:
            return fetch_tuples(page) if columns is not None else list(page)

        last_pk: Any = None
        remaining = self.options.limit
        while not self.stopping:
            size = (
                self.options.batch_size
                if remaining is None
                else min(remaining, self.options.batch_size)
            )
            if size <= 0:
                return
            page = queryset if last_pk is None else queryset.filter(pk__gt=last_pk)
            with self.snapshot(queryset.db) if snapshot else nullcontext(False) as consistent:
                rows: list[Any] = read(page[:size])
                if not rows:
                    return
                first_pk = rows[0][0] if columns is not None else rows[0].pk
                last_pk = rows[-1][0] if columns is not None else rows[-1].pk
                same_page = queryset.filter(pk__gte=first_pk, pk__lte=last_pk)
                result = check(rows, partial(read, same_page), consistent)
            if remaining is not None:
                remaining -= len(rows)
            yield result

    @contextmanager
    def snapshot(self, rows_alias: str) -> Iterator[bool]:
        """Read a batch's rows and the ledger in one snapshot of the database.

        Read one after the other, a live save committed between the two reads leaves the
        run holding a row older than the ledger entry it compares it with: it would see a
        change, send the older content and write it over the newer entry (its message id
        is the one the compare-and-set expects). Yields whether the reads inside share one
        snapshot; when they cannot, ``_changed`` reads the chosen rows again.

        PostgreSQL, MySQL and MariaDB: a REPEATABLE READ transaction (a snapshot, which
        blocks no writer).
        SQLite: a deferred read transaction (a shared lock, or in WAL mode a snapshot;
        never the write lock that ``atomic()`` in IMMEDIATE mode takes). Inside the
        caller's transaction its isolation decides: SQLite's is serializable; on PostgreSQL
        REPEATABLE READ and SERIALIZABLE keep one snapshot, READ COMMITTED does not.
        """
        using = router.db_for_write(LedgerEntry)
        connection = connections[using]
        vendor = connection.vendor
        if rows_alias != using:  # two databases: no snapshot covers both
            yield False
        elif connection.in_atomic_block:
            if self._caller_snapshot is None:
                self._caller_snapshot = vendor == "sqlite" or (
                    vendor == "postgresql" and _isolation(connection) in SNAPSHOT_ISOLATION
                )
            yield self._caller_snapshot
        elif vendor in ("postgresql", "mysql"):
            # MySQL/MariaDB: issued before the transaction's first statement, it sets the
            # isolation of the transaction that statement starts (InnoDB's consistent read).
            with transaction.atomic(using=using):
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                yield True
        elif vendor == "sqlite":
            with _sqlite_read_transaction(connection):
                yield True
        else:
            yield False

    def checked_batches(self) -> Iterator[CheckedBatch]:
        """Each batch's events and their users' ledger entries, read in one snapshot."""
        using = router.db_for_write(LedgerEntry)

        def check(
            rows: list[Any], again: Callable[[], list[Any]], consistent: bool
        ) -> CheckedBatch:
            events = self.build(rows)
            ledger = get_store(using).read_ledgers(events, lock=False)
            return CheckedBatch(len(rows), events, ledger, None if consistent else again)

        return self._walk(check, snapshot=True)

    # -- the run ------------------------------------------------------------------------
    def build(self, rows: list[Any]) -> list[EnrichedEvent]:
        """The events of these rows; invalid rows are counted (and listed) in the stats."""
        return self._build(rows, report=True)

    def _build(self, rows: list[Any], *, report: bool) -> list[EnrichedEvent]:
        events = []
        wanted = (
            set(map(str, self.options.subject_ids)) if self._filters_subjects_in_python() else None
        )
        event_class = self.source.event_class
        from_tuples = bool(rows) and isinstance(rows[0], tuple)
        names = list(self.source.mapping.properties.fields) if from_tuples else []  # type: ignore[attr-defined]
        context = dict(self.source.mapping.context)
        has_timestamp = self.source.timestamp_path is not None
        results: Iterator[tuple[Any, EnrichedEvent | EventValidationError]]
        if from_tuples:
            items = []
            for _, user_id, group_id, timestamp, *values in rows:
                data = {
                    "user_id": user_id,
                    "group_id": group_id,
                    "properties": dict(zip(names, values, strict=True)),
                    "context": context,
                }
                if has_timestamp and timestamp is not None:
                    data["timestamp"] = aware(timestamp)
                items.append(data)
            validated = validate_events(items, event_class=event_class)
            results = zip((row[0] for row in rows), validated, strict=True)
        else:
            results = ((row.pk, self._build_one(row)) for row in rows)
        for pk, event in results:
            if isinstance(event, EventValidationError):
                if report:
                    self.stats.invalid += 1
                    if len(self.stats.invalid_rows) < MAX_INVALID_ROWS_LISTED:
                        self.stats.invalid_rows.append(f"pk={pk}: {event}")
                continue
            if wanted is not None and event.subject_id not in wanted:
                continue
            events.append(event)
        return events

    def _build_one(self, instance: Any) -> EnrichedEvent | EventValidationError:
        try:
            return build_event(instance, event=self.source.event_name)
        except EventValidationError as exc:
            return exc

    def run(self) -> Iterator[BackfillStats]:
        """Process every batch; yields after each one. ``stopping`` ends it after a batch."""
        sink = self.sink
        if self.options.deliver and not self.options.dry_run:
            sink = sink or get_sink()
        using = router.db_for_write(OutboxEvent)
        # SQLite allows one writer at a time and refuses (rather than waits for) a reader that
        # wants to become a writer, so there the batches are sent one after the other.
        overlap = connections[using].vendor != "sqlite"
        with (
            fewer_collections(),
            prompt_handoffs(),
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill-send") as sender,
        ):
            in_flight: Future[None] | None = None
            in_flight_batch: SendBatch | None = None
            for checked in self.checked_batches():
                self.stats.read += checked.rows
                events = checked.events
                if is_capturing() and not self.options.dry_run:
                    # capture_events(): the events go to the capture, not the outbox.
                    recorded = record_events(
                        events, force=self.options.force, skip_empty=self.options.skip_empty
                    )
                    created = sum(item.created for item in recorded)
                    self.stats.recorded += created
                    self.stats.unchanged += len(recorded) - created
                    yield self.stats
                    continue
                batch = self._changed(checked, in_flight_batch)
                self.stats.recorded += len(batch.events)
                self.stats.unchanged += len(events) - len(batch.events)
                if self.options.dry_run:
                    for event in batch.events:
                        self.emit(event.to_thrivestack())
                    yield self.stats
                    continue
                if sink is None:
                    # --no-deliver (and reconcile): the outbox holds them for the workers.
                    self._record(batch, using)
                    yield self.stats
                    continue
                if in_flight is not None:
                    in_flight.result()  # at most one batch on the wire: memory stays bounded
                    in_flight, in_flight_batch = None, None
                if batch.events:
                    if overlap:
                        in_flight = sender.submit(self._send, batch, sink, using)
                        in_flight_batch = batch
                    else:
                        self._send(batch, sink, using)
                yield self.stats
            if in_flight is not None:
                in_flight.result()
                yield self.stats
            sender.submit(connections.close_all).result()  # the sender thread's connection

    def _changed(self, checked: CheckedBatch, in_flight: SendBatch | None) -> SendBatch:
        """The events whose content the ledger does not hold yet. The batch on the wire has
        not written the ledger yet: its entries count as written (a user may have several
        rows, in consecutive batches).

        When the rows and the ledger could not be read in one snapshot, the page is read
        again and the users whose content changed since are dropped: a live save changed
        them after the rows were read, and recorded (or records) its own event."""
        events = checked.events
        hashes = [event.content_hash() for event in events]
        keys = [ledger_key(event) for event in events]  # once: each is needed three times
        ledger = dict(checked.ledger)
        if in_flight is not None:
            ledger.update(in_flight.ledger_entries())
        indexes = choose_events(
            events,
            hashes,
            ledger,
            force=self.options.force,
            skip_empty=self.options.skip_empty,
            keys=keys,
        )
        if indexes and checked.read_again is not None:
            rows_now = checked.read_again()
            current = {ledger_key(e): e.content_hash() for e in self._build(rows_now, report=False)}
            indexes = [i for i in indexes if current.get(keys[i]) == hashes[i]]
        chosen = [events[i] for i in indexes]
        expected = [ledger[k][1] if (k := keys[i]) in ledger else None for i in indexes]
        return SendBatch(chosen, [hashes[i] for i in indexes], expected, [keys[i] for i in indexes])

    def _write_ledger(
        self, batch: SendBatch, now: datetime, using: str, needed: Sequence[int]
    ) -> list[int]:
        """Write the batch's ledger entries, each only if the user's entry is still the one
        read with the rows (a compare-and-set: a live save that recorded newer content
        meanwhile keeps its entry). Returns which of the ``needed`` indexes were written.
        Inside the caller's transaction, which keeps the entries locked until it ends."""
        entries = [
            (subject_of(e), h, e.message_id, expected)
            for e, h, expected in zip(batch.events, batch.hashes, batch.expected, strict=True)
        ]
        store = get_store(using)
        kind = self.source.event_name
        written = store.write_ledger_if_unchanged(entries, now, event=kind)
        self.stats.superseded += len(entries) - written
        if written == len(entries) or not needed:
            return list(needed)
        events = batch.events
        held = store.read_ledger({subject_of(events[i]) for i in needed}, event=kind, lock=False)
        return [
            i
            for i in needed
            if held.get(subject_of(events[i]), ("", ""))[1] == events[i].message_id
        ]

    def _record(self, batch: SendBatch, using: str) -> None:
        """Record the batch in the outbox for the normal delivery path, in one transaction
        with its ledger entries: only the users whose entry is still the one read with the
        rows (an event a live save superseded meanwhile is not recorded at all)."""
        if not batch.events:
            return
        now = timezone.now()
        with transaction.atomic(using=using):
            kept = self._write_ledger(batch, now, using, range(len(batch.events)))
            rows = get_store(using).insert_outbox(
                [batch.events[i] for i in kept], [batch.hashes[i] for i in kept], now, None
            )
            if self.options.request_delivery:
                dispatch.request_delivery([row.pk for row in rows], using=using)

    def _send(self, batch: SendBatch, sink: Sink, using: str) -> None:
        """Send, then write down what happened: the ledger takes every event (delivered, or
        now the outbox's to deliver), the outbox only those not delivered, which are settled
        like any delivery attempt (rescheduled by the retry policy, or dead with the reason).

        Sending before writing is what makes a backfill cheap: a delivered event costs one
        ledger entry, not an outbox row written and then updated. If the run dies between
        the two, the ledger does not have the batch and a re-run sends it again with the
        same message ids (deduplicated by Segment-compatible collectors). The ledger write
        is a compare-and-set: a user whose entry a live save changed since it was read
        keeps the live save's entry, which is newer, and an event of theirs the sink did not
        accept is dropped rather than kept to retry (the live save's event supersedes it).
        """
        events, hashes = batch.events, batch.hashes
        outcomes = dispatch.send_events(events, sink)
        failed = [
            i for i, outcome in enumerate(outcomes) if outcome.status is not OutcomeStatus.DELIVERED
        ]
        now = timezone.now()
        lease = Lease(uuid.uuid4().hex, now + timedelta(seconds=app_settings.LEASE_SECONDS))
        with transaction.atomic(using=using):
            kept = self._write_ledger(batch, now, using, failed)
            rows = get_store(using).insert_outbox(
                [events[i] for i in kept], [hashes[i] for i in kept], now, lease
            )
        self.stats.sent += len(events) - len(failed)
        delays = [
            outcomes[i].delay or 1.0 for i in failed if outcomes[i].status is OutcomeStatus.RETRY
        ]
        if rows:
            self._settle(rows, [outcomes[i] for i in kept], sink, using)
        if delays and not self.stopping:
            # The service asked us to slow down: hold the next batch back (the main thread
            # waits for this one before sending another), without sleeping for an hour.
            time.sleep(min(max(delays), MAX_BACKOFF_PAUSE))

    def _settle(self, rows: list[Claimed], failures: list[Outcome], sink: Sink, using: str) -> None:
        settled = dispatch.settle(rows, failures, sink, using=using)
        self.stats.to_retry += settled.retried
        self.stats.rejected += settled.dead
        hidden = secrets()
        for outcome in failures:
            if outcome.status is OutcomeStatus.REJECTED:
                reason = redact(outcome.reason, hidden)[:200]
                self.stats.rejected_reasons[reason] = self.stats.rejected_reasons.get(reason, 0) + 1


def add_stats(total: BackfillStats, part: BackfillStats) -> None:
    for name in (
        "read",
        "recorded",
        "sent",
        "unchanged",
        "invalid",
        "rejected",
        "to_retry",
        "superseded",
    ):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    room = MAX_INVALID_ROWS_LISTED - len(total.invalid_rows)
    total.invalid_rows.extend(part.invalid_rows[:room])
    for reason, count in part.rejected_reasons.items():
        total.rejected_reasons[reason] = total.rejected_reasons.get(reason, 0) + count


@contextmanager
def fewer_collections() -> Iterator[None]:
    """The cyclic garbage collector runs less often for the duration, then as before.

    A batch's thousand events live until the batch is sent, so with the default thresholds
    (700, 10, 10) each batch survives several young collections and is promoted, and the
    promotions keep triggering collections of the whole heap (Django's objects included):
    10-17% of a one-process backfill's CPU (94-105 against 85-87 µs per event,
    ``python -m bench.phases --gc default`` and ``--gc raised``). The young generation is
    collected after 100,000 new objects rather than 700: several batches' objects come
    and go in between, freed by their reference counts, and a collection scans only those
    still alive then; after 10,000 (about a batch's worth) every batch was still scanned
    and promoted (35.3-35.7 against 32.0-34.1 µs of CPU per event, alternated runs of
    ``bench.phases``; 32.9-33.9 with the collector off).
    Batches hold no reference cycles, so collecting less often only defers the little there
    is to collect; the collector is never turned off. Process-wide while it lasts: a
    backfill runs in a command's own process, and the thresholds are restored after it.
    """
    previous = gc.get_threshold()
    gc.set_threshold(*BACKFILL_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


@contextmanager
def prompt_handoffs() -> Iterator[None]:
    """The sending thread gets the interpreter back sooner after each wait, for the duration.

    The sending thread waits on the network and the database (the lock released) while the
    reading thread validates (the lock held); each time a wait ends, the sender asks for the
    lock back and, at the default switch interval, gets it only after up to 5 ms. A batch
    sent to Segment takes several requests and round trips, so at the default the reading
    thread waited 14-16 µs per event for the sender, against 2-4 µs at 1 ms
    (``python -m bench.phases --sink segment --switch default`` and ``--switch backfill``).
    A shorter interval only makes the hand-off prompter; the work is the same. Process-wide
    while it lasts, like ``fewer_collections``, and restored after.
    """
    previous = sys.getswitchinterval()
    if BACKFILL_SWITCH_INTERVAL is not None:
        sys.setswitchinterval(BACKFILL_SWITCH_INTERVAL)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def split_pk_range(backfill: Backfill, parts: int) -> list[tuple[Any, Any]] | None:
    """``parts`` contiguous integer pk ranges of about equal width, or None if pks aren't ints."""
    bounds = backfill.queryset().aggregate(low=Min("pk"), high=Max("pk"))
    low, high = bounds["low"], bounds["high"]
    if not (isinstance(low, int) and isinstance(high, int)):
        return None
    width = max(1, (high - low + parts) // parts)
    return [(low + i * width, low + (i + 1) * width) for i in range(parts)]


def _child(
    event: str,
    model: str | None,
    options: BackfillOptions,
    updates: Any,
    number: int,
) -> None:
    """One --workers process: its own connections, sink and signal handling."""
    import signal

    from django_app import runtime
    from django_app.source import build_source, source_configs

    runtime.reset()  # the parent's sink holds sockets that must not be shared across a fork
    config = dict(source_configs()[event])
    source = build_source({**config, "MODEL": model}, event) if model else runtime.get_source(event)
    assert source is not None
    backfill = Backfill(source, options)
    signal.signal(signal.SIGINT, lambda *_: setattr(backfill, "stopping", True))
    try:
        for stats in backfill.run():
            updates.put((number, stats, False))
        updates.put((number, backfill.stats, True))
    except BaseException as exc:  # reported to the parent, which fails the command
        updates.put((number, f"{type(exc).__name__}: {exc}", True))
    finally:
        connections.close_all()


def run_parallel(backfill: Backfill, workers: int, model: str | None) -> Iterator[BackfillStats]:
    """Run ``workers`` processes over disjoint pk ranges; yields the combined stats as they go.

    Each process reads, records and sends its own range exactly as a single run would, so
    the guarantees are the same; the database and the sink see ``workers`` writers.
    """
    import multiprocessing

    ranges = split_pk_range(backfill, workers)
    if ranges is None:
        yield from backfill.run()
        return
    context = multiprocessing.get_context("fork")
    updates = context.Queue()
    connections.close_all()  # children must open their own connections
    processes = []
    for number, pk_range in enumerate(ranges):
        options = dataclasses.replace(backfill.options, pk_range=pk_range)
        process = context.Process(
            target=_child,
            args=(backfill.source.event_name, backfill.source_label, options, updates, number),
        )
        process.start()
        processes.append(process)
    latest: dict[int, BackfillStats] = {}
    finished: set[int] = set()
    errors: list[str] = []
    while len(finished) < len(processes):
        number, stats, done = updates.get()
        if isinstance(stats, str):
            errors.append(stats)
        else:
            latest[number] = stats
        if done:
            finished.add(number)
        total = BackfillStats()
        for part in latest.values():
            add_stats(total, part)
        backfill.stats = total
        yield total
    for process in processes:
        process.join()
    if errors:
        raise RuntimeError("a backfill worker failed: " + "; ".join(errors))
