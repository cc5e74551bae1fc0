"""Save path: a tracked ``profile.save()`` against the same save with tracking disconnected.

``python -m bench.savepath SAVES``; each save changes a mapped field and runs in its own
transaction; tracked and untracked blocks alternate so both see the same machine state.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django

django.setup()

from django.db import transaction  # noqa: E402

from django_app import receivers  # noqa: E402
from example_project.profiles.models import Profile  # noqa: E402

BLOCK = 100


def timed_saves(profile: Profile, count: int, start: int) -> list[float]:
    timings = []
    for number in range(start, start + count):
        profile.title = f"Title {number}"  # a mapped field: the tracked save records an event
        began = time.perf_counter()
        with transaction.atomic():
            profile.save()
        timings.append(time.perf_counter() - began)
    return timings


def main() -> None:
    saves = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    profile = Profile.objects.select_related("user", "account").order_by("pk").first()
    assert profile is not None, "seed the database first (python -m bench.run)"
    tracked: list[float] = []
    untracked: list[float] = []
    timed_saves(profile, 200, 0)  # warm up both paths' caches and connections
    number = 1000
    for _ in range(max(1, saves // (2 * BLOCK))):
        receivers.connect()
        tracked += timed_saves(profile, BLOCK, number)
        number += BLOCK
        receivers.disconnect_source()
        untracked += timed_saves(profile, BLOCK, number)
        number += BLOCK
    receivers.connect()
    result = {
        "tracked_us": statistics.median(tracked) * 1e6,
        "untracked_us": statistics.median(untracked) * 1e6,
        "saves": len(tracked) + len(untracked),
    }
    result["ratio"] = result["tracked_us"] / result["untracked_us"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
