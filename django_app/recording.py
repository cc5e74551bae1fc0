"""Recording events: one small write in the caller's transaction, never an exception.

``record_event`` consults the ledger (same content already recorded for this user? then
nothing to do), writes the outbox row and the ledger in a savepoint, and asks for delivery
once the transaction commits. A failure of ours rolls back our savepoint only and is logged;
the host's save goes on.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    event = apply_exclusions(event)
    content_hash = event.content_hash()
    if _capture:
        for capture in _capture:
            capture(event)
        return Recorded(event, None)
    using = using or router.db_for_write(OutboxEvent)
    with transaction.atomic(using=using):
        entry = (
            LedgerEntry.objects.using(using)
            .select_for_update()
            .filter(user_id=event.user_id)
            .only("id", "content_hash", "message_id")
            .first()
        )
        if entry is not None and entry.content_hash == content_hash and not force:
            return Recorded(event, None)
        if entry is None and skip_empty and not any(event.properties.to_wire().values()):
            return Recorded(event, None)
        if entry is not None and event.message_id == event.derive_message_id():
            # A re-recording (forced, or content that changed back) must not reuse an id
            # already sent; chaining on the previous id keeps ids deterministic.
            event = event.model_copy(
                update={"message_id": chain_message_id(entry.message_id, event)}
            )
        row = OutboxEvent.objects.using(using).create(
            message_id=event.message_id,
            user_id=event.user_id,
            group_id=event.group_id,
            content_hash=content_hash,
            payload=event.model_dump(mode="json"),
        )
        now = timezone.now()
        if entry is None:
            LedgerEntry.objects.using(using).create(
                user_id=event.user_id,
                content_hash=content_hash,
                message_id=event.message_id,
                recorded_at=now,
            )
        else:
            LedgerEntry.objects.using(using).filter(pk=entry.pk).update(
                content_hash=content_hash, message_id=event.message_id, recorded_at=now
            )
    dispatch.request_delivery([row.pk], using=using)
    return Recorded(event, row)


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
