"""Recording events: one small write in the caller's transaction, never an exception.

``record_event`` asks the store (``django_app.store``) to consult the ledger (same content
already recorded for this subject? then nothing to do), write the outbox row and the
ledger, and then asks for delivery once the transaction commits. ``safe_record`` logs
whatever fails, and data that could make a statement fail is refused before any SQL runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import transaction

from django_app import dispatch
from django_app.conf import app_settings
from django_app.models import OutboxEvent
from django_app.runtime import secrets
from django_app.store import DuplicateMessageId, Lease, Recorded, get_store
from tracking_adapter import (
    EVENT_NAME,
    ConfigurationError,
    EnrichedEvent,
    EventValidationError,
    MappingError,
    event_type,
)
from tracking_adapter.security import redact

logger = logging.getLogger("django_app")

# Set by django_app.testing.capture_events(): events go to the list instead of the outbox.
_capture: list[Callable[[EnrichedEvent], None]] = []


def apply_exclusions(event: EnrichedEvent) -> EnrichedEvent:
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
    return type(event).model_validate({**data, "properties": kept})


def record_event(
    event: EnrichedEvent,
    *,
    force: bool = False,
    skip_empty: bool = False,
    using: str | None = None,
) -> Recorded:
    """Record ``event`` for delivery unless the same content was already recorded for the
    subject. ``skip_empty``: a subject never recorded before whose properties are all empty
    has not been enriched yet (a profile created blank); the automatic source passes it.

    May raise ``DatabaseError`` or ``DuplicateMessageId``; callers on the save path use
    ``safe_record``.
    """
    event = apply_exclusions(event)
    if _capture:
        [recorded] = _captured([event])
        return recorded
    store = get_store(using)
    recorded = store.record_one(event, force=force, skip_empty=skip_empty)
    if recorded.row is not None:
        dispatch.request_delivery([recorded.row.pk], using=store.using)
    return recorded


def record_events(
    events: Sequence[EnrichedEvent],
    *,
    force: bool = False,
    skip_empty: bool = False,
    lease: Lease | None = None,
    using: str | None = None,
) -> list[Recorded]:
    """Record a batch in one transaction. Returns one ``Recorded`` per event, in order.
    Nothing asks for delivery here: rows recorded under a ``lease`` are their recorder's
    to send, the others the caller's to request."""
    events = [apply_exclusions(event) for event in events]
    if _capture:
        return _captured(events)
    return get_store(using).record_many(events, force=force, skip_empty=skip_empty, lease=lease)


def _captured(events: list[EnrichedEvent]) -> list[Recorded]:
    for event in events:
        for capture in _capture:
            capture(event)
    return [Recorded(event, None) for event in events]


def storable(text: str) -> str:
    """``text`` as every database can keep it: NUL and lone surrogates (which the bad data
    being reported may well hold) spelled out as escapes."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def _column(value: Any) -> str:
    return storable(str(value))[:255] if value not in (None, "") else "(unknown)"


def record_invalid(
    problem: EventValidationError,
    *,
    user_id: Any,
    source: str,
    group_id: Any = None,
    event: str = EVENT_NAME,
    using: str | None = None,
) -> OutboxEvent:
    """Keep a dead row for data that could not become an event, so nothing vanishes silently."""
    text = storable(redact(f"{source}: invalid data, not sent: {problem}", secrets()))
    user, group = _column(user_id), _column(group_id)
    subject_field = event_type(event).SUBJECT_FIELD
    about = f"user {user}" if subject_field == "user_id" else f"account {group}"
    logger.warning("%s for %s not recorded: %s", event, about, text)
    problems = [[storable(path), storable(msg)] for path, msg in problem.problems]
    return get_store(using).record_invalid(
        user, problems, text, event=event, group_id=group if group_id is not None else ""
    )


def safe_record(
    build: Callable[[], EnrichedEvent],
    *,
    ids: Callable[[], tuple[Any, Any]],
    source: str,
    event: str = EVENT_NAME,
    force: bool = False,
    skip_empty: bool = False,
) -> Recorded | None:
    """Build and record, never raising: the save path must not break because of tracking."""
    try:
        try:
            try:
                built = build()
            except RecursionError:
                # Input shaped to exhaust the stack (a cycle, absurd nesting) that slipped
                # past the schema's depth limit: bad data all the same, so a dead row.
                raise EventValidationError([("(event)", "nested too deeply to validate")]) from None
        except EventValidationError as exc:
            user_id, group_id = _quietly(ids) or (None, None)
            with transaction.atomic():
                record_invalid(exc, user_id=user_id, group_id=group_id, event=event, source=source)
            return None
        return record_event(built, force=force, skip_empty=skip_empty)
    except DuplicateMessageId as exc:
        logger.error(
            "%s for %s not recorded: its message id is already in the outbox (%s). "
            "Give each event its own message_id.",
            event,
            source,
            exc,
        )
    except (MappingError, ConfigurationError) as exc:
        logger.error(
            "%s not recorded: %s. Fix TRACKING_ADAPTER (manage.py check reports this too).",
            event,
            exc,
        )
    except Exception:
        user_id, group_id = _quietly(ids) or (None, None)
        logger.exception(
            "%s for %s (user %s, account %s) not recorded because of a database or unexpected "
            "error; the save itself went through (the host's transaction is intact). It is not "
            "lost: manage.py reconcile_user_enriched records it (schedule it every few "
            "minutes). Check that django_app's migrations are applied.",
            event,
            source,
            storable(str(user_id))[:255],
            storable(str(group_id))[:255],
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
def capturing(sink: Callable[[EnrichedEvent], None]) -> Iterator[None]:
    _capture.append(sink)
    try:
        yield
    finally:
        _capture.remove(sink)
