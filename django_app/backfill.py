"""Backfilling existing users: read the source model by primary key, record, send.

Each batch is read with keyset pagination (``pk > last``, never OFFSET), turned into events
with the live path's mapping, recorded in one short transaction (ledger check, outbox
insert, ledger upsert) with the rows already leased to this run, then sent straight to the
sink and settled like any delivery. While batch *k* is on the wire, batch *k+1* is read and
recorded (a window of one batch in flight), so the database and the network overlap.

Safety: a row is in the outbox, committed, before it is sent. If the run dies mid-batch,
the lease expires and a worker (or ``deliver_events --once``) sends what was left, with the
same message id; re-running skips users whose content the ledger already holds.
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

from django.core.exceptions import FieldDoesNotExist
from django.db import connections, models, router
from django.db.models import Max, Min, Q
from django.utils import timezone

from django_app import dispatch
from django_app.api import build_event, validate_event
from django_app.conf import app_settings
from django_app.dispatch import Claimed
from django_app.models import LedgerEntry, OutboxEvent
from django_app.recording import Lease, record_events
from django_app.runtime import get_sink
from django_app.source import Source, aware
from tracking_adapter import EventValidationError, MappingError, PropertyMap, UserEnrichedEvent
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
            rows = list(page[:size])
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
                    event = validate_event(data)
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
        # SQLite allows one writer at a time and refuses (rather than waits for) a reader that
        # wants to become a writer, so there the batches are sent one after the other.
        overlap = connections[router.db_for_write(OutboxEvent)].vendor != "sqlite"
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill-send") as sender:
            in_flight: Future[None] | None = None
            for rows in self.batches():
                self.stats.read += len(rows)
                events = self.build(rows)
                if self.options.dry_run:
                    self._dry_run(events)
                    yield self.stats
                    continue
                lease = Lease(
                    uuid.uuid4().hex, timezone.now() + timedelta(seconds=app_settings.LEASE_SECONDS)
                )
                recorded = record_events(
                    events, force=self.options.force, lease=lease if sink else None
                )
                sent = [item for item in recorded if item.row is not None]
                new_rows = [item.row for item in sent if item.row is not None]
                new_events = [item.event for item in sent]
                self.stats.recorded += len(new_rows)
                self.stats.unchanged += len(recorded) - len(new_rows)
                if in_flight is not None:
                    in_flight.result()  # at most one batch on the wire: memory stays bounded
                    in_flight = None
                if sink is not None and new_rows:
                    if overlap:
                        in_flight = sender.submit(self._send, new_rows, new_events, sink)
                    else:
                        self._send(new_rows, new_events, sink)
                yield self.stats
            if in_flight is not None:
                in_flight.result()
                yield self.stats
            sender.submit(connections.close_all).result()  # the sender thread's connection

    def _send(self, rows: list[Claimed], events: list[UserEnrichedEvent], sink: Sink) -> None:
        outcomes = dispatch.send_claimed(rows, sink, events)
        settled = dispatch.settle(rows, outcomes, sink)
        self.stats.sent += settled.delivered
        self.stats.to_retry += settled.retried
        self.stats.rejected += settled.dead
        for outcome in outcomes:
            if outcome.status is OutcomeStatus.REJECTED:
                reason = outcome.reason[:200]
                self.stats.rejected_reasons[reason] = self.stats.rejected_reasons.get(reason, 0) + 1
        delays = [o.delay or 1.0 for o in outcomes if o.status is OutcomeStatus.RETRY]
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
