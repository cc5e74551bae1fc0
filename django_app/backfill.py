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

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import connections, models, router
from django.db.models import Q
from django.utils import timezone

from django_app import dispatch
from django_app.api import build_event
from django_app.conf import app_settings
from django_app.models import LedgerEntry, OutboxEvent
from django_app.recording import Lease, record_events
from django_app.runtime import get_sink
from django_app.source import Source
from tracking_adapter import EventValidationError, MappingError, UserEnrichedEvent
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
        return queryset.order_by("pk")

    def _filters_users_in_python(self) -> bool:
        path = self.source.mapping.user_id
        return bool(self.options.user_ids) and not (
            isinstance(path, str) and field_lookup(self.source.model, path) is not None
        )

    def count(self) -> int:
        total = self.queryset().count()
        return min(total, self.options.limit) if self.options.limit else total

    def batches(self) -> Iterator[list[Any]]:
        queryset = self.queryset()
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
            last_pk = rows[-1].pk
            if remaining is not None:
                remaining -= len(rows)
            yield rows

    # -- the run ------------------------------------------------------------------------
    def build(self, rows: list[Any]) -> list[UserEnrichedEvent]:
        events = []
        wanted = set(map(str, self.options.user_ids)) if self._filters_users_in_python() else None
        for row in rows:
            try:
                event = build_event(row)
            except EventValidationError as exc:
                self.stats.invalid += 1
                if len(self.stats.invalid_rows) < MAX_INVALID_ROWS_LISTED:
                    self.stats.invalid_rows.append(f"pk={row.pk}: {exc}")
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
                new_rows = [item.row for item in recorded if item.row is not None]
                self.stats.recorded += len(new_rows)
                self.stats.unchanged += len(recorded) - len(new_rows)
                if in_flight is not None:
                    in_flight.result()  # at most one batch on the wire: memory stays bounded
                    in_flight = None
                if sink is not None and new_rows:
                    if overlap:
                        in_flight = sender.submit(self._send, new_rows, sink)
                    else:
                        self._send(new_rows, sink)
                yield self.stats
            if in_flight is not None:
                in_flight.result()
                yield self.stats
            sender.submit(connections.close_all).result()  # the sender thread's connection

    def _send(self, rows: list[OutboxEvent], sink: Sink) -> None:
        outcomes = dispatch.send_claimed(rows, sink)
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
