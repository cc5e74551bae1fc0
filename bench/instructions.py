"""Instructions per row of the backfill's CPU-bound pieces, counted by valgrind.

``python -m bench.instructions [--time] [PIECE ...]`` (default: all) reads 1,000 of the rows
``bench.run`` seeded, then runs each piece over them under ``valgrind --tool=callgrind``,
once with no batch and once with three: the difference over 3,000 rows is the piece's
instruction count per row, which unlike a time does not depend on what else the machine is
doing (valgrind counts OpenSSL's generic SHA-256 code, not the CPU's SHA instructions: the
hashes count for more than they cost). Needs valgrind (Debian: ``apt-get install
valgrind``).

With ``--time``, the row pieces are timed instead, best of nine in this process, without
valgrind.

Pieces: ``build`` (``Backfill._build``: rows to validated events), ``validate_event``,
``properties`` (``EnrichmentProperties.model_validate`` alone), ``event_given_id`` (the
event with its message id given, so without deriving it), ``derive`` (a new event's
serialisation, content hash and message id), ``to_json`` (the properties' compact JSON),
``segment`` and ``thrivestack`` (each sink's encoding of a validated event), ``choose``
(``Backfill._changed``: the events a batch sends, with the batch before it in flight),
``sink_send`` (the Segment sink's ``send`` of 1,000 events with every request answered at
once: its work besides the wire).

Save pieces, per save rather than per row (``SAVES`` saves a batch, each in its own
transaction, as ``bench.savepath`` times them): ``save_untracked``, ``save_floor``,
``save_outbox_pattern`` and ``save_project``. Only this process's instructions are counted,
not the database server's: what each outbox costs the host's Python, the driver included.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.run import ROOT, WRITE_KEY

BATCHES = 3
ROWS = 1000
SAVES = 200


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    os.environ.setdefault("BENCH_ENDPOINT", "http://127.0.0.1:9")
    import django

    django.setup()


def pieces() -> dict[str, Callable[[], Any]]:
    """The per-row pieces, over 1,000 seeded rows."""
    _setup()
    from django_app.api import validate_event
    from django_app.backfill import Backfill, BackfillOptions, CheckedBatch, fetch_tuples
    from django_app.management.commands.backfill_user_enriched import configured_source
    from tracking_adapter import EnrichmentProperties, UserEnrichedEvent
    from tracking_adapter.encoding import segment_message
    from tracking_adapter.sinks.base import Reply, ReplyKind
    from tracking_adapter.sinks.segment import SegmentSink

    class AnsweredAtOnce(SegmentSink):
        """Every request answered OK at once, without a network: what ``send`` costs
        besides the wire (encoding, splitting, the outcomes)."""

        def post(self, payloads: list[bytes]) -> Reply:
            return Reply(ReplyKind.OK)

    answering = AnsweredAtOnce(WRITE_KEY, "http://127.0.0.1:9")  # never reached

    run = Backfill(configured_source(None, "user_enriched"), BackfillOptions(batch_size=ROWS))
    rows = fetch_tuples(run.queryset().values_list(*(run.columns() or []))[:ROWS])
    names = list(run.source.mapping.properties.fields)  # type: ignore[attr-defined]
    data = [
        {
            "user_id": user_id,
            "group_id": group_id,
            "properties": dict(zip(names, values, strict=True)),
            "context": {},
            "timestamp": timestamp,
        }
        for _, user_id, group_id, timestamp, *values in rows
    ]
    given_id = [{**item, "message_id": "given"} for item in data]
    events = run._build(rows, report=False)
    others = fetch_tuples(run.queryset().values_list(*(run.columns() or []))[ROWS : 2 * ROWS])
    in_flight = run._changed(CheckedBatch(ROWS, run._build(others, report=False), {}, None), None)
    none: frozenset[str] = frozenset()
    return {
        "build": lambda: run._build(rows, report=False),
        "validate_event": lambda: [validate_event(item, excluded=none) for item in data],
        "properties": lambda: [
            EnrichmentProperties.model_validate(item["properties"]) for item in data
        ],
        "event_given_id": lambda: [UserEnrichedEvent.model_validate(item) for item in given_id],
        "derive": lambda: [event._derive_for_new_event() for event in events],
        "to_json": lambda: [event.properties.to_json() for event in events],
        "segment": lambda: [segment_message(event) for event in events],
        "thrivestack": lambda: [event.to_thrivestack_json() for event in events],
        "sink_send": lambda: answering.send(events).outcomes,
        # New users (an empty ledger), the batch before them on the wire.
        "choose": lambda: run._changed(CheckedBatch(ROWS, events, {}, None), in_flight).events,
    }


def save_pieces() -> dict[str, Callable[[], Any]]:
    """Each save contender of ``bench.savepath`` as a piece: ``SAVES`` saves a call."""
    _setup()
    from bench import savepath
    from django_app import receivers

    profile = savepath.seeded_profile()
    receivers.disconnect_source()
    numbers = iter(range(0, 10**9, SAVES))

    def saves(set_up: Callable[[], None], tear_down: Callable[[], None]) -> Callable[[], Any]:
        def run() -> None:
            set_up()
            savepath.timed_saves(profile, SAVES, next(numbers))
            tear_down()

        return run

    return {f"save_{name}": saves(*ends) for name, ends in savepath.contenders().items()}


SAVE_PIECES = ("save_untracked", "save_floor", "save_outbox_pattern", "save_project")
PIECES = (
    "build",
    "validate_event",
    "properties",
    "event_given_id",
    "derive",
    "to_json",
    "segment",
    "thrivestack",
    "choose",
    "sink_send",
    *SAVE_PIECES,
)


def timed(chosen: list[str], repeats: int = 9) -> dict[str, float]:
    """``--time``: each row piece's best time of ``repeats`` over the 1,000 rows, in µs per
    row, in this process: seconds where the counts are instructions (SHA-256 then costs
    what the CPU's own instructions for it cost), and as noisy as the machine."""
    saves = [piece for piece in chosen if piece in SAVE_PIECES]
    if saves:
        raise SystemExit(f"--time times row pieces only, not {', '.join(saves)}")
    available = pieces()
    report = {}
    for piece in chosen:
        work, best, rows = available[piece], float("inf"), 0
        for _ in range(repeats):
            started = time.perf_counter()
            rows = len(work())  # a list, one item per row (fewer than ROWS if fewer seeded)
            best = min(best, time.perf_counter() - started)
        report[piece] = round(best / max(rows, 1) * 1e6, 2)
        print(f"{piece:20s} {report[piece]:10.2f} µs per row", flush=True)
    return report


def counted(piece: str, batches: int) -> int:
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         "-m", "bench.instructions", "--worker", piece, str(batches)],
        cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    for line in result.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split()[-1])
    raise SystemExit(f"valgrind gave no count for {piece}:\n{result.stderr[-2000:]}")


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        piece, batches = sys.argv[2], int(sys.argv[3])
        available = save_pieces() if piece in SAVE_PIECES else pieces()
        if piece not in available:  # save_outbox_pattern without the bench group
            raise SystemExit(f"{piece} needs django-outbox-pattern: pip install --group bench")
        work = available[piece]
        for _ in range(batches):
            work()
        return
    timing = sys.argv[1:2] == ["--time"]
    chosen = sys.argv[1 + timing :] or list(PIECES)
    unknown = set(chosen) - set(PIECES)
    if unknown:
        raise SystemExit(f"unknown pieces {sorted(unknown)}; known: {', '.join(PIECES)}")
    if timing:
        print(json.dumps(timed(chosen)))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    report = {}
    for piece in chosen:
        unit, count = ("save", SAVES) if piece in SAVE_PIECES else ("row", ROWS)
        per_unit = (counted(piece, BATCHES) - counted(piece, 0)) / (BATCHES * count)
        report[piece] = round(per_unit)
        print(f"{piece:20s} {per_unit:10,.0f} instructions per {unit}", flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
