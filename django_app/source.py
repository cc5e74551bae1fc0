"""``TRACKING_ADAPTER["SOURCES"]``: which model emits each event, and how its fields map.

``SOURCES`` maps an event name to its source; ``SOURCE`` is the ``user_enriched`` entry
(the original setting, still the usual one). Builds a core ``EventMapping`` from the
settings; ``manage.py check`` validates the same settings first (see ``checks.py``), so
errors raised here name the setting to fix.
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

from django_app.conf import SETTING_NAME, app_settings
from tracking_adapter import (
    EVENT_NAME,
    ConfigurationError,
    EnrichedEvent,
    EventMapping,
    PropertyMap,
    event_type,
    resolve_path,
)
from tracking_adapter.providers import preset_from_path


@dataclass(frozen=True)
class Source:
    model: type[models.Model]
    mapping: EventMapping
    # Concrete field attnames whose change can change the event; None = unknown (a MAPPER).
    watched_fields: frozenset[str] | None
    timestamp_path: str | None = None
    event_name: str = EVENT_NAME
    setting: str = f"{SETTING_NAME}['SOURCE']"  # where it is configured, for error texts

    @property
    def event_class(self) -> type[EnrichedEvent]:
        return event_type(self.event_name)

    @property
    def subject_path(self) -> Any:
        """The mapping's path (or callable) to the id the event is about."""
        return getattr(self.mapping, self.event_class.SUBJECT_FIELD)


def source_setting(event_name: str) -> str:
    """Where the source of ``event_name`` is configured, as error texts should name it."""
    if event_name == EVENT_NAME and not (app_settings.SOURCES or {}).get(EVENT_NAME):
        return f"{SETTING_NAME}['SOURCE']"
    return f"{SETTING_NAME}['SOURCES'][{event_name!r}]"


def source_configs() -> dict[str, Any]:
    """Every configured source by event name: ``SOURCES``, with ``SOURCE`` as the
    ``user_enriched`` entry (``manage.py check`` refuses both at once)."""
    sources = app_settings.SOURCES
    configs = dict(sources) if isinstance(sources, Mapping) else {}
    if app_settings.SOURCE and EVENT_NAME not in configs:
        configs[EVENT_NAME] = app_settings.SOURCE
    return {name: config for name, config in configs.items() if config}


def load_model(
    label: Any, *, setting: str = f"{SETTING_NAME}['SOURCE']['MODEL']"
) -> type[models.Model]:
    if not isinstance(label, str) or label.count(".") != 1:
        raise ConfigurationError(f"{setting} must be 'app_label.ModelName', got {label!r}")
    try:
        return apps.get_model(label)
    except LookupError:
        raise ConfigurationError(f"{setting}: no installed model {label!r}") from None


def aware(value: Any) -> Any:
    """Django naive datetimes (USE_TZ=False) mean the current time zone, not UTC."""
    if isinstance(value, datetime) and timezone.is_naive(value):
        return timezone.make_aware(value, timezone.get_current_timezone())
    return value


def build_source(
    config: Mapping[str, Any],
    event_name: str = EVENT_NAME,
    *,
    setting: str | None = None,
    model_setting: str | None = None,
) -> Source:
    """The source of ``event_name`` from its settings entry. ``setting`` is how errors name
    the entry (default: where it is configured); ``model_setting`` how they name MODEL
    (a command's ``--model`` flag, when that is where the model came from)."""
    where = setting or source_setting(event_name)

    def _setting(key: str) -> str:
        return f"{where}[{key!r}]"

    try:
        event_class = event_type(event_name)
    except ValueError as exc:
        raise ConfigurationError(f"{SETTING_NAME}['SOURCES']: {exc}") from None
    model = load_model(config.get("MODEL"), setting=model_setting or _setting("MODEL"))
    for key in ("USER_ID", "GROUP_ID"):
        if not config.get(key):
            raise ConfigurationError(f"{_setting(key)} is required: the attribute path to the id")
    chosen = [key for key in ("PROPERTIES", "PROVIDER", "MAPPER") if config.get(key)]
    if len(chosen) != 1:
        raise ConfigurationError(
            f"{where} needs exactly one of PROPERTIES, PROVIDER or MAPPER "
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
        properties = preset_from_path(provider[0], provider[1], event=event_name)
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
        event_class=event_class,
    )
    watched = None if config.get("MAPPER") else _watched_fields(model, paths)
    return Source(
        model=model,
        mapping=mapping,
        watched_fields=watched,
        timestamp_path=timestamp_path,
        event_name=event_name,
        setting=where,
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
