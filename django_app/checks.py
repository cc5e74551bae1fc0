"""System checks (``manage.py check``) for TRACKING_ADAPTER, with stable ids.

| id | problem |
|---|---|
| tracking_adapter.E001 | TRACKING_ADAPTER is not a dict |
| tracking_adapter.E002 | unknown setting key |
| tracking_adapter.E003 | SINK is not a known alias nor an importable Sink class |
| tracking_adapter.E004 | SINK_OPTIONS do not fit the sink |
| tracking_adapter.E005 | a remote sink without its API/write key |
| tracking_adapter.E006 | an http endpoint to a host that is not loopback |
| tracking_adapter.E007 | DISPATCH is not inline, worker or celery |
| tracking_adapter.E008 | DISPATCH is celery but Celery is not installed |
| tracking_adapter.E010 | SOURCE is not a dict, or has unknown keys |
| tracking_adapter.E011 | SOURCE.MODEL does not exist |
| tracking_adapter.E012 | SOURCE.USER_ID / GROUP_ID missing |
| tracking_adapter.E013 | not exactly one of PROPERTIES, PROVIDER, MAPPER |
| tracking_adapter.E014 | a property name that is neither an enrichment property nor a declared extra |
| tracking_adapter.E015 | an attribute path that does not resolve on the model |
| tracking_adapter.E016 | PROVIDER names an unknown provider |
| tracking_adapter.E017 | MAPPER is not an importable callable |
| tracking_adapter.E018 | EXCLUDE_PROPERTIES, RETRY or a number setting is malformed |
| tracking_adapter.E019 | the API/write key cannot be sent in an HTTP header (stray whitespace, say) |
| tracking_adapter.E020 | LEASE_SECONDS leaves too little room for one request under the sink's deadline |
"""

from __future__ import annotations

import difflib
import importlib.util
import math
from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils.module_loading import import_string

from django_app.conf import DEFAULTS, DISPATCH_MODES, RETRY_KEYS, SETTING_NAME, SOURCE_KEYS
from tracking_adapter import PROPERTY_NAMES, ConfigurationError
from tracking_adapter.providers import PRESETS
from tracking_adapter.security import check_endpoint, header_value_problem
from tracking_adapter.sinks import SINK_ALIASES, create_sink, sink_class

MAX_NUDGE_TIMEOUT = 5.0  # past this the wait is no longer a nudge: it blocks the host
_REMOTE_KEYS = {"thrivestack": ("api_key", "endpoint"), "segment": ("write_key", "host")}


def _error(id_: int, msg: str, hint: str | None = None) -> checks.CheckMessage:
    return checks.Error(msg, hint=hint, id=f"tracking_adapter.E{id_:03d}")


def _did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"Did you mean {close[0]!r}?" if close else None


@checks.register()
def check_tracking_adapter(app_configs: Any = None, **_kwargs: Any) -> list[checks.CheckMessage]:
    return check_settings()


def check_settings() -> list[checks.CheckMessage]:
    config = getattr(settings, SETTING_NAME, None)
    if config is None:
        return []
    if not isinstance(config, dict):
        return [_error(1, f"{SETTING_NAME} must be a dict, got {type(config).__name__}.")]
    errors: list[checks.CheckMessage] = []
    for key in config:
        if key not in DEFAULTS:
            errors.append(
                _error(
                    2, f"{SETTING_NAME} has an unknown key {key!r}.", _did_you_mean(key, DEFAULTS)
                )
            )
    errors += _check_sink(config)
    errors += _check_dispatch(config.get("DISPATCH", DEFAULTS["DISPATCH"]))
    errors += _check_tuning(config)
    if config.get("SOURCE"):
        errors += _check_source(config["SOURCE"])
    return errors


def _check_sink(config: dict[str, Any]) -> list[checks.CheckMessage]:
    spec = config.get("SINK", DEFAULTS["SINK"])
    options = config.get("SINK_OPTIONS") or {}
    if not isinstance(options, dict):
        return [_error(4, f"{SETTING_NAME}['SINK_OPTIONS'] must be a dict.")]
    try:
        sink_class(spec, setting=f"{SETTING_NAME}['SINK']")
    except ConfigurationError as exc:
        return [_error(3, str(exc), _did_you_mean(str(spec), SINK_ALIASES))]
    if spec in _REMOTE_KEYS:
        key_option, url_option = _REMOTE_KEYS[spec]
        if not options.get(key_option):
            return [
                _error(
                    5,
                    f"{SETTING_NAME}['SINK'] is {spec!r} but SINK_OPTIONS has no {key_option!r}.",
                    f"Set {SETTING_NAME}['SINK_OPTIONS']['{key_option}'], e.g. from an "
                    "environment variable.",
                )
            ]
        problem = header_value_problem(options[key_option])
        if problem:
            # Caught here, not at the first send: every event would wait on a key that
            # can never go out (the value is not quoted: it is a secret).
            return [
                _error(
                    19,
                    f"{SETTING_NAME}['SINK_OPTIONS']['{key_option}'] cannot be sent in an "
                    f"HTTP header: {problem}.",
                    "A key read from a file or an environment variable often ends in a "
                    "newline: strip it (value.strip()).",
                )
            ]
        if url_option in options:
            try:
                check_endpoint(
                    options[url_option],
                    option=f"{SETTING_NAME}['SINK_OPTIONS']['{url_option}']",
                    allow_http=bool(options.get("allow_http")),
                )
            except ConfigurationError as exc:
                return [_error(6, str(exc))]
    try:
        sink = create_sink(
            spec,
            options,
            setting=f"{SETTING_NAME}['SINK']",
            options_setting=f"{SETTING_NAME}['SINK_OPTIONS']",
        )
    except ConfigurationError as exc:
        return [_error(4, str(exc))]
    sink.close()
    return _check_lease(sink, config)


def _check_dispatch(mode: Any) -> list[checks.CheckMessage]:
    if mode not in DISPATCH_MODES:
        return [
            _error(
                7,
                f"{SETTING_NAME}['DISPATCH'] is {mode!r}; choose one of {', '.join(DISPATCH_MODES)}.",
                _did_you_mean(str(mode), DISPATCH_MODES),
            )
        ]
    if mode == "celery" and importlib.util.find_spec("celery") is None:
        return [
            _error(
                8,
                f"{SETTING_NAME}['DISPATCH'] is 'celery' but Celery is not installed.",
                "pip install 'tracking-adapter[celery]'",
            )
        ]
    return []


def _check_tuning(config: dict[str, Any]) -> list[checks.CheckMessage]:
    errors = []
    excluded = config.get("EXCLUDE_PROPERTIES", [])
    if not isinstance(excluded, list | tuple) or not all(isinstance(n, str) for n in excluded):
        errors.append(_error(18, f"{SETTING_NAME}['EXCLUDE_PROPERTIES'] must be a list of names."))
    for key in ("BATCH_SIZE", "LEASE_SECONDS", "INLINE_TIMEOUT", "POLL_INTERVAL"):
        value = config.get(key, DEFAULTS[key])
        if not _is_number(value) or value <= 0:
            errors.append(_error(18, f"{SETTING_NAME}['{key}'] must be a positive number."))
    nudge = config.get("NUDGE_TIMEOUT", DEFAULTS["NUDGE_TIMEOUT"])
    if not _is_number(nudge) or not 0 <= nudge <= MAX_NUDGE_TIMEOUT:
        errors.append(
            _error(
                18,
                f"{SETTING_NAME}['NUDGE_TIMEOUT'] must be a number of seconds from 0 to "
                f"{MAX_NUDGE_TIMEOUT:g}, got {nudge!r}.",
                "It is how long a commit may wait for the Celery broker; 0 never waits.",
            )
        )
    retry = config.get("RETRY", {})
    if not isinstance(retry, dict):
        errors.append(_error(18, f"{SETTING_NAME}['RETRY'] must be a dict."))
    else:
        for key in retry:
            if key not in RETRY_KEYS:
                errors.append(
                    _error(
                        18,
                        f"{SETTING_NAME}['RETRY'] has an unknown key {key!r}.",
                        _did_you_mean(key, RETRY_KEYS),
                    )
                )
    return errors


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _check_lease(sink: Any, config: dict[str, Any]) -> list[checks.CheckMessage]:
    # A worker extends its lease between requests once a third of it has gone, so one
    # request must end within the remaining two thirds or another worker may claim the
    # batch while it is still being sent; half leaves room for settling the batch.
    deadline: Any = getattr(sink, "deadline", None)
    lease = config.get("LEASE_SECONDS", DEFAULTS["LEASE_SECONDS"])
    if not _is_number(deadline) or not _is_number(lease) or lease <= 0:
        return []
    if deadline <= lease / 2:
        return []
    return [
        _error(
            20,
            f"{SETTING_NAME}['LEASE_SECONDS'] is {lease:g}s but one request of the sink may "
            f"take up to {deadline:g}s (SINK_OPTIONS['deadline']): another worker could claim "
            "a batch while it is still being sent, and deliver it twice.",
            f"Set LEASE_SECONDS to at least {2 * deadline:g}, or lower SINK_OPTIONS['deadline'].",
        )
    ]


def _check_source(source: Any) -> list[checks.CheckMessage]:
    where = f"{SETTING_NAME}['SOURCE']"
    if not isinstance(source, dict):
        return [_error(10, f"{where} must be a dict.")]
    errors = [
        _error(10, f"{where} has an unknown key {key!r}.", _did_you_mean(key, SOURCE_KEYS))
        for key in source
        if key not in SOURCE_KEYS
    ]
    label = source.get("MODEL")
    model: type[models.Model] | None = None
    try:
        model = apps.get_model(label) if isinstance(label, str) and label.count(".") == 1 else None
    except LookupError:
        model = None
    if model is None:
        errors.append(
            _error(
                11,
                f"{where}['MODEL'] is {label!r}, which is not an installed model.",
                "Use 'app_label.ModelName' of the profile model that holds enrichment data.",
            )
        )
    for key in ("USER_ID", "GROUP_ID"):
        if not source.get(key):
            errors.append(_error(12, f"{where}['{key}'] is required (an attribute path)."))
    chosen = [key for key in ("PROPERTIES", "PROVIDER", "MAPPER") if source.get(key)]
    if len(chosen) != 1:
        errors.append(
            _error(
                13,
                f"{where} needs exactly one of PROPERTIES, PROVIDER or MAPPER, "
                f"got {', '.join(chosen) or 'none'}.",
            )
        )
    paths = [(key, source[key]) for key in ("USER_ID", "GROUP_ID", "TIMESTAMP") if source.get(key)]
    properties = source.get("PROPERTIES")
    if properties is not None:
        errors += _check_property_names(properties, source.get("EXTRA_PROPERTIES") or [], where)
        if isinstance(properties, dict):
            paths += [
                (f"PROPERTIES']['{n}", p) for n, p in properties.items() if isinstance(p, str)
            ]
    provider = source.get("PROVIDER")
    if provider is not None:
        if not (isinstance(provider, list | tuple) and len(provider) == 2):
            errors.append(_error(16, f"{where}['PROVIDER'] must be [provider, payload path]."))
        else:
            if provider[0] not in PRESETS:
                errors.append(
                    _error(
                        16,
                        f"{where}['PROVIDER'] names unknown provider {provider[0]!r}; "
                        f"choose one of {', '.join(sorted(PRESETS))}.",
                        _did_you_mean(str(provider[0]), PRESETS),
                    )
                )
            paths.append(("PROVIDER", provider[1]))
    mapper = source.get("MAPPER")
    if isinstance(mapper, str):
        try:
            found = import_string(mapper)
        except ImportError as exc:
            errors.append(_error(17, f"{where}['MAPPER']: cannot import {mapper!r}: {exc}."))
        else:
            if not callable(found):
                errors.append(_error(17, f"{where}['MAPPER']: {mapper!r} is not callable."))
    elif mapper is not None and not callable(mapper):
        errors.append(_error(17, f"{where}['MAPPER'] must be a dotted path or a callable."))
    if model is not None:
        for key, path in paths:
            problem = path_problem(model, path)
            if problem:
                errors.append(_error(15, f"{where}['{key}'] = {path!r}: {problem}"))
    return errors


def _check_property_names(
    properties: Any, extras: list[str], where: str
) -> list[checks.CheckMessage]:
    if not isinstance(properties, dict):
        return [_error(14, f"{where}['PROPERTIES'] must be a dict of property name to path.")]
    errors = []
    for name in properties:
        if name in PROPERTY_NAMES or name in extras:
            continue
        errors.append(
            _error(
                14,
                f"{where}['PROPERTIES'] maps {name!r}, which is not one of the 25 enrichment "
                "properties.",
                _did_you_mean(str(name), PROPERTY_NAMES)
                or f"To send it as an extra property, add it to {where}['EXTRA_PROPERTIES'].",
            )
        )
    return errors


def path_problem(model: type[models.Model], path: Any) -> str | None:
    """Why ``path`` cannot resolve on instances of ``model``, or None if it can (or may)."""
    if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
        return "not a dotted attribute path"
    current: type[models.Model] = model
    parts = path.split(".")
    for position, part in enumerate(parts):
        try:
            field = current._meta.get_field(part)
        except FieldDoesNotExist:
            if hasattr(current, part):
                return None  # a property or method: what it returns is not checkable here
            names = sorted(
                {f.name for f in current._meta.get_fields()}
                | {getattr(f, "attname", f.name) for f in current._meta.concrete_fields}
            )
            hint = _did_you_mean(part, names)
            return f"{current.__name__} has no field or attribute {part!r}." + (
                f" {hint}" if hint else ""
            )
        related = getattr(field, "related_model", None)
        if (
            field.is_relation
            and isinstance(related, type)
            and part != getattr(field, "attname", None)
        ):
            current = related
            continue
        if position < len(parts) - 1 and not isinstance(field, models.JSONField):
            return f"{current.__name__}.{part} is a {type(field).__name__}, not a relation or JSON."
        return None
    return None
