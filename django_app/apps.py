from __future__ import annotations

import logging
import os
from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed

logger = logging.getLogger("django_app")


class TrackingAdapterConfig(AppConfig):
    name = "django_app"
    label = "django_app"
    verbose_name = "Tracking adapter (user_enriched, group_enriched)"
    default_auto_field = "django.db.models.BigAutoField"
    # Editable installs give the package a second, virtual path entry; name the real one.
    path = os.path.dirname(os.path.abspath(__file__))

    def ready(self) -> None:
        from django_app import checks, receivers

        receivers.connect()
        setting_changed.connect(_reconnect, dispatch_uid="django_app.reconnect")
        # Misconfiguration is reported at startup too, not only by manage.py check, and
        # never by a failing save.
        for message in checks.check_settings():
            if message.is_serious():
                hint = f" (hint: {message.hint})" if message.hint else ""
                logger.error("%s: %s%s", message.id, message.msg, hint)


def _reconnect(*, setting: str, **_kwargs: Any) -> None:
    if setting == "TRACKING_ADAPTER":
        from django_app import receivers, runtime

        runtime.reset()
        receivers.connect()
