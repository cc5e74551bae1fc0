"""The one accessor for ``settings.TRACKING_ADAPTER``, read lazily on every access.

Nothing is copied into module constants at import, so ``override_settings`` and settings
changed after import are honoured; objects built from settings (the sink, the source) are
cached by ``django_app.runtime`` and dropped when the setting changes.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

SETTING_NAME = "TRACKING_ADAPTER"

DEFAULTS: dict[str, Any] = {
    # Alias ("thrivestack", "segment", "console", "file", "memory") or dotted path.
    "SINK": "console",
    "SINK_OPTIONS": {},
    # A django_app.dispatchers alias or dotted path: "inline" sends on commit in-process;
    # "worker" leaves it to manage.py deliver_events; "celery" and "tasks" enqueue a task.
    "DISPATCH": "inline",
    # The user_enriched source; SOURCES maps any event name ("group_enriched") to its own.
    "SOURCE": None,
    "SOURCES": {},
    # Properties never stored nor sent (privacy): names of enrichment_* or extra properties.
    "EXCLUDE_PROPERTIES": [],
    # Delivery tuning.
    "BATCH_SIZE": 500,
    "LEASE_SECONDS": 120,
    "INLINE_TIMEOUT": 2.0,
    "POLL_INTERVAL": 5.0,
    "RETRY": {},
    "CELERY_QUEUE": None,
    # Seconds a commit waits for a broker or queue to take the delivery task (nudge.py).
    "NUDGE_TIMEOUT": 0.1,
    # DISPATCH "tasks": the backend of settings.TASKS, and the queue (None: its default).
    "TASKS_BACKEND": "default",
    "TASKS_QUEUE": None,
}

SOURCE_KEYS = (
    "MODEL",
    "USER_ID",
    "GROUP_ID",
    "TIMESTAMP",
    "PROPERTIES",
    "PROVIDER",
    "MAPPER",
    "EXTRA_PROPERTIES",
    "CONTEXT",
)
RETRY_KEYS = ("BASE_DELAY", "MAX_DELAY", "MAX_ATTEMPTS", "MAX_RETRY_AFTER")


class AppSettings:
    """``app_settings.SINK`` etc.: the user's value, or the default."""

    def raw(self) -> dict[str, Any]:
        value = getattr(settings, SETTING_NAME, None)
        return dict(value) if isinstance(value, dict) else {}

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"{SETTING_NAME} has no setting {name!r}")
        # Read in place, not through raw()'s copy: a tracked save reads several settings.
        value = getattr(settings, SETTING_NAME, None)
        return value.get(name, DEFAULTS[name]) if isinstance(value, dict) else DEFAULTS[name]


app_settings = AppSettings()
