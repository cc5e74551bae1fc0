"""Helpers for host apps' own tests.

    from django_app.testing import capture_events

    def test_enrichment_is_tracked():
        with capture_events() as events:
            enrich(profile)
        assert events[0].properties.enrichment_city == "Pune"

Inside ``capture_events()`` events are mapped and validated exactly as they would be sent,
then appended to the list instead of being written to the outbox and delivered. Events are
captured when recorded (at save time), whether or not the transaction later commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django_app.recording import capturing
from tracking_adapter import UserEnrichedEvent


@contextmanager
def capture_events() -> Iterator[list[UserEnrichedEvent]]:
    events: list[UserEnrichedEvent] = []
    with capturing(events.append):
        yield events
