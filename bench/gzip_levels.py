"""What each gzip level costs and saves on the Segment sink's request bodies.

``python -m bench.gzip_levels [EVENTS]``: encodes EVENTS (default 20,000) generated
``user_enriched`` events as the Segment sink does, joins them into request bodies of up to
``DEFAULT_BATCH_BYTES``, and compresses every body at levels 1, 6 (zlib's default) and 9
(what ``gzip.GzipFile``, so segment-analytics-python, uses), and with the sink's own
compressor at its level (``tracking_adapter.encoding.gzip_compress``: ISA-L's where isal is
installed): the compressed size as a share of the body, and the CPU per event. No database; the events are those of ``bench.seed``'s
shape (same fields, varied values).
"""

from __future__ import annotations

import functools
import gzip
import json
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tracking_adapter import UserEnrichedEvent
from tracking_adapter.encoding import gzip_compress, gzip_engine, segment_message
from tracking_adapter.sinks.segment import DEFAULT_BATCH_BYTES, GZIP_LEVEL, batch_body

LEVELS = (1, 6, 9)


def events(count: int) -> list[UserEnrichedEvent]:
    rng = random.Random(42)
    cities = ["Austin", "Pune", "Lyon", "São Paulo", "Toronto", "Berlin"]
    titles = ["Head of Growth", "Engineer", "CTO", "Product Manager", "Designer"]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        UserEnrichedEvent(
            user_id=f"user_{number:07d}",
            group_id=f"acct_{number % 500}",
            timestamp=start + timedelta(minutes=number),
            properties={
                "enrichment_first_name": f"First{number}",
                "enrichment_last_name": f"Last{rng.randrange(100)}",
                "enrichment_full_name": f"First{number} Last{number % 97}",
                "enrichment_avatar": f"https://avatars.example.test/{number}.png",
                "enrichment_city": rng.choice(cities),
                "enrichment_country": "United States",
                "enrichment_country_code": "US",
                "enrichment_employment_title": rng.choice(titles),
                "enrichment_employment_name": f"Company {number % 300}",
                "enrichment_employment_domain": f"company{number % 300}.test",
                "enrichment_linkedin_handle": f"https://www.linkedin.com/in/person-{number}",
                "enrichment_phone": [f"+1555{number:07d}"],
            },
        )
        for number in range(count)
    ]


def bodies(messages: list[bytes]) -> list[bytes]:
    found, batch, size = [], [], 0
    for message in messages:
        if batch and size + len(message) + 2 > DEFAULT_BATCH_BYTES:
            found.append(batch_body(batch, b"}"))
            batch, size = [], 0
        batch.append(message)
        size += len(message) + 2
    if batch:
        found.append(batch_body(batch, b"}"))
    return found


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    requests = bodies([segment_message(event) for event in events(count)])
    plain = sum(map(len, requests))
    result: dict[str, Any] = {
        "events": count,
        "requests": len(requests),
        "body_bytes": plain,
        "levels": {},
        "sink": {"level": GZIP_LEVEL, "engine": gzip_engine()},
    }
    compressors: dict[str, Callable[[bytes], bytes]] = {
        str(level): functools.partial(gzip.compress, compresslevel=level) for level in LEVELS
    }
    compressors["sink"] = functools.partial(gzip_compress, level=GZIP_LEVEL)
    for name, compress in compressors.items():
        began = time.process_time()
        compressed = sum(len(compress(body)) for body in requests)
        seconds = time.process_time() - began
        result["levels"][name] = {
            "share_of_body": compressed / plain,
            "cpu_us_per_event": seconds / count * 1e6,
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
