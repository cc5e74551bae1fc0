"""Building blocks for the Django tests: profiles, settings for a real sink, pending rows."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.db import connection

from django_app.models import OutboxEvent
from tests.testapp.models import Account, Profile
from tracking_adapter import UserEnrichedEvent

REPO = Path(__file__).resolve().parents[2]
_numbers = itertools.count(1)


def make_profile(account: Account | None = None, **fields: Any) -> Profile:
    number = next(_numbers)
    if account is None:
        account, _ = Account.objects.get_or_create(external_id="acct_1")
    user = User.objects.create(username=f"user{number}-{os.getpid()}")
    return Profile.objects.create(user=user, account=account, **fields)


def tracking(**overrides: Any) -> dict[str, Any]:
    """The test settings' TRACKING_ADAPTER with some keys replaced."""
    return {**django_settings.TRACKING_ADAPTER, **overrides}


def thrivestack_to(receiver: Any, **overrides: Any) -> dict[str, Any]:
    return tracking(
        SINK="thrivestack",
        SINK_OPTIONS={"api_key": "test-api-key", "endpoint": receiver.thrivestack_endpoint},
        **overrides,
    )


def pending_rows(count: int, *, prefix: str = "u") -> list[OutboxEvent]:
    """``count`` pending outbox rows holding valid events, written in one bulk insert."""
    rows = []
    for number in range(count):
        event = UserEnrichedEvent(
            user_id=f"{prefix}{number}",
            group_id="acct_1",
            properties={"enrichment_city": f"City {number}"},
        )
        rows.append(
            OutboxEvent(
                message_id=event.message_id,
                user_id=event.user_id,
                group_id=event.group_id,
                content_hash=event.content_hash(),
                payload=event.model_dump(mode="json"),
            )
        )
    return OutboxEvent.objects.bulk_create(rows, batch_size=1000)


def worker_env(receiver: Any) -> dict[str, str]:
    """Environment for a ``manage.py``-style subprocess using this test's database."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        TRACKING_TEST_ENDPOINT=receiver.thrivestack_endpoint,
        PYTHONPATH=str(REPO),
    )
    if connection.vendor == "postgresql":
        env["TEST_DATABASE"] = "postgres"
        env["PGDATABASE"] = connection.settings_dict["NAME"]
    else:
        env["SQLITE_PATH"] = connection.settings_dict["NAME"]
    return env


def start_worker(receiver: Any, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "django", "deliver_events", *args],
        env=worker_env(receiver),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
