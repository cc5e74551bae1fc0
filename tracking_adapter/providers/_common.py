"""Helpers shared by the provider presets."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from tracking_adapter.errors import EventValidationError, MappingError
from tracking_adapter.mapping import resolve_path
from tracking_adapter.schema import EnrichmentProperties


def unwrap(payload: Any, provider: str, *envelopes: str) -> Mapping[str, Any]:
    """The person object, whether given bare or inside the provider's response envelope."""
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        raise EventValidationError(
            [(provider, f"expected the provider's JSON object, got {type(payload).__name__}")]
        )
    for key in envelopes:
        inner = payload.get(key)
        if isinstance(inner, Mapping):
            return inner
    return payload


def dig(payload: Mapping[str, Any], path: str) -> Any:
    """``resolve_path`` for provider JSON: a wrong shape is bad data, not a typo in a map."""
    try:
        return resolve_path(payload, path)
    except MappingError as exc:
        parent = path.rsplit(".", 1)[0]
        raise EventValidationError([(parent, f"has an unexpected shape ({exc})")]) from None


def text(payload: Mapping[str, Any], *paths: str) -> Any:
    """The first non-empty value among ``paths``; non-strings are returned for the schema to judge."""
    for path in paths:
        value = dig(payload, path)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        return value.strip() if isinstance(value, str) else value
    return None


def first_item(payload: Mapping[str, Any], path: str) -> Any:
    """The first element of a list-valued field (``departments[0]``), or the value itself."""
    value = dig(payload, path)
    if isinstance(value, list):
        return next((item for item in value if item not in (None, "")), None)
    return value


def full_name(given: Any, family: Any) -> str | None:
    """``"first last"`` when the provider gave no full name; never split a full name apart."""
    parts = [part.strip() for part in (given, family) if isinstance(part, str) and part.strip()]
    return " ".join(parts) or None


def build(
    provider: str,
    values: dict[str, Any],
    overrides: Mapping[str, Any],
) -> EnrichmentProperties:
    """Validate the mapped values; errors name the provider and the property."""
    merged = {name: value for name, value in values.items() if value is not None}
    merged.update(overrides)
    try:
        return EnrichmentProperties.model_validate(merged)
    except ValidationError as exc:
        raise EventValidationError.from_pydantic(exc, context=f"{provider} payload") from None


Preset = Callable[..., EnrichmentProperties]
