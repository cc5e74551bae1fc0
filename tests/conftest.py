"""Shared fixtures, and the rules for tests that need a service.

A test marked ``postgres`` runs in the PostgreSQL pass (``TEST_DATABASE=postgres``, which
``make test`` runs after the SQLite pass); a test marked ``redis`` needs Redis on
127.0.0.1:6379. Where the service is absent they skip with the reason, except under
``CI=true``, where an absent service is a failure.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from tracking_adapter.receiver import LoopbackReceiver

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_PASS = os.environ.get("TEST_DATABASE") == "postgres"


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    if POSTGRES_PASS and not reachable("127.0.0.1", 5432):
        message = "TEST_DATABASE=postgres but PostgreSQL is not reachable on 127.0.0.1:5432"
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
                pytest.mark.skip(reason="needs PostgreSQL: runs in the TEST_DATABASE=postgres pass")
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
