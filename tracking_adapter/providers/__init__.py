"""Provider presets: a provider's person payload → ``EnrichmentProperties``.

The rule for social profiles: **a handle stays a handle, a URL stays a URL**. Each preset
takes the provider's handle/username field when it has one (Clearbit's ``twitter.handle``,
PDL's ``twitter_username``) and otherwise its URL field (Apollo's ``twitter_url``), and never
rewrites one into the other: rebuilding a URL from a handle guesses a site's URL scheme,
and cutting a handle out of a URL guesses its path scheme. The spec's own sample carries
Apollo's full LinkedIn URL in ``enrichment_linkedin_handle`` for the same reason.

Names: a missing full name is built from first and last name; a full name is never split
into first and last (names do not split reliably).

Each preset accepts the bare person object or the provider's response envelope, takes
keyword overrides (``from_apollo(person, enrichment_email_provider="Apollo")``), and raises
``EventValidationError`` naming the property when a value has the wrong type.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tracking_adapter.errors import ConfigurationError, EventValidationError
from tracking_adapter.mapping import resolve_path
from tracking_adapter.providers.apollo import from_apollo
from tracking_adapter.providers.clearbit import from_clearbit
from tracking_adapter.providers.pdl import from_pdl
from tracking_adapter.schema import EnrichmentProperties

PRESETS: dict[str, Callable[..., EnrichmentProperties]] = {
    "apollo": from_apollo,
    "clearbit": from_clearbit,
    "pdl": from_pdl,
}


def get_preset(name: str, *, setting: str = "provider") -> Callable[..., EnrichmentProperties]:
    """The preset called ``name``; an unknown name is an error naming the setting and choices."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        choices = ", ".join(sorted(PRESETS))
        raise ConfigurationError(
            f"{setting}: unknown provider {name!r}; choose one of {choices}"
        ) from None


def preset_from_path(name: str, payload_path: str) -> Callable[[Any], EnrichmentProperties]:
    """A properties source reading the provider payload at ``payload_path`` on the object.

    The payload may be a dict or a JSON string (as stored in a text column).
    """
    preset = get_preset(name)

    def properties(obj: Any, **overrides: Any) -> EnrichmentProperties:
        payload = resolve_path(obj, payload_path)
        if isinstance(payload, str | bytes):
            payload = _decode_json(payload, payload_path)
        return preset(payload, **overrides)

    properties.__qualname__ = f"{name}_preset_at_{payload_path.replace('.', '_')}"
    # Callers may pass the preset's keyword overrides (the Django app blanks the properties
    # a site excludes, so their values are never even validated, let alone quoted).
    properties.accepts_overrides = True  # type: ignore[attr-defined]
    return properties


def _decode_json(payload: str | bytes, path: str) -> Any:
    try:
        return json.loads(payload) if payload.strip() else None
    except ValueError as exc:
        raise EventValidationError([(path, f"is not valid JSON: {exc}")]) from None


__all__ = ["PRESETS", "from_apollo", "from_clearbit", "from_pdl", "get_preset", "preset_from_path"]
