"""Building blocks for the Django tests: profiles, settings for a real sink, pending rows,
worker subprocesses and second sessions on the test's database."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


# TEST_DATABASE of tests/settings.py for each of Django's vendors.
PASS_OF_VENDOR = {"sqlite": "sqlite", "postgresql": "postgres", "mysql": "mariadb"}


def pg_driver() -> str:
    """The driver of the PostgreSQL pass: ``"psycopg"`` (3) or ``"psycopg2"``."""
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return "psycopg" if is_psycopg3 else "psycopg2"


def worker_env(receiver: Any) -> dict[str, str]:
    """Environment for a ``manage.py``-style subprocess using this test's database: the
    same settings, database, driver and test database (by name), whatever the vendor."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        TRACKING_TEST_ENDPOINT=receiver.thrivestack_endpoint,
        PYTHONPATH=str(REPO),
        TEST_DATABASE=PASS_OF_VENDOR[connection.vendor],
        TEST_DATABASE_NAME=str(connection.settings_dict["NAME"]),
    )
    if connection.vendor == "postgresql":
        env["TEST_PG_DRIVER"] = pg_driver()
    return env


class OtherSession:
    """A second session on the test's database, outside Django (another request, a worker
    holding a lock), through the pass's own driver. Not in autocommit: what it does stays
    in its transaction until ``rollback()`` (or the end of ``other_session()``)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw  # the driver's connection (psycopg, psycopg2, MySQLdb)

    def execute(self, sql: str, params: Any = None) -> Any:
        cursor = self.raw.cursor()
        cursor.execute(sql, params)
        return cursor

    def rollback(self) -> None:
        self.raw.rollback()


@contextmanager
def other_session() -> Iterator[OtherSession]:
    """A second connection to the test's database, opened as Django opens its own (same
    parameters, same driver), then closed (which rolls back what it left open)."""
    raw = connection.get_new_connection(connection.get_connection_params())
    try:
        yield OtherSession(raw)
    finally:
        raw.close()


def start_worker(receiver: Any, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "django", "deliver_events", *args],
        env=worker_env(receiver),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
