"""Recording events: one small write in the caller's transaction, never an exception.

``record_event`` consults the ledger (same content already recorded for this user? then
nothing to do), writes the outbox row and the ledger in a savepoint, and asks for delivery
once the transaction commits. A failure of ours rolls back our savepoint only and is logged;
the host's save goes on.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, router, transaction
from django.utils import timezone

from django_app import dispatch
from django_app.conf import app_settings
from django_app.models import LedgerEntry, OutboxEvent, Status
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
    row: OutboxEvent | None

    @property
    def created(self) -> bool:
        return self.row is not None


def apply_exclusions(event: UserEnrichedEvent) -> UserEnrichedEvent:
    """Drop the properties the site chose never to store nor send (EXCLUDE_PROPERTIES)."""
    excluded = set(app_settings.EXCLUDE_PROPERTIES or ())
    if not excluded:
        return event
    wire = {k: v for k, v in event.properties.to_wire().items() if k not in excluded}
    data = event.model_dump(exclude={"message_id", "properties"})
    return UserEnrichedEvent.model_validate({**data, "properties": wire})


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
    [recorded] = record_events([event], force=force, skip_empty=skip_empty, using=using)
    if recorded.row is not None:
        dispatch.request_delivery([recorded.row.pk], using=using)
    return recorded


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
    ``record_event`` does for the live path, and a backfill delivers under its ``lease``.
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
        ledger = {
            user_id: (content_hash, message_id)
            for user_id, content_hash, message_id in LedgerEntry.objects.using(using)
            .select_for_update()
            .filter(user_id__in={event.user_id for event in events})
            .values_list("user_id", "content_hash", "message_id")
        }
        chosen: dict[str, int] = {}  # user id -> index of the event to record (the last wins)
        for index, (event, content_hash) in enumerate(zip(events, hashes, strict=True)):
            previous = ledger.get(event.user_id)
            if previous is not None and previous[0] == content_hash and not force:
                continue
            if previous is None and skip_empty and not any(event.properties.to_wire().values()):
                continue
            if previous is not None and event.message_id == event.derive_message_id():
                # A re-recording (forced, or content that changed back) must not reuse an
                # id already sent; chaining on the previous id keeps ids deterministic.
                events[index] = event.model_copy(
                    update={"message_id": chain_message_id(previous[1], event)}
                )
            chosen[event.user_id] = index
        indexes = sorted(chosen.values())
        extra: dict[str, Any] = (
            {
                "claim_token": lease.token,
                "next_attempt_at": lease.until,
                "lease_expires_at": lease.until,
            }
            if lease
            else {}
        )
        rows = OutboxEvent.objects.using(using).bulk_create(
            [
                OutboxEvent(
                    message_id=events[i].message_id,
                    user_id=events[i].user_id,
                    group_id=events[i].group_id,
                    content_hash=hashes[i],
                    payload=events[i].model_dump(mode="json"),
                    created_at=now,
                    **extra,
                )
                for i in indexes
            ]
        )
        LedgerEntry.objects.using(using).bulk_create(
            [
                LedgerEntry(
                    user_id=events[i].user_id,
                    content_hash=hashes[i],
                    message_id=events[i].message_id,
                    recorded_at=now,
                )
                for i in indexes
            ],
            update_conflicts=True,
            unique_fields=["user_id"],
            update_fields=["content_hash", "message_id", "recorded_at"],
        )
    by_index = dict(zip(indexes, rows, strict=True))
    return [Recorded(event, by_index.get(index)) for index, event in enumerate(events)]


def chain_message_id(previous: str, event: UserEnrichedEvent) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"user_enriched:{previous}:{event.message_id}"))


def record_invalid(
    problem: EventValidationError, *, user_id: Any, source: str, using: str | None = None
) -> OutboxEvent:
    """Keep a dead row for data that could not become an event, so nothing vanishes silently."""
    text = redact(f"{source}: invalid data, not sent: {problem}", secrets())
    user = str(user_id)[:255] if user_id not in (None, "") else "(unknown)"
    logger.warning("user_enriched for user %s not recorded: %s", user, text)
    return OutboxEvent.objects.using(using or router.db_for_write(OutboxEvent)).create(
        message_id=f"invalid-{uuid.uuid4()}",
        user_id=user,
        payload={"problems": [list(p) for p in problem.problems]},
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
            event = build()
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
            "user_enriched not recorded for %s because of an unexpected error; the save itself "
            "went through. Check that django_app's migrations are applied.",
            source,
        )
    return None


def _quietly(getter: Callable[[], Any]) -> Any:
    try:
        return getter()
    except Exception:
        return None


@contextmanager
def capturing(sink: Callable[[UserEnrichedEvent], None]) -> Iterator[None]:
    _capture.append(sink)
    try:
        yield
    finally:
        _capture.remove(sink)
