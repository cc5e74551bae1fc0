"""Helpers shared by the provider presets."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar, overload

from pydantic import ValidationError

from tracking_adapter.errors import EventValidationError, MappingError, describe_validation_error
from tracking_adapter.mapping import resolve_path
from tracking_adapter.schema import (
    EnrichmentProperties,
    GroupEnrichmentProperties,
    PropertiesBase,
)

P = TypeVar("P", bound=PropertiesBase)


def unwrap(payload: Any, provider: str, *envelopes: str) -> Mapping[str, Any]:
    """The provider's object, whether given bare or inside the provider's response envelope."""
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


@dataclass(frozen=True)
class Invalid:
    """A payload value a helper found unusable, reported by ``build`` under its property
    (unless an override replaces the property, in which case it is never reported)."""

    message: str


def strings(value: Any) -> Any:
    """A provider list of strings, stripped, without blanks and ``None``s; one string is a
    one-item list. A list holding anything else is ``Invalid`` (naming the item); a value
    that is not a list is returned as it is, for the schema to judge."""
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if not isinstance(value, list | tuple):
        return value
    items: list[str] = []
    for index, item in enumerate(value):
        if item is None:
            continue
        if not isinstance(item, str):
            return Invalid(f"item {index} must be a string, got {type(item).__name__} {item!r:.80}")
        if item.strip():
            items.append(item.strip())
    return items


def joined(value: Any, separator: str = ", ") -> Any:
    """A provider list of strings as one string (``["a", "b"]`` → ``"a, b"``); ``None`` for
    an empty list. A string is kept; anything else goes to the schema to judge."""
    items = strings(value)
    if isinstance(items, list):
        return separator.join(items) or None
    return items


def unique(items: list[Any]) -> list[Any]:
    """``items`` without repeats, in first-seen order."""
    return list(dict.fromkeys(items))


def decimal_text(value: Any) -> Any:
    """A provider number as its decimal string (``251200000`` → ``"251200000"``,
    ``2.5e9`` → ``"2500000000"``, ``1234.5`` → ``"1234.5"``), never in exponent form.

    A string is kept as the provider wrote it. Booleans, non-finite floats and other types
    are returned unchanged for the schema to refuse, naming the property.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        if value.is_integer():
            return str(int(value))
        return format(Decimal(repr(value)), "f")
    return value


def domains_object(value: Any) -> Any:
    """A provider's list of other domains as ``{"domains": [...]}`` (``None`` when empty).

    ThriveStack types ``enrichment_domain_aliases`` as an object (its sample sends
    ``null``); the providers give a list. Wrapping the list under ``"domains"`` keeps every
    domain and its order, and reads the same from every preset. A mapping is kept as it
    is (a payload already in object form); a list holding a non-string is ``Invalid``.
    """
    if value is None or isinstance(value, Mapping):
        return value
    items = strings(value)
    if isinstance(items, list):
        return {"domains": items} if items else None
    return items


@overload
def build(
    provider: str,
    values: dict[str, Any],
    overrides: Mapping[str, Any],
) -> EnrichmentProperties: ...


@overload
def build(
    provider: str,
    values: dict[str, Any],
    overrides: Mapping[str, Any],
    *,
    model: type[P],
) -> P: ...


def build(
    provider: str,
    values: dict[str, Any],
    overrides: Mapping[str, Any],
    *,
    model: type[PropertiesBase] = EnrichmentProperties,
) -> PropertiesBase:
    """Validate the mapped values into ``model``; errors name the provider and the property.

    ``None`` values are left out (the property gets its default); overrides replace
    mapped values, which are then never validated. An ``Invalid`` value is reported
    under its property, with whatever the schema finds wrong in the others.
    """
    problems: list[tuple[str, str]] = []
    merged: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, Invalid):
            if name not in overrides:
                problems.append((name, value.message))
        elif value is not None:
            merged[name] = value
    merged.update(overrides)
    context = f"{provider} payload"
    try:
        properties = model.model_validate(merged)
    except ValidationError as exc:
        if not problems:
            raise EventValidationError.from_pydantic(exc, context=context) from None
        problems.extend(describe_validation_error(exc))
    if problems:
        order = {name: index for index, name in enumerate(model.model_fields)}
        problems.sort(key=lambda problem: order.get(_top_name(problem[0]), len(order)))
        raise EventValidationError(problems, context=context)
    return properties


def _top_name(path: str) -> str:
    """``enrichment_tags[0]`` → ``enrichment_tags``: the property a problem path is under."""
    return re.split(r"[.\[]", path, maxsplit=1)[0]


Preset = Callable[..., EnrichmentProperties]
GroupPreset = Callable[..., GroupEnrichmentProperties]
