"""``TRACKING_ADAPTER["SOURCE"]``: which model emits events, and how its fields map.

Builds a core ``EventMapping`` from the settings; ``manage.py check`` validates the same
settings first (see ``checks.py``), so errors raised here name the setting to fix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.apps import apps
from django.db import models
from django.utils import timezone
from django.utils.module_loading import import_string

from django_app.conf import SETTING_NAME
from tracking_adapter import ConfigurationError, EventMapping, PropertyMap, resolve_path
from tracking_adapter.providers import preset_from_path


@dataclass(frozen=True)
class Source:
    model: type[models.Model]
    mapping: EventMapping
    # Concrete field attnames whose change can change the event; None = unknown (a MAPPER).
    watched_fields: frozenset[str] | None
    timestamp_path: str | None = None


def _setting(key: str) -> str:
    return f"{SETTING_NAME}['SOURCE']['{key}']"


def load_model(label: Any) -> type[models.Model]:
    if not isinstance(label, str) or label.count(".") != 1:
        raise ConfigurationError(
            f"{_setting('MODEL')} must be 'app_label.ModelName', got {label!r}"
        )
    try:
        return apps.get_model(label)
    except LookupError:
        raise ConfigurationError(f"{_setting('MODEL')}: no installed model {label!r}") from None


def aware(value: Any) -> Any:
    """Django naive datetimes (USE_TZ=False) mean the current time zone, not UTC."""
    if isinstance(value, datetime) and timezone.is_naive(value):
        return timezone.make_aware(value, timezone.get_current_timezone())
    return value


def build_source(config: Mapping[str, Any]) -> Source:
    model = load_model(config.get("MODEL"))
    for key in ("USER_ID", "GROUP_ID"):
        if not config.get(key):
            raise ConfigurationError(f"{_setting(key)} is required: the attribute path to the id")
    chosen = [key for key in ("PROPERTIES", "PROVIDER", "MAPPER") if config.get(key)]
    if len(chosen) != 1:
        raise ConfigurationError(
            f"{SETTING_NAME}['SOURCE'] needs exactly one of PROPERTIES, PROVIDER or MAPPER "
            f"(got {', '.join(chosen) or 'none'})"
        )
    paths: list[str] = [config["USER_ID"], config["GROUP_ID"]]
    properties: Callable[[Any], Any]
    if config.get("PROPERTIES"):
        property_map = PropertyMap(config["PROPERTIES"])
        properties = property_map
        paths.extend(p for p in property_map.fields.values() if isinstance(p, str))
    elif config.get("PROVIDER"):
        provider = config["PROVIDER"]
        if not (isinstance(provider, list | tuple) and len(provider) == 2):
            raise ConfigurationError(
                f"{_setting('PROVIDER')} must be [provider name, attribute path of the payload], "
                f"like ['clearbit', 'clearbit_json']; got {provider!r}"
            )
        properties = preset_from_path(provider[0], provider[1])
        paths.append(provider[1])
    else:
        mapper = config["MAPPER"]
        try:
            properties = import_string(mapper) if isinstance(mapper, str) else mapper
        except ImportError as exc:
            raise ConfigurationError(
                f"{_setting('MAPPER')}: cannot import {mapper!r}: {exc}"
            ) from None
        if not callable(properties):
            raise ConfigurationError(f"{_setting('MAPPER')}: {mapper!r} is not callable")
    timestamp_path = config.get("TIMESTAMP") or None
    if timestamp_path:
        paths.append(timestamp_path)

    def timestamp(obj: Any) -> Any:
        return aware(resolve_path(obj, timestamp_path)) if timestamp_path else None

    mapping = EventMapping(
        user_id=config["USER_ID"],
        group_id=config["GROUP_ID"],
        properties=properties,
        timestamp=timestamp if timestamp_path else None,
        context=dict(config.get("CONTEXT") or {}),
    )
    watched = None if config.get("MAPPER") else _watched_fields(model, paths)
    return Source(
        model=model, mapping=mapping, watched_fields=watched, timestamp_path=timestamp_path
    )


def _watched_fields(model: type[models.Model], paths: list[str]) -> frozenset[str] | None:
    """The attnames on ``model`` that the paths start from; None if one starts elsewhere
    (a property or method: we cannot know what it reads, so every save is examined)."""
    names = set()
    for path in paths:
        head = path.split(".", 1)[0]
        try:
            field = model._meta.get_field(head)
        except Exception:
            return None
        attname = getattr(field, "attname", None)
        if not attname or not getattr(field, "concrete", False):
            return None
        names.add(attname)
    return frozenset(names)
