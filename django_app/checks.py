"""System checks (``manage.py check``) for TRACKING_ADAPTER, with stable ids.

| id | problem |
|---|---|
| tracking_adapter.E001 | TRACKING_ADAPTER is not a dict |
| tracking_adapter.E002 | unknown setting key |
| tracking_adapter.E003 | SINK is not a known alias nor an importable Sink class |
| tracking_adapter.E004 | SINK_OPTIONS do not fit the sink |
| tracking_adapter.E005 | a remote sink without its API/write key |
| tracking_adapter.E006 | an http endpoint to a host that is not loopback |
| tracking_adapter.E007 | DISPATCH is not a dispatcher alias nor an importable Dispatcher class |
| tracking_adapter.E008 | the DISPATCH backend is not ready (its package missing, its Tasks backend undefined) |
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
| tracking_adapter.E021 | SOURCES is not a dict of event name to source, names an unknown event, or repeats SOURCE |
| tracking_adapter.E022 | the sink's endpoint/host already ends in the route the sink appends (/track, /v1/batch) |

E010 to E017 apply to every source: ``SOURCE`` and each entry of ``SOURCES``.
| tracking_adapter.W001 | DISPATCH is celery but no Celery app is set up: Celery's fallback app would take the tasks |
| tracking_adapter.W002 | DISPATCH is celery but the Celery app has no broker URL (or its configuration fails) |
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils.module_loading import import_string

from django_app.conf import DEFAULTS, RETRY_KEYS, SETTING_NAME, SOURCE_KEYS
from django_app.dispatchers import DISPATCHER_ALIASES, CeleryDispatcher, dispatcher_class
from tracking_adapter import EVENT_NAME, EVENT_TYPES, ConfigurationError, event_type
from tracking_adapter.providers import PRESETS_BY_EVENT
from tracking_adapter.security import check_endpoint, header_value_problem
from tracking_adapter.sinks import SINK_ALIASES, create_sink, sink_class

MAX_NUDGE_TIMEOUT = 5.0  # past this the wait is no longer a nudge: it blocks the host
_REMOTE_KEYS = {"thrivestack": ("api_key", "endpoint"), "segment": ("write_key", "host")}


def _error(id_: int, msg: str, hint: str | None = None) -> checks.CheckMessage:
    return checks.Error(msg, hint=hint, id=f"tracking_adapter.E{id_:03d}")


def _warning(id_: int, msg: str, hint: str | None = None) -> checks.CheckMessage:
    return checks.Warning(msg, hint=hint, id=f"tracking_adapter.W{id_:03d}")


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
        errors += _check_source(config["SOURCE"], EVENT_NAME, f"{SETTING_NAME}['SOURCE']")
    errors += _check_sources(config)
    return errors


def _check_sources(config: dict[str, Any]) -> list[checks.CheckMessage]:
    sources = config.get("SOURCES")
    if not sources:
        return []
    where = f"{SETTING_NAME}['SOURCES']"
    if not isinstance(sources, dict):
        return [_error(21, f"{where} must be a dict of event name to source.")]
    errors = []
    for event, source in sources.items():
        if event not in EVENT_TYPES:
            errors.append(
                _error(
                    21,
                    f"{where} has an unknown event {event!r}; known: "
                    f"{', '.join(sorted(EVENT_TYPES))}.",
                    _did_you_mean(str(event), EVENT_TYPES),
                )
            )
        elif event == EVENT_NAME and config.get("SOURCE") and source:
            errors.append(
                _error(
                    21,
                    f"{SETTING_NAME}['SOURCE'] and {where}['{EVENT_NAME}'] are both set: "
                    f"SOURCE is the {EVENT_NAME} entry.",
                    "Keep one of the two.",
                )
            )
        elif source:
            errors += _check_source(source, event, f"{where}['{event}']")
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
            endpoint = str(options[url_option]).rstrip("/")
            route = {"thrivestack": "/track", "segment": "/v1/batch"}[spec]
            if endpoint.endswith(route):
                return [
                    _error(
                        22,
                        f"{SETTING_NAME}['SINK_OPTIONS']['{url_option}'] is {endpoint!r}, which "
                        f"already ends in {route}: the sink appends {route} to this base URL, "
                        f"so it would post to {endpoint}{route} and every event would stay "
                        "pending.",
                        f"Drop the trailing {route} (ThriveStack's base URL is "
                        "https://api.app.thrivestack.ai/api)."
                        if spec == "thrivestack"
                        else f"Drop the trailing {route} (Segment's is https://api.segment.io).",
                    )
                ]
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
    try:
        dispatcher = dispatcher_class(mode)
    except ConfigurationError as exc:
        return [_error(7, str(exc), _did_you_mean(str(mode), DISPATCHER_ALIASES))]
    errors = [
        _error(8, f"{SETTING_NAME}['DISPATCH'] is {mode!r}, but {what}.", hint)
        for what, hint in dispatcher().problems()
    ]
    if not errors and issubclass(dispatcher, CeleryDispatcher):
        errors += _check_celery_app()
    return errors


def is_celery_fallback_app(app: Any) -> bool:
    """True for the app Celery makes up by itself when no app was set up (``celery._state``:
    named "default", no fix-ups, never current). It reads none of the project's CELERY_*
    settings: a task sent through it may reach no worker of the project, and nothing says so."""
    return (
        getattr(app, "main", None) == "default"
        and not getattr(app, "fixups", None)
        and getattr(app, "set_as_current", None) is False
    )


def configured_celery_app() -> Any | None:
    """The app ``celery.current_app`` resolves to in this thread, or None if that would be
    Celery's fallback app. Never creates the fallback, as resolving ``current_app`` would."""
    from celery import _state

    state: Any = _state  # celery-types declares neither _tls nor default_app
    app = getattr(state._tls, "current_app", None) or state.default_app
    return None if app is None or is_celery_fallback_app(app) else app


def celery_bootstrap_hint() -> str:
    """The usual Django bootstrap of a Celery app, named after the settings' package."""
    # SETTINGS_MODULE is None under override_settings: the environment names it then.
    module = str(
        getattr(settings, "SETTINGS_MODULE", None)
        or os.environ.get("DJANGO_SETTINGS_MODULE")
        or "proj.settings"
    )
    package = module.split(".")[0] if "." in module else "proj"
    return (
        f"Create {package}/celery.py:\n"
        "    import os\n"
        "    from celery import Celery\n"
        f'    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{module}")\n'
        f'    app = Celery("{package}")\n'
        '    app.config_from_object("django.conf:settings", namespace="CELERY")\n'
        "    app.autodiscover_tasks()\n"
        f"and load it in {package}/__init__.py:\n"
        "    from .celery import app as celery_app"
    )


def _check_celery_app() -> list[checks.CheckMessage]:
    app = configured_celery_app()
    if app is None:
        return [
            _warning(
                1,
                f"{SETTING_NAME}['DISPATCH'] is 'celery' but no Celery app is set up in this "
                "process: the delivery task would go to Celery's fallback app, which ignores "
                "the CELERY_* settings, and events would stay pending without an error.",
                celery_bootstrap_hint(),
            )
        ]
    broker_hint = (
        "Set CELERY_BROKER_URL in settings (read by app.config_from_object("
        '"django.conf:settings", namespace="CELERY")) or in the environment, e.g. '
        'CELERY_BROKER_URL = "redis://127.0.0.1:6379/0".'
    )
    try:
        eager = bool(app.conf.task_always_eager)
        broker = app.conf.broker_url  # the environment's CELERY_BROKER_URL comes first
    except Exception as exc:  # the app's own configuration does not load
        return [
            _warning(
                2,
                f"{SETTING_NAME}['DISPATCH'] is 'celery' but the configuration of the Celery "
                f"app {app.main!r} cannot be read: {exc!r}.",
                broker_hint,
            )
        ]
    if not eager and not broker:
        return [
            _warning(
                2,
                f"{SETTING_NAME}['DISPATCH'] is 'celery' but the Celery app {app.main!r} has "
                "no broker URL: it would publish to Celery's default, amqp://guest@localhost//.",
                broker_hint,
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


def _check_source(source: Any, event: str, where: str) -> list[checks.CheckMessage]:
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
                "Use 'app_label.ModelName' of the model that holds the enrichment data.",
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
        errors += _check_property_names(
            properties, source.get("EXTRA_PROPERTIES") or [], where, event
        )
        if isinstance(properties, dict):
            paths += [
                (f"PROPERTIES']['{n}", p) for n, p in properties.items() if isinstance(p, str)
            ]
    provider = source.get("PROVIDER")
    if provider is not None:
        if not (isinstance(provider, list | tuple) and len(provider) == 2):
            errors.append(_error(16, f"{where}['PROVIDER'] must be [provider, payload path]."))
        else:
            presets = PRESETS_BY_EVENT.get(event, {})
            if provider[0] not in presets:
                errors.append(
                    _error(
                        16,
                        f"{where}['PROVIDER'] names unknown provider {provider[0]!r} for "
                        f"{event}; choose one of {', '.join(sorted(presets))}.",
                        _did_you_mean(str(provider[0]), presets),
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
    properties: Any, extras: list[str], where: str, event: str
) -> list[checks.CheckMessage]:
    if not isinstance(properties, dict):
        return [_error(14, f"{where}['PROPERTIES'] must be a dict of property name to path.")]
    names = list(event_type(event).PROPERTIES_MODEL.model_fields)
    errors = []
    for name in properties:
        if name in names or name in extras:
            continue
        errors.append(
            _error(
                14,
                f"{where}['PROPERTIES'] maps {name!r}, which is not one of the {len(names)} "
                f"properties of {event}.",
                _did_you_mean(str(name), names)
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
