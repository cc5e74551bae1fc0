"""The state of delivery, computed from the database: one truth for every process.

``delivery_status()`` is what ``manage.py tracking_status``, the admin's summary, the health
check and the Prometheus metrics all show. It reads the outbox and the ledger through the
store's queries (indexed: pending and dead rows, delivered rows by time), never event
content, and redacts every error text it returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections, router
from django.db.models import Count, Max, Min, Q
from django.db.models.functions import TruncHour
from django.utils import timezone

from django_app.models import OutboxEvent, Status
from django_app.runtime import secrets
from django_app.store import get_store
from tracking_adapter.security import redact

LAST_ERRORS = 5  # distinct recent errors shown
ERROR_TEXT = 300  # characters of each


@dataclass
class Stream:
    """One event kind through one sink (the sink of each row's last attempt)."""

    event: str
    sink: str
    pending: int = 0
    due: int = 0
    dead: int = 0
    delivered_last_hour: int = 0
    delivered_last_day: int = 0


@dataclass
class ErrorSummary:
    error: str  # redacted, shortened
    status: str  # pending (being retried) or dead
    count: int
    last_seen: datetime | None
    advice: str


@dataclass
class HourlyDelivery:
    hour: datetime  # the start of the hour, UTC
    delivered: int = 0
    retried: int = 0  # pending rows whose last failed attempt fell in this hour
    dead: int = 0


@dataclass
class DeliveryStatus:
    now: datetime
    pending: int
    due: int
    dead: int
    delivered_last_hour: int
    delivered_last_day: int
    oldest_pending_seconds: float | None
    next_attempt_at: datetime | None  # the soonest a pending event that is not due runs
    ledger_size: int  # every subject ever recorded, the backfill's sends included
    streams: list[Stream] = field(default_factory=list)
    last_errors: list[ErrorSummary] = field(default_factory=list)
    hourly: list[HourlyDelivery] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.dead == 0 and not self.last_errors_pending

    @property
    def last_errors_pending(self) -> bool:
        return any(e.status == Status.PENDING for e in self.last_errors)

    def as_json(self) -> dict[str, Any]:
        """Plain JSON types: times as ISO 8601 strings. ``delivered`` is an object with the
        last hour and the last day."""
        data = asdict(self)
        data["delivered"] = {
            "last_hour": data.pop("delivered_last_hour"),
            "last_day": data.pop("delivered_last_day"),
        }
        jsonable: dict[str, Any] = _jsonable(data)
        return jsonable


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


def advice_for(error: str) -> str:
    """What an operator does about an error, by what it says."""
    text = error.lower()
    if "401" in text or "403" in text or "api key" in text or "write key" in text:
        return (
            "The collector refused the key: fix TRACKING_ADAPTER['SINK_OPTIONS'] (api_key / "
            "write_key); the events are kept pending and go out once it is right."
        )
    if "redirect" in text or "3xx" in text or "location" in text:
        return "The endpoint redirects: set SINK_OPTIONS endpoint/host to the final URL."
    if "invalid data" in text or "not a valid event" in text:
        return "The profile's data cannot become an event: fix it and save the profile again."
    if "gave up after" in text:
        return (
            "Retries ran out: once the cause is fixed, requeue them from the admin (action "
            "'Requeue dead events')."
        )
    if "429" in text or "rate" in text:
        return "The collector asked to slow down: delivery waits as long as it asks."
    if "timed out" in text or "timeout" in text or "deadline" in text or "connect" in text:
        return "The collector is slow or unreachable: check the network and the endpoint."
    if re.search(r"\b5\d\d\b", text):  # an HTTP 5xx
        return "The collector failed: delivery retries with backoff."
    return "See the error; pending events are retried, dead ones need a requeue."


@contextmanager
def closed_after(using: str | None) -> Iterator[None]:
    """Close the connection afterwards if it was opened here (as Django's
    ``temporary_connection`` does): for callers on threads of their own (django-health-check
    runs checks on one, prometheus_client may scrape on its server thread), where no
    request cycle closes or renews connections."""
    connection = connections[using or router.db_for_write(OutboxEvent)]
    opened_here = connection.connection is None
    try:
        yield
    finally:
        if opened_here and not connection.in_atomic_block:
            connection.close()


def delivery_status(using: str | None = None, *, now: datetime | None = None) -> DeliveryStatus:
    now = now or timezone.now()
    store = get_store(using)
    outbox = store.outbox()
    hour_ago, day_ago = now - timedelta(hours=1), now - timedelta(days=1)

    pending = outbox.filter(status=Status.PENDING)
    totals = pending.aggregate(
        pending=Count("id"),
        due=Count("id", filter=Q(next_attempt_at__lte=now)),
        oldest=Min("created_at"),
        next_attempt=Min("next_attempt_at", filter=Q(next_attempt_at__gt=now)),
    )
    delivered = outbox.filter(status=Status.DELIVERED, delivered_at__gte=day_ago).aggregate(
        day=Count("id"), hour=Count("id", filter=Q(delivered_at__gte=hour_ago))
    )
    dead = outbox.filter(status=Status.DEAD).count()

    streams: dict[tuple[str, str], Stream] = {}

    def stream(event: str, sink: str) -> Stream:
        return streams.setdefault((event, sink), Stream(event, sink or "(not tried yet)"))

    for row in (
        pending.values("event", "sink")
        .annotate(n=Count("id"), due=Count("id", filter=Q(next_attempt_at__lte=now)))
        .order_by()
    ):
        s = stream(row["event"], row["sink"])
        s.pending, s.due = row["n"], row["due"]
    for row in (
        outbox.filter(status=Status.DEAD).values("event", "sink").annotate(n=Count("id")).order_by()
    ):
        stream(row["event"], row["sink"]).dead = row["n"]
    for row in (
        outbox.filter(status=Status.DELIVERED, delivered_at__gte=day_ago)
        .values("event", "sink")
        .annotate(day=Count("id"), hour=Count("id", filter=Q(delivered_at__gte=hour_ago)))
        .order_by()
    ):
        s = stream(row["event"], row["sink"])
        s.delivered_last_day, s.delivered_last_hour = row["day"], row["hour"]

    oldest = totals["oldest"]
    return DeliveryStatus(
        now=now,
        pending=totals["pending"],
        due=totals["due"],
        dead=dead,
        delivered_last_hour=delivered["hour"],
        delivered_last_day=delivered["day"],
        oldest_pending_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else None,
        next_attempt_at=totals["next_attempt"],
        ledger_size=store.ledger_size(),
        streams=sorted(streams.values(), key=lambda s: (s.event, s.sink)),
        last_errors=_last_errors(outbox),
        hourly=_hourly(outbox, now),
    )


def _last_errors(outbox: Any) -> list[ErrorSummary]:
    hidden = secrets()
    rows = (
        outbox.filter(status__in=[Status.PENDING, Status.DEAD])
        .exclude(last_error="")
        .values("last_error", "status")
        .annotate(n=Count("id"), last=Max("updated_at"))
        .order_by("-last")[:LAST_ERRORS]
    )
    summaries = []
    for row in rows:
        text = redact(row["last_error"], hidden)
        short = text if len(text) <= ERROR_TEXT else text[: ERROR_TEXT - 3] + "..."
        summaries.append(
            ErrorSummary(short, row["status"], row["n"], row["last"], advice_for(text))
        )
    return summaries


def _hourly(outbox: Any, now: datetime) -> list[HourlyDelivery]:
    """The last 24 hours, hour by hour (oldest first), for the admin's chart."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    hours = {
        start + timedelta(hours=h): HourlyDelivery(start + timedelta(hours=h)) for h in range(24)
    }

    def count(queryset: Any, stamp: str, attribute: str) -> None:
        for row in (
            queryset.filter(**{f"{stamp}__gte": start})
            .annotate(hour=TruncHour(stamp, tzinfo=UTC))
            .values("hour")
            .annotate(n=Count("id"))
            .order_by()
        ):
            bucket = hours.get(row["hour"])
            if bucket is not None:
                setattr(bucket, attribute, row["n"])

    count(outbox.filter(status=Status.DELIVERED), "delivered_at", "delivered")
    count(outbox.filter(status=Status.PENDING, attempts__gt=0), "updated_at", "retried")
    count(outbox.filter(status=Status.DEAD), "updated_at", "dead")
    return list(hours.values())
