"""Where a one-process backfill spends its time, phase by phase.

``python -m bench.phases [--gc default|raised|off] [--switch default|backfill]
[--sink thrivestack|segment] [--sequential] [--cpu] [--rows N] [--pages]`` runs ``backfill_user_enriched --workers 1 --limit N``
(100,000 by default) in this process over the rows ``bench.run`` seeded (outbox and ledger
emptied first), against a counting receiver
of its own, with timers around the backfill's phases. It prints the wall and CPU time per
event and, per phase, the wall time per event summed over its calls (the reading thread's
phases and the sending thread's overlap, so they add up to more than the wall time).

- ``--gc``: the collector's thresholds during the run: the backfill's own (``raised``),
  Python's (``default``, by pinning them), or none (``off``).
- ``--switch``: the interpreter's thread switch interval during the run: the backfill's own
  (``backfill``, ``BACKFILL_SWITCH_INTERVAL``) or Python's 5 ms (``default``).
- ``--sequential``: send each batch in the reading thread, to see the phases without the
  other thread's share of the GIL.
- ``--cpu``: time each phase by the CPU of the thread that runs it (``time.thread_time``)
  instead of the wall clock: what the phase costs, without the waits for the database, the
  receiver or the other thread.
- ``--pages``: instead, read seven pages of 1,000 rows with Django's cursor and with the
  backfill's row cursor, and print the best time per row of each.
"""

from __future__ import annotations

import argparse
import collections
import functools
import gc
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from bench.run import API_KEY, ROOT, WRITE_KEY

TIMED = [
    ("django_app.backfill", "fetch_tuples", "read rows"),
    ("django_app.backfill.Backfill", "build", "validate (build)"),
    ("django_app.store.base.OutboxStore", "read_ledgers", "read the ledger"),
    ("django_app.backfill.Backfill", "_changed", "choose the changed"),
    ("django_app.backfill.Backfill", "_send", "send and write (sender)"),
    ("django_app.dispatch", "send_events", "  send"),
    ("tracking_adapter.sinks.thrivestack.ThriveStackSink", "post", "    post (ThriveStack)"),
    ("tracking_adapter.sinks.segment.SegmentSink", "post", "    post (Segment)"),
    ("django_app.backfill.Backfill", "_write_ledger", "  write the ledger"),
    ("concurrent.futures.Future", "result", "wait for the sender"),
]


def _resolve(path: str) -> Any:
    module, _, attribute = path.rpartition(".")
    try:
        return __import__(path, fromlist=["_"])
    except ImportError:
        return getattr(__import__(module, fromlist=["_"]), attribute)


def wrap_phases(
    totals: dict[str, float],
    calls: collections.Counter[str],
    clock: Callable[[], float] = time.perf_counter,
) -> None:
    for owner_path, name, label in TIMED:
        owner = _resolve(owner_path)
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, _original: Any = original, _label: str = label, **kwargs: Any) -> Any:
            began = clock()
            try:
                return _original(*args, **kwargs)
            finally:
                totals[_label] += clock() - began
                calls[_label] += 1

        setattr(owner, name, timed)


def pages() -> None:
    from django.db import connection

    from django_app.backfill import Backfill, BackfillOptions
    from django_app.management.commands.backfill_user_enriched import configured_source
    from django_app.store import get_store

    run = Backfill(configured_source(None, "user_enriched"), BackfillOptions(batch_size=1000))
    page = run.queryset().values_list(*(run.columns() or []))[:1000]
    sql, params = page.query.get_compiler(using="default").as_sql()
    cursors = {"Django's cursor": connection.cursor, "row cursor": get_store("default").row_cursor}
    for label, make in cursors.items():
        best = float("inf")
        for _ in range(7):
            began = time.perf_counter()
            with make() as cursor:
                cursor.execute(sql, params)
                cursor.fetchall()
            best = min(best, time.perf_counter() - began)
        print(f"{label}: {best / 1000 * 1e6:.1f} µs per row")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.phases")
    parser.add_argument("--gc", choices=["raised", "default", "off"], default="raised")
    parser.add_argument("--switch", choices=["backfill", "default"], default="backfill")
    parser.add_argument("--sink", choices=["thrivestack", "segment"], default="thrivestack")
    parser.add_argument("--sequential", action="store_true")
    parser.add_argument("--cpu", action="store_true", help="time phases by thread CPU")
    parser.add_argument("--pages", action="store_true")
    parser.add_argument("--rows", type=int, default=100_000, help="rows to backfill (--limit)")
    args = parser.parse_args()

    receiver = subprocess.Popen(
        [sys.executable, "-m", "tracking_adapter.receiver", "--count-only",
         "--api-key", API_KEY, "--write-key", WRITE_KEY],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert receiver.stdout is not None
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bench.settings", BENCH_ENDPOINT=receiver.stdout.readline().strip()
    )
    try:
        import django

        django.setup()
        if args.pages:
            pages()
            return
        run(args)
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)


def run(args: argparse.Namespace) -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.test import override_settings

    from bench import seed
    from django_app import backfill

    seed.clear_outbox()
    count = args.rows
    totals: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter[str] = collections.Counter()
    wrap_phases(totals, calls, time.thread_time if args.cpu else time.perf_counter)
    if args.gc == "default":
        backfill.BACKFILL_GC_THRESHOLDS = gc.get_threshold()
    elif args.gc == "off":
        gc.disable()
    if args.switch == "default":
        backfill.BACKFILL_SWITCH_INTERVAL = None
    if args.sequential:

        def submit(self: ThreadPoolExecutor, fn: Any, /, *fargs: Any, **kwargs: Any) -> Future[Any]:
            future: Future[Any] = Future()
            future.set_result(fn(*fargs, **kwargs))
            return future

        ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]
    tracking = dict(settings.TRACKING_ADAPTER)
    if args.sink == "segment":
        tracking.update(
            SINK="segment",
            SINK_OPTIONS={"write_key": WRITE_KEY, "host": os.environ["BENCH_ENDPOINT"]},
        )
    cpu, began = time.process_time(), time.perf_counter()
    with override_settings(TRACKING_ADAPTER=tracking):
        call_command("backfill_user_enriched", "--workers", "1", "--limit", str(count), verbosity=0)
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    print(
        f"{count:,} rows, gc {args.gc}, switch {args.switch}, {args.sink}{', sequential' if args.sequential else ''}"
        f"{', phases in thread CPU' if args.cpu else ''}: "
        f"{wall / count * 1e6:.1f} µs per event, CPU {cpu / count * 1e6:.1f} µs per event"
    )
    for _, _, label in TIMED:
        if label in totals:
            print(
                f"  {label:26s} {totals[label] / count * 1e6:7.1f} µs per event ({calls[label]} calls)"
            )


if __name__ == "__main__":
    main()
