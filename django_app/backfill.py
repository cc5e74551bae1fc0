"""Backfilling existing users: read the source model by primary key, send, write down.

Each batch is read with keyset pagination (``pk > last``, never OFFSET), turned into events
with the live path's mapping, checked against the ledger (content already sent for the user
is skipped), sent straight to the sink, and then written down in one short transaction: the
ledger takes every event sent, the outbox only those the sink did not accept, which are
then rescheduled or dead-lettered like any delivery. While batch *k* is on the wire, batch
*k+1* is read and checked (a window of one batch in flight), so database and network overlap.

Safety: nothing is marked sent before the sink accepted it. If the run dies mid-batch, the
ledger does not hold that batch, and a re-run sends it again with the same message ids
(deduplicated by Segment-compatible collectors). ``--no-deliver`` instead records every
event in the outbox for the workers to send.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import EmptyResultSet, FieldDoesNotExist
from django.db import connections, models, router, transaction
from django.db.models import Max, Min, Q
from django.utils import timezone

from django_app import dispatch
from django_app.api import build_event, excluded_properties, validate_event
from django_app.conf import app_settings
from django_app.models import LedgerEntry, OutboxEvent
from django_app.recording import (
    Lease,
    choose_events,
    insert_outbox,
    is_capturing,
    read_ledger,
    record_events,
    write_ledger_if_unchanged,
)
from django_app.runtime import get_sink, secrets
from django_app.source import Source, aware
from tracking_adapter import EventValidationError, MappingError, PropertyMap, UserEnrichedEvent
from tracking_adapter.security import redact
from tracking_adapter.sinks import Sink
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
    invalid_rows: list[str] = field(default_factory=list)
    rejected_reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class BackfillOptions:
    batch_size: int = 1000
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None
    user_ids: Sequence[str] = ()
    force: bool = False
    deliver: bool = True
    dry_run: bool = False
    # Primary keys this run covers, [start, stop); set for each process of --workers.
    pk_range: tuple[Any, Any] | None = None


MAX_INVALID_ROWS_LISTED = 50
MAX_BACKOFF_PAUSE = 30.0


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
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(sql, params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    if converters:
        return [tuple(row) for row in compiler.apply_converters(rows, converters)]
    return rows


@dataclass
class SendBatch:
    """Events chosen to send, with what the ledger held for their users when chosen."""

    events: list[UserEnrichedEvent]
    hashes: list[str]
    expected: list[str | None]  # each user's ledger message id then (None: no entry)

    def ledger_entries(self) -> dict[str, tuple[str, str]]:
        """The entries this batch writes once sent: ``user_id -> (content_hash, message_id)``."""
        return {e.user_id: (h, e.message_id) for e, h in zip(self.events, self.hashes, strict=True)}


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
                    "--since/--until filter on TRACKING_ADAPTER['SOURCE']['TIMESTAMP'], which "
                    "must be set to a field path (like 'enriched_at')"
                )
            if self.options.since:
                queryset = queryset.filter(**{f"{lookup}__gte": self.options.since})
            if self.options.until:
                queryset = queryset.filter(**{f"{lookup}__lt": self.options.until})
        if self.options.user_ids and isinstance(self.source.mapping.user_id, str):
            lookup = field_lookup(model, self.source.mapping.user_id)
            if lookup is not None:
                queryset = queryset.filter(Q(**{f"{lookup}__in": list(self.options.user_ids)}))
        if self.options.pk_range is not None:
            start, stop = self.options.pk_range
            queryset = queryset.filter(pk__gte=start)
            if stop is not None:
                queryset = queryset.filter(pk__lt=stop)
        return queryset.order_by("pk")

    def _filters_users_in_python(self) -> bool:
        path = self.source.mapping.user_id
        return bool(self.options.user_ids) and not (
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
        queryset = self.queryset()
        columns = self.columns()
        if columns is not None:
            queryset = queryset.values_list(*columns)
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
            rows: list[Any] = (
                fetch_tuples(page[:size]) if columns is not None else list(page[:size])
            )
            if not rows:
                return
            last_pk = rows[-1][0] if columns is not None else rows[-1].pk
            if remaining is not None:
                remaining -= len(rows)
            yield rows

    # -- the run ------------------------------------------------------------------------
    def build(self, rows: list[Any]) -> list[UserEnrichedEvent]:
        events = []
        wanted = set(map(str, self.options.user_ids)) if self._filters_users_in_python() else None
        from_tuples = bool(rows) and isinstance(rows[0], tuple)
        names = list(self.source.mapping.properties.fields) if from_tuples else []  # type: ignore[attr-defined]
        context = dict(self.source.mapping.context)
        has_timestamp = self.source.timestamp_path is not None
        excluded = excluded_properties()
        for row in rows:
            try:
                if from_tuples:
                    pk, user_id, group_id, timestamp, *values = row
                    data = {
                        "user_id": user_id,
                        "group_id": group_id,
                        "properties": dict(zip(names, values, strict=True)),
                        "context": context,
                    }
                    if has_timestamp and timestamp is not None:
                        data["timestamp"] = aware(timestamp)
                    event = validate_event(data, excluded=excluded)
                else:
                    pk = row.pk
                    event = build_event(row)
            except EventValidationError as exc:
                self.stats.invalid += 1
                if len(self.stats.invalid_rows) < MAX_INVALID_ROWS_LISTED:
                    self.stats.invalid_rows.append(f"pk={pk}: {exc}")
                continue
            if wanted is not None and event.user_id not in wanted:
                continue
            events.append(event)
        return events

    def run(self) -> Iterator[BackfillStats]:
        """Process every batch; yields after each one. ``stopping`` ends it after a batch."""
        sink = self.sink
        if self.options.deliver and not self.options.dry_run:
            sink = sink or get_sink()
        using = router.db_for_write(OutboxEvent)
        # SQLite allows one writer at a time and refuses (rather than waits for) a reader that
        # wants to become a writer, so there the batches are sent one after the other.
        overlap = connections[using].vendor != "sqlite"
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill-send") as sender:
            in_flight: Future[None] | None = None
            in_flight_batch: SendBatch | None = None
            for rows in self.batches():
                self.stats.read += len(rows)
                events = self.build(rows)
                if self.options.dry_run:
                    self._dry_run(events)
                    yield self.stats
                    continue
                if sink is None or is_capturing():
                    # --no-deliver: the outbox holds them for the workers.
                    recorded = record_events(events, force=self.options.force)
                    created = sum(item.created for item in recorded)
                    self.stats.recorded += created
                    self.stats.unchanged += len(recorded) - created
                    yield self.stats
                    continue
                batch = self._changed(events, using, in_flight_batch)
                self.stats.recorded += len(batch.events)
                self.stats.unchanged += len(events) - len(batch.events)
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

    def _changed(
        self, events: list[UserEnrichedEvent], using: str, in_flight: SendBatch | None
    ) -> SendBatch:
        """The events whose content the ledger does not hold yet. The batch on the wire has
        not written the ledger yet: its entries count as written (a user may have several
        rows, in consecutive batches)."""
        hashes = [event.content_hash() for event in events]
        ledger = read_ledger({event.user_id for event in events}, using, lock=False)
        if in_flight is not None:
            ledger.update(in_flight.ledger_entries())
        indexes = choose_events(events, hashes, ledger, force=self.options.force)
        chosen = [events[i] for i in indexes]
        expected = [ledger[e.user_id][1] if e.user_id in ledger else None for e in chosen]
        return SendBatch(chosen, [hashes[i] for i in indexes], expected)

    def _send(self, batch: SendBatch, sink: Sink, using: str) -> None:
        """Send, then write down what happened: the ledger takes every event (delivered, or
        now the outbox's to deliver), the outbox only those not delivered, which are settled
        like any delivery attempt (rescheduled by the retry policy, or dead with the reason).

        Sending before writing is what makes a backfill cheap: a delivered event costs one
        ledger entry, not an outbox row written and then updated. If the run dies between
        the two, the ledger does not have the batch and a re-run sends it again with the
        same message ids (deduplicated by Segment-compatible collectors). The ledger write
        is a compare-and-set: a user whose entry a live save changed since it was read
        keeps the live save's entry, which is newer.
        """
        events, hashes = batch.events, batch.hashes
        outcomes = dispatch.send_events(events, sink)
        failed = [
            i for i, outcome in enumerate(outcomes) if outcome.status is not OutcomeStatus.DELIVERED
        ]
        now = timezone.now()
        lease = Lease(uuid.uuid4().hex, now + timedelta(seconds=app_settings.LEASE_SECONDS))
        entries = [
            (e.user_id, h, e.message_id, expected)
            for e, h, expected in zip(events, hashes, batch.expected, strict=True)
        ]
        with transaction.atomic(using=using):
            write_ledger_if_unchanged(entries, now, using)
            rows = insert_outbox(
                [events[i] for i in failed], [hashes[i] for i in failed], now, lease, using
            )
        self.stats.sent += len(events) - len(failed)
        if not rows:
            return
        failures = [outcomes[i] for i in failed]
        settled = dispatch.settle(rows, failures, sink, using=using)
        self.stats.to_retry += settled.retried
        self.stats.rejected += settled.dead
        hidden = secrets()
        for outcome in failures:
            if outcome.status is OutcomeStatus.REJECTED:
                reason = redact(outcome.reason, hidden)[:200]
                self.stats.rejected_reasons[reason] = self.stats.rejected_reasons.get(reason, 0) + 1
        delays = [o.delay or 1.0 for o in failures if o.status is OutcomeStatus.RETRY]
        if delays and not self.stopping:
            # The service asked us to slow down: hold the next batch back (the main thread
            # waits for this one before sending another), without sleeping for an hour.
            time.sleep(min(max(delays), MAX_BACKOFF_PAUSE))

    def _dry_run(self, events: list[UserEnrichedEvent]) -> None:
        known = dict(
            LedgerEntry.objects.filter(user_id__in=[e.user_id for e in events]).values_list(
                "user_id", "content_hash"
            )
        )
        for event in events:
            if not self.options.force and known.get(event.user_id) == event.content_hash():
                self.stats.unchanged += 1
                continue
            self.stats.recorded += 1
            self.emit(event.to_thrivestack())


def add_stats(total: BackfillStats, part: BackfillStats) -> None:
    for name in ("read", "recorded", "sent", "unchanged", "invalid", "rejected", "to_retry"):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    room = MAX_INVALID_ROWS_LISTED - len(total.invalid_rows)
    total.invalid_rows.extend(part.invalid_rows[:room])
    for reason, count in part.rejected_reasons.items():
        total.rejected_reasons[reason] = total.rejected_reasons.get(reason, 0) + count


def split_pk_range(backfill: Backfill, parts: int) -> list[tuple[Any, Any]] | None:
    """``parts`` contiguous integer pk ranges of about equal width, or None if pks aren't ints."""
    bounds = backfill.queryset().aggregate(low=Min("pk"), high=Max("pk"))
    low, high = bounds["low"], bounds["high"]
    if not (isinstance(low, int) and isinstance(high, int)):
        return None
    width = max(1, (high - low + parts) // parts)
    return [(low + i * width, low + (i + 1) * width) for i in range(parts)]


def _child(
    model: str | None,
    options: BackfillOptions,
    updates: Any,
    number: int,
) -> None:
    """One --workers process: its own connections, sink and signal handling."""
    import signal

    from django_app import runtime
    from django_app.source import build_source

    runtime.reset()  # the parent's sink holds sockets that must not be shared across a fork
    config = dict(app_settings.SOURCE)
    source = build_source({**config, "MODEL": model}) if model else runtime.get_source()
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
            target=_child, args=(backfill.source_label, options, updates, number)
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
