"""Record enrichment from code: what the signal, the automatic source and backfills call.

``track_enrichment(instance)`` is also the way to record events for changes that bypass
``save()`` (``QuerySet.update()``, ``bulk_update()``, raw SQL): call it for each changed
instance afterwards; unchanged content is skipped by the ledger as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from django_app.conf import app_settings
from django_app.models import OutboxEvent
from django_app.recording import safe_record
from django_app.runtime import get_source
from django_app.source import aware, source_setting
from django_app.store import Recorded
from tracking_adapter import (
    EVENT_NAME,
    ConfigurationError,
    EnrichedEvent,
    EventMapping,
    EventValidationError,
    UserEnrichedEvent,
    event_type,
)
from tracking_adapter.mapping import extract
from tracking_adapter.providers import get_preset
from tracking_adapter.schema import PropertiesBase


def build_event(
    instance: Any = None,
    *,
    event: str = EVENT_NAME,
    properties: Mapping[str, Any] | None = None,
    provider: str | None = None,
    payload: Any = None,
    user_id: Any = None,
    group_id: Any = None,
    timestamp: datetime | None = None,
) -> EnrichedEvent:
    """The ``event`` for ``instance`` and/or explicit values; raises EventValidationError
    (and ConfigurationError for an unknown event or provider)."""
    try:
        event_class = event_type(event)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    source = get_source(event)
    mapping: EventMapping | None = source.mapping if source is not None else None
    # EXCLUDE_PROPERTIES are left out before anything is validated: a bad value in one of
    # them must neither block the event nor be quoted in an error text, a log or the outbox.
    blanks = dict.fromkeys(excluded_properties())
    if provider is not None:
        preset = get_preset(provider, setting="provider", event=event)
        properties = preset(payload, **blanks).to_wire()
    if properties is None:
        if mapping is None or instance is None:
            raise ConfigurationError(
                f"{event} needs properties=, provider= and payload=, or an instance of "
                f"the model configured in {source_setting(event)}"
            )
        properties = _mapped_properties(mapping, instance, blanks)
    data: dict[str, Any] = {
        "user_id": user_id,
        "group_id": group_id,
        "properties": properties,
        "context": dict(mapping.context) if mapping else {},
    }
    if mapping is not None and instance is not None:
        if user_id is None:
            data["user_id"] = extract(instance, mapping.user_id)
        if group_id is None:
            data["group_id"] = extract(instance, mapping.group_id)
        if timestamp is None and mapping.timestamp is not None:
            timestamp = extract(instance, mapping.timestamp)
    if timestamp is not None:
        data["timestamp"] = aware(timestamp)
    return validate_event(data, event_class=event_class)


def excluded_properties() -> frozenset[str]:
    return frozenset(app_settings.EXCLUDE_PROPERTIES or ())


def _mapped_properties(
    mapping: EventMapping, instance: Any, blanks: dict[str, None]
) -> Mapping[str, Any]:
    """The properties the mapping reads from ``instance``, unvalidated when they are plain
    values (``validate_event`` checks them with the event, once, after the exclusions)."""
    source: Any = mapping.properties
    if blanks and getattr(source, "accepts_overrides", False):
        raw = source(instance, **blanks)
    else:
        raw = source(instance)
    if isinstance(raw, PropertiesBase):
        return raw.to_wire()
    if isinstance(raw, Mapping):
        return raw
    return mapping.properties_of(instance).to_wire()  # not properties: the error names why


def validate_event(
    data: dict[str, Any],
    *,
    excluded: frozenset[str] | None = None,
    event_class: type[EnrichedEvent] = UserEnrichedEvent,
) -> EnrichedEvent:
    """Validate event data; errors become one EventValidationError naming every field.

    Properties listed in EXCLUDE_PROPERTIES (or ``excluded``, for a caller validating many
    events that read the setting once) are dropped first, unseen.
    """
    if excluded is None:
        excluded = excluded_properties()
    try:
        event = event_class.model_validate(_without(excluded, data))
    except ValidationError as exc:
        raise EventValidationError.from_pydantic(exc) from None
    check_storable(event)
    return event


def validate_events(
    items: list[dict[str, Any]],
    *,
    excluded: frozenset[str] | None = None,
    event_class: type[EnrichedEvent] = UserEnrichedEvent,
) -> list[EnrichedEvent | EventValidationError]:
    """``validate_event`` for many: each item's event, or the error ``validate_event`` gives
    for it, in order. The items go to pydantic in one call (a backfill's batch: one call
    into the validator instead of a thousand); if any is invalid, each is then validated
    on its own, so that every error is exactly the one of its item."""
    if excluded is None:
        excluded = excluded_properties()
    if excluded:
        items = [_without(excluded, data) for data in items]
    try:
        events = _list_adapter(event_class).validate_python(items)
    except ValidationError:
        events = None
    results: list[EnrichedEvent | EventValidationError] = []
    for index, data in enumerate(items):
        try:
            if events is None:
                results.append(validate_event(data, excluded=frozenset(), event_class=event_class))
            else:
                check_storable(events[index])
                results.append(events[index])
        except EventValidationError as exc:
            results.append(exc)
    return results


_LIST_ADAPTERS: dict[type[EnrichedEvent], TypeAdapter[list[Any]]] = {}


def _list_adapter(event_class: type[EnrichedEvent]) -> TypeAdapter[list[Any]]:
    adapter = _LIST_ADAPTERS.get(event_class)
    if adapter is None:
        adapter = _LIST_ADAPTERS[event_class] = TypeAdapter(list[event_class])  # type: ignore[valid-type]
    return adapter


def _without(excluded: frozenset[str], data: dict[str, Any]) -> dict[str, Any]:
    """The event data less the EXCLUDE_PROPERTIES, dropped before validation, unseen."""
    properties = data.get("properties")
    if excluded and isinstance(properties, Mapping):
        kept = {name: value for name, value in properties.items() if name not in excluded}
        return {**data, "properties": kept}
    return data


def check_storable(event: EnrichedEvent) -> None:
    """Ids that fit the outbox's columns: a longer one is refused by PostgreSQL (and, without
    a savepoint on the save path, would abort the host's transaction), so it is bad data,
    reported like any other, on every database alike."""
    problems = []
    for name, limit in _ID_LIMITS:
        value = getattr(event, name)
        if len(value) > limit:
            problems.append((name, f"is {len(value):,} characters long; at most {limit} fit"))
    if problems:
        raise EventValidationError(problems)


_ID_LIMITS = [
    (name, getattr(OutboxEvent._meta.get_field(name), "max_length", None) or 255)
    for name in ("user_id", "group_id")
]


def track_enrichment(
    instance: Any = None,
    *,
    event: str = EVENT_NAME,
    force: bool = False,
    skip_empty: bool = False,
    **values: Any,
) -> Recorded | None:
    """Record ``event`` (``user_enriched`` unless told) for ``instance`` and/or explicit
    values; never raises.

    Returns what was recorded, or None when it was skipped (unchanged content, invalid data
    kept as a dead row, or an error that was logged).
    """

    def ids() -> tuple[Any, Any]:
        """The user and group ids as far as they can be read, for a dead row's columns."""
        source = get_source(event)
        found = []
        for key in ("user_id", "group_id"):
            value = values.get(key)
            if value is None and source is not None and instance is not None:
                value = _quietly(lambda key=key: extract(instance, getattr(source.mapping, key)))
            found.append(value)
        return found[0], found[1]

    label = type(instance).__name__ if instance is not None else f"{event} signal"
    return safe_record(
        lambda: build_event(instance, event=event, **values),
        ids=ids,
        event=event,
        source=label,
        force=force,
        skip_empty=skip_empty,
    )


def _quietly(getter: Any) -> Any:
    try:
        return getter()
    except Exception:
        return None


def track_many(instances: Iterable[Any], *, event: str = EVENT_NAME, force: bool = False) -> int:
    """``track_enrichment`` for each instance; returns how many events were recorded."""
    recorded = 0
    for instance in instances:
        result = track_enrichment(instance, event=event, force=force)
        recorded += bool(result and result.created)
    return recorded
