"""The demo behind ``make demo``: provider fixtures → user_enriched events → a local /track receiver."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources

from tracking_adapter import UserEnrichedEvent
from tracking_adapter.providers import from_apollo, from_clearbit, from_pdl
from tracking_adapter.receiver import LoopbackReceiver
from tracking_adapter.sinks import ThriveStackSink

FIXTURES = {"clearbit": from_clearbit, "apollo": from_apollo, "pdl": from_pdl}


def main() -> None:
    events = []
    for number, (provider, preset) in enumerate(FIXTURES.items(), start=1):
        payload = json.loads(
            resources.files("tracking_adapter.fixtures")
            .joinpath(f"{provider}_person.json")
            .read_text()
        )
        events.append(
            UserEnrichedEvent(
                user_id=f"user_{number}",
                group_id="account_1",
                properties=preset(payload),
                timestamp=datetime(2023, 11, 2, 0, 30, 8, 276000, tzinfo=UTC),
            )
        )
    with LoopbackReceiver(api_key="demo-key") as receiver:
        sink = ThriveStackSink(api_key="demo-key", endpoint=receiver.thrivestack_endpoint)
        result = sink.send(events)
        sink.close()
    print(f"delivered {result.delivered} of {len(events)} events in {result.requests} request(s)")
    for item in receiver.items:
        print(json.dumps(item, indent=2))


if __name__ == "__main__":
    main()
