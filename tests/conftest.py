"""Shared fixtures, and the rules for tests that need a service.

``make test`` runs the whole suite on SQLite, then the Django suite once per server
database and driver (``TEST_DATABASE``, see ``tests/settings.py``): PostgreSQL with
psycopg 3, PostgreSQL with psycopg2 (``TEST_PG_DRIVER=psycopg2``), MariaDB. A test marked
``postgres`` runs in the PostgreSQL passes only, one marked ``mariadb`` in the MariaDB pass
only; one marked ``redis`` needs Redis on 127.0.0.1:6379. Where a pass's server or driver
is absent its tests skip with the reason, and so do ``redis`` tests without Redis, except
under ``CI=true``, where an absent service or driver is a failure.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from tracking_adapter.receiver import LoopbackReceiver

IN_CI = os.environ.get("CI", "").lower() == "true"
DATABASE = os.environ.get("TEST_DATABASE") or "sqlite"
POSTGRES_PASS = DATABASE == "postgres"
MARIADB_PASS = DATABASE == "mariadb"


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def missing_for_this_pass() -> str | None:
    """Why this pass's database cannot be used here, or None."""
    from django.conf import settings

    if POSTGRES_PASS:
        host, port = os.environ.get("PGHOST", "127.0.0.1"), int(os.environ.get("PGPORT", "5432"))
        if not reachable(host, port):
            return f"TEST_DATABASE=postgres but PostgreSQL is not reachable on {host}:{port}"
    if MARIADB_PASS:
        host = os.environ.get("MARIADB_HOST", "127.0.0.1")
        port = int(os.environ.get("MARIADB_PORT", "3306"))
        if not reachable(host, port):
            return f"TEST_DATABASE=mariadb but MariaDB is not reachable on {host}:{port}"
    missing: str | None = getattr(settings, "TEST_DRIVER_MISSING", None)
    return missing


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mariadb: needs MariaDB on 127.0.0.1:3306 (runs in the TEST_DATABASE=mariadb pass "
        "only; required under CI=true)",
    )
    message = missing_for_this_pass()
    if message:
        if IN_CI:
            raise pytest.UsageError(message + " (required under CI=true)")
        config._tracking_skip_all = message  # type: ignore[attr-defined]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_all = getattr(config, "_tracking_skip_all", None)
    redis_up = reachable("127.0.0.1", 6379)
    for item in items:
        if skip_all:
            item.add_marker(pytest.mark.skip(reason=skip_all))
        elif "postgres" in item.keywords and not POSTGRES_PASS:
            item.add_marker(
                pytest.mark.skip(
                    reason="needs PostgreSQL: runs in the TEST_DATABASE=postgres passes"
                )
            )
        elif "mariadb" in item.keywords and not MARIADB_PASS:
            item.add_marker(
                pytest.mark.skip(reason="needs MariaDB: runs in the TEST_DATABASE=mariadb pass")
            )
        elif "redis" in item.keywords and not redis_up:
            if IN_CI:
                raise pytest.UsageError(
                    "Redis is not reachable on 127.0.0.1:6379 (required under CI=true)"
                )
            item.add_marker(pytest.mark.skip(reason="Redis is not reachable on 127.0.0.1:6379"))


@pytest.fixture
def receiver() -> Iterator[LoopbackReceiver]:
    """A ThriveStack/Segment-shaped HTTP server on loopback, checking key ``test-api-key``."""
    with LoopbackReceiver(api_key="test-api-key", write_key="test-write-key") as server:
        yield server
