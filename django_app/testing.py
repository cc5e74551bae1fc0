"""Helpers for host apps' own tests.

    from django_app.testing import capture_events

    def test_enrichment_is_tracked():
        with capture_events() as events:
            enrich(profile)
        assert events[0].properties.enrichment_city == "Pune"

Events of every kind are captured (``user_enriched``, ``group_enriched``); pass an event
name to keep one kind. Inside ``capture_events()`` events are mapped and validated exactly as they would be sent,
then appended to the list instead of being written to the outbox and delivered. Events are
captured when recorded (at save time), whether or not the transaction later commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django_app.recording import capturing
from tracking_adapter import EnrichedEvent


@contextmanager
def capture_events(event: str | None = None) -> Iterator[list[EnrichedEvent]]:
    """Capture the events recorded inside the block: of every kind, or only ``event``
    (``capture_events("group_enriched")``); the others are captured too, not recorded."""
    events: list[EnrichedEvent] = []

    def keep(captured: EnrichedEvent) -> None:
        if event is None or event == captured.EVENT_NAME:
            events.append(captured)

    with capturing(keep):
        yield events
