"""Save path: a tracked ``profile.save()`` against what a user could do instead.

``python -m bench.savepath SAVES``. Each save changes a mapped field and runs in its own
transaction. Contenders, in blocks that rotate so all see the same machine state:

- ``untracked``: the save alone (1.00);
- ``floor``: the save plus one raw-cursor ``INSERT`` of the event's JSON into a jsonb table,
  in a ``post_save`` receiver: the least any outbox can cost;
- ``outbox_pattern``: django-outbox-pattern's ``Published.objects.create`` in ``post_save``
  (skipped, and said so, when the package is not installed: ``pip install --group bench``);
- ``project``: this project (``DISPATCH="worker"``: one call of the record function).
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.db.models.signals import post_save  # noqa: E402

from django_app import receivers  # noqa: E402
from example_project.profiles.models import Profile  # noqa: E402

BLOCK = 100
FLOOR_TABLE = "bench_floor_outbox"
HAS_OUTBOX_PATTERN = importlib.util.find_spec("django_outbox_pattern") is not None


def event_json(profile: Profile) -> str:
    """The JSON a hand-written outbox would store: the ids and the mapped fields."""
    return json.dumps(
        {
            "user_id": profile.user.username,
            "group_id": profile.account.external_id,
            "event_name": "user_enriched",
            "properties": {
                "enrichment_first_name": profile.first_name,
                "enrichment_last_name": profile.last_name,
                "enrichment_city": profile.city,
                "enrichment_employment_title": profile.title,
                "enrichment_employment_name": profile.company,
            },
        }
    )


def floor_receiver(sender: Any, instance: Profile, **_kwargs: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {FLOOR_TABLE} (payload) VALUES (%s)", [event_json(instance)])


def outbox_pattern_receiver(sender: Any, instance: Profile, **_kwargs: Any) -> None:
    from django_outbox_pattern.models import Published

    Published.objects.create(destination="user_enriched", body=json.loads(event_json(instance)))


def timed_saves(profile: Profile, count: int, start: int) -> list[float]:
    timings = []
    for number in range(start, start + count):
        profile.title = f"Title {number}"  # a mapped field: a tracked save records an event
        began = time.perf_counter()
        with transaction.atomic():
            profile.save()
        timings.append(time.perf_counter() - began)
    return timings


def contenders() -> dict[str, tuple[Callable[[], None], Callable[[], None]]]:
    """name -> (set up, tear down) around one block of saves."""

    def with_receiver(receiver: Callable[..., None]) -> tuple[Any, Any]:
        return (
            lambda: post_save.connect(receiver, sender=Profile, weak=False),
            lambda: post_save.disconnect(receiver, sender=Profile),
        )

    nothing = (lambda: None, lambda: None)
    found: dict[str, tuple[Any, Any]] = {
        "untracked": nothing,
        "floor": with_receiver(floor_receiver),
    }
    if HAS_OUTBOX_PATTERN:
        found["outbox_pattern"] = with_receiver(outbox_pattern_receiver)
    found["project"] = (receivers.connect, receivers.disconnect_source)
    return found


def seeded_profile() -> Profile:
    """The profile every contender saves, and the floor's table, made if missing."""
    profile = Profile.objects.select_related("user", "account").order_by("pk").first()
    assert profile is not None, "seed the database first (python -m bench.run)"
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (id bigserial PRIMARY KEY, payload jsonb)"
        )
    return profile


def main() -> None:
    saves = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    profile = seeded_profile()
    if HAS_OUTBOX_PATTERN:
        from django.core.management import call_command

        call_command("migrate", "django_outbox_pattern", verbosity=0)
    receivers.disconnect_source()
    plan = contenders()
    timings: dict[str, list[float]] = {name: [] for name in plan}
    number = 0
    for set_up, tear_down in plan.values():  # warm every path's caches once
        set_up()
        timed_saves(profile, 50, number)
        number += 50
        tear_down()
    for _ in range(max(1, saves // (len(plan) * BLOCK))):
        for name, (set_up, tear_down) in plan.items():
            set_up()
            timings[name] += timed_saves(profile, BLOCK, number)
            number += BLOCK
            tear_down()
    receivers.connect()
    medians = {name: statistics.median(values) * 1e6 for name, values in timings.items()}
    base = medians["untracked"]
    result: dict[str, Any] = {
        "tracked_us": medians["project"],
        "untracked_us": base,
        "saves": sum(len(values) for values in timings.values()),
        "ratio": medians["project"] / base,
        "median_us": medians,
        "ratios": {name: value / base for name, value in medians.items()},
    }
    if not HAS_OUTBOX_PATTERN:
        result["skipped"] = {"outbox_pattern": "django-outbox-pattern is not installed"}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
