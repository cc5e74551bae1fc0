"""User-defined sinks, loaded by dotted path as a host app's own sink would be."""

from __future__ import annotations

from collections.abc import Sequence

from tracking_adapter import UserEnrichedEvent
from tracking_adapter.sinks import SendResult, Sink


class ExplodingSink(Sink):
    def send(self, events: Sequence[UserEnrichedEvent]) -> SendResult:
        raise RuntimeError("the warehouse is on fire")

    def describe(self) -> str:
        return "ExplodingSink"
