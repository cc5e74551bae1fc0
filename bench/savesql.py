"""The save path's SQL alone: what each outbox costs the database, without any Python.

``python -m bench.savesql SAVES``. Each statement runs in its own transaction, timed from
``BEGIN`` to ``COMMIT``, in blocks that rotate so all see the same machine state:

- ``select_1``: ``SELECT 1`` (the round trip itself);
- ``floor_insert``: the save path floor's ``INSERT`` of the event's JSON into a jsonb table
  with a primary key only;
- ``record_function``: this project's record call as ``PostgresStore.record_one`` sends it
  (the ledger check and update and the outbox insert, in its savepoint), for an event whose
  content changed since the last one, as a tracked save's is;
- ``record_unprotected``: the same call without the savepoint, which a failure of the call
  would leave the host's transaction aborted without (what the protection costs);
- ``outbox_insert`` and ``ledger_upsert``: each half of it alone, as a plain statement: the
  outbox row with its indexes (the columns of ``outbox_values``), and the subject's ledger
  entry replaced (the statement a backfill writes entries with, for one entry).

The events are built before the clock starts: the difference between the last two is the
server's work for the ledger and the outbox's indexes, and the round trips it takes.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.savepath import BLOCK, FLOOR_TABLE, event_json, seeded_profile  # noqa: E402
from django_app.api import build_event  # noqa: E402
from django_app.models import OutboxEvent  # noqa: E402
from django_app.store import get_store  # noqa: E402
from django_app.store.base import event_name, outbox_values, subject_of  # noqa: E402
from django_app.store.postgres import PostgresStore  # noqa: E402


def timed(statement: Callable[[int], Any], count: int, start: int) -> list[float]:
    timings = []
    for number in range(start, start + count):
        began = time.perf_counter()
        with transaction.atomic():
            statement(number)
        timings.append(time.perf_counter() - began)
    return timings


STATEMENTS = 6  # in the plan below


def main() -> None:
    saves = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    profile = seeded_profile()
    store = get_store("default")
    assert isinstance(store, PostgresStore), "bench.settings uses PostgreSQL"
    payload = event_json(profile)
    rounds = max(1, saves // (STATEMENTS * BLOCK))
    total = (50 + rounds * BLOCK) * STATEMENTS
    events = []
    for number in range(total):  # a new content each time, as a tracked save records
        profile.title = f"Title {number}"
        events.append(build_event(profile))

    def select_1(number: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def floor_insert(number: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {FLOOR_TABLE} (payload) VALUES (%s)", [payload])

    def record_function(number: int) -> None:
        store.record_one(events[number])

    def record_unprotected(number: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(*store.record_call(events[number]))
            cursor.fetchone()

    def outbox_insert(number: int) -> None:
        event = events[number]
        values = outbox_values(event, event.content_hash(), timezone.now(), None)
        values["message_id"] = f"bench-{uuid.uuid4()}"  # the ids of record_function's rows
        table = connection.ops.quote_name(OutboxEvent._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join(['%s'] * len(values))})",
                list(values.values()),
            )

    def ledger_upsert(number: int) -> None:
        event = events[number]
        entry = (subject_of(event), event.content_hash(), event.message_id)
        store._upsert_ledger([entry], timezone.now(), event_name(event), only_new=False)

    plan = {
        "select_1": select_1,
        "floor_insert": floor_insert,
        "record_function": record_function,
        "record_unprotected": record_unprotected,
        "outbox_insert": outbox_insert,
        "ledger_upsert": ledger_upsert,
    }
    assert len(plan) == STATEMENTS
    timings: dict[str, list[float]] = {name: [] for name in plan}
    number = 0
    for statement in plan.values():  # warm each path once (plans, the function's cache)
        timed(statement, 50, number)
        number += 50
    for _ in range(rounds):
        for name, statement in plan.items():
            timings[name] += timed(statement, BLOCK, number)
            number += BLOCK
    medians = {name: statistics.median(values) * 1e6 for name, values in timings.items()}
    print(json.dumps({"transactions": sum(map(len, timings.values())), "median_us": medians}))


if __name__ == "__main__":
    main()
