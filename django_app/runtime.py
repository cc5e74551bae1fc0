"""Objects built from settings (the sink, the source, the retry policy), cached per process.

Built on first use, not at import, and dropped when ``TRACKING_ADAPTER`` changes (tests
with ``override_settings``), so the settings stay the single source of truth.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from django_app.conf import SETTING_NAME, app_settings
from django_app.source import Source, build_source, source_configs
from tracking_adapter import EVENT_NAME
from tracking_adapter.retry import RetryPolicy
from tracking_adapter.sinks import Sink, create_sink

if TYPE_CHECKING:
    from django_app.dispatchers import Dispatcher

_lock = threading.RLock()
_cache: dict[str, Any] = {}

SECRET_OPTION_WORDS = ("key", "secret", "token", "password")


def _cached(name: str, build: Any) -> Any:
    with _lock:
        if name not in _cache:
            _cache[name] = build()
        return _cache[name]


def get_sink() -> Sink:
    return _cached(  # type: ignore[no-any-return]
        "sink",
        lambda: create_sink(
            app_settings.SINK,
            app_settings.SINK_OPTIONS,
            setting=f"{SETTING_NAME}['SINK']",
            options_setting=f"{SETTING_NAME}['SINK_OPTIONS']",
        ),
    )


def get_dispatcher() -> Dispatcher:
    """The DISPATCH backend (``django_app.dispatchers``)."""
    from django_app.dispatchers import dispatcher_class

    return _cached(  # type: ignore[no-any-return]
        "dispatcher", lambda: dispatcher_class(app_settings.DISPATCH)()
    )


def get_inline_sink() -> Sink:
    """The sink with INLINE_TIMEOUT as its per-read timeout and as its overall deadline,
    as far as the sink takes those options (a trickling collector must not hold the
    committing thread for the sink's usual 30 s)."""

    def build() -> Sink:
        options = dict(app_settings.SINK_OPTIONS)
        limit = app_settings.INLINE_TIMEOUT
        for shortened in ({"timeout": limit, "deadline": limit}, {"timeout": limit}):
            try:
                return create_sink(app_settings.SINK, {**options, **shortened})
            except Exception:
                continue
        return get_sink()

    return _cached("inline_sink", build)  # type: ignore[no-any-return]


def get_source(event: str = EVENT_NAME) -> Source | None:
    """The source of ``event`` (``SOURCES[event]``; ``SOURCE`` for ``user_enriched``)."""
    key = f"source:{event}"
    source = _cache.get(key)  # read on every tracked save: the settings only when not built
    if source is not None:
        return source  # type: ignore[no-any-return]
    config = source_configs().get(event)
    if not config:
        return None
    return _cached(key, lambda: build_source(config, event))  # type: ignore[no-any-return]


def get_sources() -> dict[str, Source]:
    """Every configured source by event name; raises ConfigurationError for a broken one."""
    sources = {}
    for event in source_configs():
        source = get_source(event)
        if source is not None:
            sources[event] = source
    return sources


def get_retry_policy() -> RetryPolicy:
    def build() -> RetryPolicy:
        retry = dict(app_settings.RETRY or {})
        policy = RetryPolicy()
        for key, attribute in (
            ("BASE_DELAY", "base_delay"),
            ("MAX_DELAY", "max_delay"),
            ("MAX_RETRY_AFTER", "max_retry_after"),
            ("MAX_ATTEMPTS", "max_attempts"),
        ):
            if key in retry:
                setattr(policy, attribute, retry[key])
        return policy

    return _cached("retry", build)  # type: ignore[no-any-return]


def secrets() -> list[str]:
    """Secret option values, to keep them out of anything we store or log."""
    options = app_settings.SINK_OPTIONS or {}
    return [
        str(value)
        for name, value in options.items()
        if value and any(word in name.lower() for word in SECRET_OPTION_WORDS)
    ]


def reset() -> None:
    with _lock:
        for sink in (_cache.get("sink"), _cache.get("inline_sink")):
            if sink is not None:
                sink.close()
        _cache.clear()


@receiver(setting_changed)
def _settings_changed(*, setting: str, **_kwargs: Any) -> None:
    if setting == SETTING_NAME:
        reset()
