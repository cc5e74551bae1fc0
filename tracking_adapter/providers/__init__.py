"""Provider presets: a provider's payload → the properties of an enrichment event.

Two tables, one per event, in ``PRESETS_BY_EVENT``:

- ``PRESETS`` (``user_enriched``): a person payload → ``EnrichmentProperties``
  (``from_clearbit``, ``from_apollo``, ``from_pdl``);
- ``GROUP_PRESETS`` (``group_enriched``): a company payload → ``GroupEnrichmentProperties``
  (``from_clearbit_company``, ``from_apollo_organization``, ``from_pdl_company``).

``get_preset(name, event=...)`` and ``preset_from_path(name, path, event=...)`` choose the
table by event name (``user_enriched`` by default).

The rule for social profiles: **a handle stays a handle, a URL stays a URL**. Each preset
takes the provider's handle/username field when it has one (Clearbit's ``twitter.handle``,
PDL's ``twitter_username``) and otherwise its URL field (Apollo's ``twitter_url``), and never
rewrites one into the other: rebuilding a URL from a handle guesses a site's URL scheme,
and cutting a handle out of a URL guesses its path scheme. The spec's own sample carries
Apollo's full LinkedIn URL in ``enrichment_linkedin_handle`` for the same reason.

Names: a missing full name is built from first and last name; a full name is never split
into first and last (names do not split reliably).

Where a provider's type differs from the spec's, the company presets convert and say how
in their docstrings: numbers the spec types as strings (revenue, funding, market cap,
traffic rank) become their decimal strings, a technology list becomes one ``", "``-joined
string, and a list of other domains becomes the object ``{"domains": [...]}``.

Each preset accepts the bare object or the provider's response envelope, takes keyword
overrides (``from_apollo(person, enrichment_email_provider="Apollo")``; the product's own
``group_type``/``name``/``planId``/``planName`` for a group), and raises
``EventValidationError`` naming the property when a value has the wrong type.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal, overload

from tracking_adapter.errors import ConfigurationError, EventValidationError
from tracking_adapter.mapping import resolve_path
from tracking_adapter.providers.apollo import from_apollo, from_apollo_organization
from tracking_adapter.providers.clearbit import from_clearbit, from_clearbit_company
from tracking_adapter.providers.pdl import from_pdl, from_pdl_company
from tracking_adapter.schema import (
    EVENT_NAME,
    GROUP_EVENT_NAME,
    EnrichmentProperties,
    GroupEnrichmentProperties,
    PropertiesBase,
)

PRESETS: dict[str, Callable[..., EnrichmentProperties]] = {
    "apollo": from_apollo,
    "clearbit": from_clearbit,
    "pdl": from_pdl,
}
"""The ``user_enriched`` presets: a person payload → ``EnrichmentProperties``."""

GROUP_PRESETS: dict[str, Callable[..., GroupEnrichmentProperties]] = {
    "clearbit": from_clearbit_company,
    "apollo": from_apollo_organization,
    "pdl": from_pdl_company,
}
"""The ``group_enriched`` presets: a company payload → ``GroupEnrichmentProperties``."""

PRESETS_BY_EVENT: dict[str, dict[str, Callable[..., Any]]] = {
    EVENT_NAME: PRESETS,
    GROUP_EVENT_NAME: GROUP_PRESETS,
}
"""The preset table of each event name."""


@overload
def get_preset(
    name: str, *, setting: str = ..., event: Literal["user_enriched"] = ...
) -> Callable[..., EnrichmentProperties]: ...


@overload
def get_preset(
    name: str, *, setting: str = ..., event: Literal["group_enriched"]
) -> Callable[..., GroupEnrichmentProperties]: ...


@overload
def get_preset(name: str, *, setting: str = ..., event: str) -> Callable[..., PropertiesBase]: ...


def get_preset(
    name: str, *, setting: str = "provider", event: str = EVENT_NAME
) -> Callable[..., PropertiesBase]:
    """The preset called ``name`` for ``event``; an unknown name (or event) is an error
    naming the setting and the choices."""
    presets = _presets_for(event, setting)
    try:
        return presets[name]
    except (KeyError, TypeError):
        choices = ", ".join(sorted(presets))
        raise ConfigurationError(
            f"{setting}: unknown provider {name!r}; choose one of {choices}"
        ) from None


@overload
def preset_from_path(
    name: str, payload_path: str, *, event: Literal["user_enriched"] = ...
) -> Callable[..., EnrichmentProperties]: ...


@overload
def preset_from_path(
    name: str, payload_path: str, *, event: Literal["group_enriched"]
) -> Callable[..., GroupEnrichmentProperties]: ...


@overload
def preset_from_path(
    name: str, payload_path: str, *, event: str
) -> Callable[..., PropertiesBase]: ...


def preset_from_path(
    name: str, payload_path: str, *, event: str = EVENT_NAME
) -> Callable[..., PropertiesBase]:
    """A properties source reading the provider payload at ``payload_path`` on the object,
    with the ``event``'s preset called ``name``.

    The payload may be a dict or a JSON string (as stored in a text column).
    """
    preset = get_preset(name, event=event)

    def properties(obj: Any, **overrides: Any) -> PropertiesBase:
        payload = resolve_path(obj, payload_path)
        if isinstance(payload, str | bytes):
            payload = _decode_json(payload, payload_path)
        return preset(payload, **overrides)

    kind = "" if event == EVENT_NAME else f"{event}_"
    properties.__qualname__ = f"{name}_{kind}preset_at_{payload_path.replace('.', '_')}"
    # Callers may pass the preset's keyword overrides (the Django app blanks the properties
    # a site excludes, so their values are never even validated, let alone quoted).
    properties.accepts_overrides = True  # type: ignore[attr-defined]
    return properties


def _presets_for(event: str, setting: str) -> dict[str, Callable[..., Any]]:
    try:
        return PRESETS_BY_EVENT[event]
    except (KeyError, TypeError):
        choices = ", ".join(sorted(PRESETS_BY_EVENT))
        raise ConfigurationError(
            f"{setting}: no provider presets for event {event!r}; choose one of {choices}"
        ) from None


def _decode_json(payload: str | bytes, path: str) -> Any:
    try:
        return json.loads(payload) if payload.strip() else None
    except ValueError as exc:
        raise EventValidationError([(path, f"is not valid JSON: {exc}")]) from None


__all__ = [
    "GROUP_PRESETS",
    "PRESETS",
    "PRESETS_BY_EVENT",
    "from_apollo",
    "from_apollo_organization",
    "from_clearbit",
    "from_clearbit_company",
    "from_pdl",
    "from_pdl_company",
    "get_preset",
    "preset_from_path",
]
