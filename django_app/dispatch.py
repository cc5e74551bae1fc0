"""Delivery from the outbox: claim due rows with a lease, send outside any transaction, settle.

Claiming and settling are the store's (``django_app.store``): disjoint batches for any
number of workers, without waiting on each other where the database has ``SKIP LOCKED``.
A claimed row's
``next_attempt_at`` moves to the end of its lease, so if the worker dies the row simply
becomes due again. Results are written back only where the claim token still matches, so a
worker that outlived its lease cannot overwrite the row's new owner.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone

from django_app.conf import SETTING_NAME, app_settings
from django_app.dispatchers import Dispatcher
from django_app.models import Status
from django_app.runtime import get_dispatcher, get_retry_policy, get_sink, secrets
from django_app.store import Claimed, get_store
from tracking_adapter import ConfigurationError, EnrichedEvent, event_type
from tracking_adapter.security import redact
from tracking_adapter.sinks import Outcome, Sink
from tracking_adapter.sinks.base import Status as OutcomeStatus
from tracking_adapter.sinks.base import keeping_alive

logger = logging.getLogger("django_app.dispatch")


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A stored payload that could not be decoded (written by hand, by an older version):
    its row is rejected on its own instead of failing the claim of its whole batch."""

    reason: str


def _decode(text: str | None) -> Any:
    """The stored JSON payload. Read as text and decoded row by row, so that one row the
    JSON reader refuses (an integer over Python's 4,300-digit limit, say) cannot raise out
    of ``claim()`` and stop the batch, and every worker after it, for good."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        return Unreadable(f"{type(exc).__name__}: {str(exc)[:200]}")


@dataclass
class DrainStats:
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    batches: int = 0

    def add(self, other: DrainStats) -> None:
        self.claimed += other.claimed
        self.delivered += other.delivered
        self.retried += other.retried
        self.dead += other.dead
        self.batches += other.batches


def claim(
    batch_size: int,
    *,
    ids: Sequence[int] | None = None,
    due_by: datetime | None = None,
    using: str | None = None,
) -> list[Claimed]:
    """Lease up to ``batch_size`` rows pending and due by ``due_by`` (default: now), only
    among ``ids`` if given."""
    rows = get_store(using).claim(
        batch_size, float(app_settings.LEASE_SECONDS), ids=ids, due_by=due_by
    )
    for row in rows:
        row.payload = _decode(row.payload)
    return rows


def send_claimed(
    rows: Sequence[Claimed],
    sink: Sink,
    events: Sequence[EnrichedEvent] | None = None,
) -> list[Outcome]:
    """Send the claimed rows through ``sink``; never raises.

    ``events``: the rows' events when the caller already holds them (a backfill that just
    built them), which spares validating each stored payload again.
    """
    outcomes: list[Outcome | None] = [None] * len(rows)
    positions: list[int] = list(range(len(rows))) if events is not None else []
    if events is None:
        events = []
        for position, row in enumerate(rows):
            if isinstance(row.payload, Unreadable):
                outcomes[position] = Outcome.rejected(
                    f"stored payload cannot be read back: {row.payload.reason}"
                )
                continue
            try:
                events.append(event_type(row.event).model_validate(row.payload))
                positions.append(position)
            except ValueError as exc:  # pydantic's ValidationError, or an unknown kind
                outcomes[position] = Outcome.rejected(f"stored payload is not a valid event: {exc}")
    if events:
        for position, outcome in zip(positions, send_events(events, sink), strict=True):
            outcomes[position] = outcome
    return [outcome or Outcome.retry("no outcome") for outcome in outcomes]


def send_events(events: Sequence[EnrichedEvent], sink: Sink) -> list[Outcome]:
    """One outcome per event, in order; never raises (a raising sink means: retry them all)."""
    try:
        result = sink.send(events)
        sent = result.outcomes
        if len(sent) != len(events):
            raise RuntimeError(f"sink returned {len(sent)} outcomes for {len(events)} events")
        return list(sent)
    except Exception as exc:
        # Not logger.exception(): a sink's error may quote its key (requests puts the
        # URL, query string included, in its messages), so the traceback is redacted.
        logger.error(
            "%s raised while sending; the events will be retried.\n%s",
            sink.describe(),
            redact("".join(traceback.format_exception(exc)), secrets()),
        )
        return [Outcome.retry(f"{sink.describe()} raised {type(exc).__name__}: {exc}")] * len(
            events
        )


def settle(
    rows: Sequence[Claimed],
    outcomes: Sequence[Outcome],
    sink: Sink,
    *,
    using: str | None = None,
) -> DrainStats:
    """Write each row's outcome: delivered, rescheduled by the retry policy, or dead."""
    store = get_store(using)
    stats = DrainStats(claimed=len(rows), batches=1)
    now = timezone.now()
    sink_name = sink.describe()[:200]
    policy = get_retry_policy()
    hidden = secrets()
    delivered = [
        row.pk for row, o in zip(rows, outcomes, strict=True) if o.status is OutcomeStatus.DELIVERED
    ]
    # The batch's kinds, for its log lines: "user_enriched", or "group_enriched/user_enriched".
    kinds = "/".join(sorted({row.event for row in rows}))
    config_errors: list[tuple[str, datetime]] = []  # (reason, next attempt)
    retries: dict[str, list[tuple[int, datetime]]] = {}  # reason: (attempt, next attempt)
    with transaction.atomic(using=store.using):
        if delivered:
            stats.delivered = store.mark_delivered(delivered, rows[0].claim_token, now, sink_name)
        for row, outcome in zip(rows, outcomes, strict=True):
            if outcome.status is OutcomeStatus.DELIVERED:
                continue
            reason = redact(outcome.reason, hidden)
            changes: dict[str, Any] = {"lease_expires_at": None, "sink": sink_name}
            if outcome.status is OutcomeStatus.REJECTED:
                changes.update(status=Status.DEAD, attempts=row.attempts + 1, last_error=reason)
                stats.dead += 1
                logger.warning(
                    "%s %s for user %s is dead: %s. Fix the data, then requeue it "
                    "from the admin (Outbox events, action 'Requeue dead events').",
                    row.event,
                    row.message_id,
                    row.user_id,
                    reason,
                )
            elif outcome.config_error:
                # Not the event's fault: keep it pending, don't spend its attempts.
                delay = outcome.delay or policy.max_delay
                next_at = now + timedelta(seconds=delay)
                changes.update(next_attempt_at=next_at, last_error=reason)
                config_errors.append((reason, next_at))
                stats.retried += 1
            else:
                attempts = row.attempts + 1
                if policy.exhausted(attempts):
                    changes.update(
                        status=Status.DEAD,
                        attempts=attempts,
                        last_error=f"gave up after {attempts} attempts; last error: {reason}",
                    )
                    stats.dead += 1
                    logger.warning(
                        "%s %s for user %s is dead after %d attempts: %s",
                        row.event,
                        row.message_id,
                        row.user_id,
                        attempts,
                        reason,
                    )
                else:
                    delay = policy.delay(attempts, outcome.delay)
                    next_at = now + timedelta(seconds=delay)
                    changes.update(attempts=attempts, next_attempt_at=next_at, last_error=reason)
                    retries.setdefault(reason, []).append((attempts, next_at))
                    stats.retried += 1
            store.update_claimed(row.pk, row.claim_token, changes)

    def at(moment: datetime) -> str:
        utc = moment.astimezone(UTC)
        same_day = utc.date() == now.astimezone(UTC).date()
        return utc.strftime("%H:%M:%S UTC" if same_day else "%Y-%m-%d %H:%M:%S UTC")

    def wait(moment: datetime) -> str:
        seconds = max(0.0, (moment - now).total_seconds())
        if seconds < 60:
            return f"{seconds:.1f}s"
        return f"{int(seconds) // 60}m {int(seconds) % 60}s"

    def when(moments: list[datetime]) -> str:
        first, last = min(moments), max(moments)
        if (last - first).total_seconds() < 1:
            return f"next at {at(first)} (in {wait(first)})"
        return f"next from {at(first)} to {at(last)} (in {wait(first)} to {wait(last)})"

    groups = list(retries.items())  # one line per reason; a few, then a count of the rest
    for reason, retried in groups[:5]:
        tried = sorted({attempt for attempt, _ in retried})
        numbers = str(tried[0]) if len(tried) == 1 else f"{tried[0]}-{tried[-1]}"
        logger.warning(
            "%d %s event(s) will be retried: attempt %s of %d failed, %s: %s",
            len(retried),
            kinds,
            numbers,
            policy.max_attempts,
            when([next_at for _, next_at in retried]),
            reason,
        )
    if len(groups) > 5:
        rest = [next_at for _, retried in groups[5:] for _, next_at in retried]
        logger.warning(
            "%d more %s event(s) of this batch will be retried for %d other "
            "reason(s), %s; manage.py tracking_status lists the last errors",
            len(rest),
            kinds,
            len(groups) - 5,
            when(rest),
        )
    if config_errors:
        logger.error(
            "%d %s event(s) kept pending because of a configuration error (not "
            "counted as attempts; %s): %s Fix %s['SINK'] / %s['SINK_OPTIONS']; delivery "
            "resumes by itself once it is fixed.",
            len(config_errors),
            kinds,
            when([next_at for _, next_at in config_errors]),
            config_errors[0][0],
            SETTING_NAME,
            SETTING_NAME,
        )
    return stats


class LeaseKeeper:
    """Called by the sink between the requests of one batch: extends the batch's lease once
    a third of it has gone, so a long send (a batch bisected against a slow collector)
    never lets another worker claim the same rows while this one still sends them. Answers
    False, and the sink stops, when the rows are no longer ours or the worker must stop."""

    def __init__(
        self,
        rows: Sequence[Claimed],
        *,
        using: str | None,
        stop: threading.Event | None,
        ends_at: float | None = None,
    ) -> None:
        self.ids = [row.pk for row in rows]
        self.token = rows[0].claim_token if rows else ""
        self.store = get_store(using)
        self.stop = stop
        self.ends_at = ends_at
        self.extended_at = time.monotonic()

    def __call__(self) -> bool:
        if self.stop is not None and self.stop.is_set():
            return False
        if self.ends_at is not None and time.monotonic() >= self.ends_at:
            return False
        lease = float(app_settings.LEASE_SECONDS)
        if time.monotonic() - self.extended_at < lease / 3:
            return True
        until = timezone.now() + timedelta(seconds=lease)
        try:
            held = self.store.extend_lease(self.ids, self.token, until)
        except DatabaseError:
            logger.warning("could not extend the lease of a batch in flight; stopping its send")
            return False
        self.extended_at = time.monotonic()
        if held < len(self.ids):
            logger.warning(
                "%d of %d events of the batch in flight were claimed by another worker "
                "(the lease ran out); this worker stops sending them",
                len(self.ids) - held,
                len(self.ids),
            )
            return False
        return True


def drain(
    *,
    sink: Sink | None = None,
    batch_size: int | None = None,
    ids: Sequence[int] | None = None,
    max_batches: int | None = None,
    using: str | None = None,
    stop: threading.Event | None = None,
    budget: float | None = None,
) -> DrainStats:
    """Deliver what is due, batch after batch, until nothing is due (or ``max_batches``, or
    ``stop`` is set, or ``budget`` seconds have gone: then the batch in hand ends at its
    next request, and what it did not send is retried)."""
    ends_at = None if budget is None else time.monotonic() + budget
    sink = sink or get_sink()
    batch_size = batch_size or app_settings.BATCH_SIZE
    total = DrainStats()
    started = timezone.now()
    while max_batches is None or total.batches < max_batches:
        if stop is not None and stop.is_set():
            break
        if ends_at is not None and time.monotonic() >= ends_at:
            break
        # Only what was due when this drain began: a row that just failed and drew a near-zero
        # jittered delay waits for the next drain instead of being hammered in this one.
        rows = claim(batch_size, ids=ids, due_by=started, using=using)
        if not rows:
            break
        with keeping_alive(LeaseKeeper(rows, using=using, stop=stop, ends_at=ends_at)):
            outcomes = send_claimed(rows, sink)
        total.add(settle(rows, outcomes, sink, using=using))
        if ids is not None and len(rows) >= len(ids):
            break
    return total


# -- on-commit triggers ---------------------------------------------------------------------

_buffer = threading.local()


def request_delivery(row_ids: Iterable[int], *, using: str) -> None:
    """After the current transaction commits, hand the rows to the DISPATCH backend."""
    try:
        dispatcher = get_dispatcher()
    except ConfigurationError as exc:
        logger.error("%s; the events stay pending for manage.py deliver_events.", exc)
        return
    if not dispatcher.wants_commit_hook:
        return
    # Rows wait in a per-thread buffer; the first callback after a commit flushes all of
    # them in one delivery, the others find it empty. Ids of rows whose savepoint rolled
    # back may linger there: claiming skips ids that are not pending, so they cost nothing.
    _pending(using).extend(row_ids)
    transaction.on_commit(lambda: _flush(dispatcher, using), using=using)


def _pending(using: str) -> list[int]:
    buffers: dict[str, list[int]] = getattr(_buffer, "ids", None) or {}
    _buffer.ids = buffers
    return buffers.setdefault(using, [])


def _flush(dispatcher: Dispatcher, using: str) -> None:
    pending = _pending(using)
    ids, pending[:] = list(pending), []
    if not ids:
        return
    try:
        dispatcher.after_commit(ids, using)
    except Exception:
        logger.exception(
            "delivery after commit failed (%s dispatch); the %d event(s) stay pending for the "
            "next delivery run",
            dispatcher.alias or type(dispatcher).__name__,
            len(ids),
        )
