"""The benchmark runner: ``make bench`` (or ``python -m bench.run --n 100000 --repeat 3``).

Compares, in one run and on the same data in PostgreSQL (database ``tracking_bench`` on
127.0.0.1:5432, created if missing):

- backfill throughput: the Segment client in a loop (its defaults, and with a queue big
  enough to lose nothing), this project's ``backfill_user_enriched`` with the ThriveStack
  sink (``project``) and with the Segment sink (``segment``, gzip on, to ``/v1/batch``),
  and the floor (raw cursor, same JSON, same batches, no validation, no bookkeeping), each
  delivering to a counting receiver in its own process, with the CPU each side spent;
- the save path (``bench.savepath``): an untracked ``profile.save()``, the same save with
  the floor's outbox, with django-outbox-pattern's, and with this project's;
- the worker drain: one and two ``deliver_events --once`` over pending rows.

Prints a table and writes it to ``bench/results/latest.md`` (and ``.json``). Medians of
``--repeat`` runs; ratios are of medians measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
API_KEY = "bench-api-key"
WRITE_KEY = "bench-write-key"


def ensure_database(name: str) -> None:
    import psycopg

    with psycopg.connect(
        host="127.0.0.1",
        user=os.environ.get("PGUSER", "postgres"),
        dbname="postgres",
        autocommit=True,
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


class Receiver:
    """The counting receiver, in a process of its own so it does not share our GIL."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tracking_adapter.receiver",
                "--count-only",
                "--api-key",
                API_KEY,
                "--write-key",
                WRITE_KEY,
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        self.session = requests.Session()

    def reset(self) -> None:
        self.session.post(f"{self.url}/reset", timeout=10).raise_for_status()

    def stats(self) -> dict[str, int]:
        result: dict[str, int] = self.session.get(f"{self.url}/stats", timeout=10).json()
        return result

    def cpu_seconds(self) -> float:
        """The receiver's user and system CPU so far (Linux ``/proc``; 0 elsewhere)."""
        try:
            with open(f"/proc/{self.process.pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def child(*args: str, env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def receiver_capacity(url: str, seconds: float = 3.0) -> float:
    """Events/s the receiver absorbs from one client posting ready-made 1,000-event bodies."""
    item = {
        "user_id": "user_0000000",
        "event_name": "user_enriched",
        "properties": {f"enrichment_{n}": "x" * 20 for n in range(25)},
        "context": {"group_id": "acct_1"},
        "timestamp": "2024-01-01T00:00:00.000Z",
    }
    session = requests.Session()
    session.headers.update({"x-api-key": API_KEY, "Content-Type": "application/json"})
    sent = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        body = json.dumps([{**item, "user_id": f"cap{sent + n}"} for n in range(1000)]).encode()
        session.post(f"{url}/api/track", data=body, timeout=30).raise_for_status()
        sent += 1000
    return sent / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--n", type=int, default=100_000, help="profiles (default 100,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (median)")
    parser.add_argument(
        "--only",
        default="backfill,save,drain",
        help="comma-separated parts: backfill, save, drain",
    )
    parser.add_argument(
        "--contenders",
        default="baseline-default,baseline-careful,project,project-1-process,segment,"
        "segment-1-process,floor",
        help="backfill contenders to run",
    )
    parser.add_argument("--saves", type=int, default=2000, help="saves for the save-path part")
    parser.add_argument(
        "--engines",
        default="deliver_events",
        help=f"drain engines, comma-separated: {', '.join(DRAIN_ENGINES)}",
    )
    parser.add_argument("--workers", default="1,2", help="drain worker counts, comma-separated")
    parser.add_argument("--out", default=str(RESULTS / "latest.md"))
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    database = os.environ.get("BENCH_DB", "tracking_bench")
    ensure_database(database)

    receiver = Receiver()
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="bench.settings", BENCH_ENDPOINT=receiver.url)
    env["PYTHONPATH"] = str(ROOT)
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    from bench import seed

    call_command("migrate", verbosity=0)
    print(f"seeding {args.n:,} profiles in PostgreSQL ({database}) ...", flush=True)
    seed.reset(args.n)

    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "n": args.n,
        "repeat": args.repeat,
        "machine": f"{os.cpu_count()} cores, {_memory_gb():.0f} GiB, Python {platform.python_version()}",
        "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    try:
        if "backfill" in parts:
            report["receiver_capacity"] = receiver_capacity(receiver.url)
            report["backfill"] = run_backfill(args, receiver, env)
        if "save" in parts:
            seed.clear_outbox()
            report["save"] = child("bench.savepath", str(args.saves), env=env)
        if "drain" in parts:
            report["drain"] = run_drain(args, receiver, env)
    finally:
        receiver.stop()
    text = render(report)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    return 0


def run_backfill(
    args: argparse.Namespace, receiver: Receiver, env: dict[str, str]
) -> dict[str, Any]:
    from bench import seed

    runs: dict[str, list[dict[str, Any]]] = {}
    names = args.contenders.split(",")
    for round_number in range(args.repeat):
        # The first round in the order given, the others shuffled (the same way every
        # run): no contender always runs right after the same other, whose writes
        # PostgreSQL may still be flushing, and none always first or last.
        order = list(names)
        if round_number:
            random.Random(round_number).shuffle(order)
        for name in order:
            seed.clear_outbox()
            seed.checkpoint()
            receiver.reset()
            receiver_cpu = receiver.cpu_seconds()
            database_cpu = seed.server_cpu_seconds()
            result = child("bench.contenders", name, str(args.n), env=env)
            stats = receiver.stats()
            database_after = seed.server_cpu_seconds()
            if database_cpu is not None and database_after is not None:
                result["database_cpu_seconds"] = database_after - database_cpu
            result.update(
                receiver_cpu_seconds=receiver.cpu_seconds() - receiver_cpu,
                received=stats["items"],
                distinct=stats["distinct"],
                duplicates=stats["duplicates"],
                lost=args.n - stats["distinct"],
                events_per_s=stats["distinct"] / result["seconds"],
            )
            runs.setdefault(name, []).append(result)
            print(
                f"  round {round_number + 1}: {name}: {result['events_per_s']:,.0f} events/s, "
                f"CPU {_per_event_us(result, 'cpu_seconds'):.0f} µs/event, "
                f"lost {result['lost']:,}, peak RSS {result['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    summary = {}
    for name, results in runs.items():
        summary[name] = {
            "events_per_s": statistics.median(r["events_per_s"] for r in results),
            "lost": max(r["lost"] for r in results),
            "duplicates": max(r["duplicates"] for r in results),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "workers_peak_rss_mb": max(r.get("workers_peak_rss_mb", 0.0) for r in results),
            "peak_pss_mb": max(r.get("peak_pss_mb", 0.0) for r in results),
            "cpu_us_per_event": statistics.median(_per_event_us(r, "cpu_seconds") for r in results),
            "receiver_cpu_us_per_event": statistics.median(
                _per_event_us(r, "receiver_cpu_seconds") for r in results
            ),
            "database_cpu_us_per_event": statistics.median(
                _per_event_us(r, "database_cpu_seconds") for r in results
            )
            if all("database_cpu_seconds" in r for r in results)
            else None,
            "runs": [round(r["events_per_s"]) for r in results],
        }
    return summary


def _per_event_us(result: dict[str, Any], key: str) -> float:
    """CPU microseconds per delivered event (0 when nothing arrived)."""
    return result.get(key, 0.0) * 1e6 / result["distinct"] if result["distinct"] else 0.0


DRAIN_ENGINES = ("deliver_events", "celery", "db_worker")


def run_drain(args: argparse.Namespace, receiver: Receiver, env: dict[str, str]) -> dict[str, Any]:
    """N pending events drained by 1, 2, 4 workers of each engine: ``deliver_events --once``
    processes, Celery workers (solo pool, Redis) and django-tasks-db ``db_worker``
    processes. The clock starts once the workers are up (the Celery and db_worker runs
    then enqueue one delivery task per worker, each re-enqueueing itself while rows are
    due) and stops when no row is pending; the receiver counts distinct events and
    duplicates."""
    results: dict[str, Any] = {}
    for engine in args.engines.split(","):
        for workers in map(int, args.workers.split(",")):
            _pending_outbox(env)
            receiver.reset()
            seconds = DRAINERS[engine](workers, env)
            stats = receiver.stats()
            results[f"{engine} x{workers}"] = {
                "engine": engine,
                "workers": workers,
                "events_per_s": stats["distinct"] / seconds,
                "delivered": stats["distinct"],
                "duplicates": stats["duplicates"],
                "seconds": seconds,
            }
            print(
                f"  drain, {engine} x{workers}: {stats['distinct'] / seconds:,.0f} events/s, "
                f"{stats['distinct']:,} delivered, {stats['duplicates']} duplicates",
                flush=True,
            )
    return results


def _pending_outbox(env: dict[str, str]) -> None:
    """The outbox holds one pending, due row per profile (recorded, not sent)."""
    from django.db import connection

    from bench import seed

    seed.clear_outbox()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "backfill_user_enriched",
            "--no-deliver",
            "--verbosity",
            "0",
        ],
        cwd=ROOT,
        env=env,
        check=True,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE django_app_outboxevent SET next_attempt_at = now(), claim_token = ''"
        )


def _pending_count() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM django_app_outboxevent WHERE status = 'pending'")
        return int(cursor.fetchone()[0])


def _wait_drained(processes: list[subprocess.Popen[str]], timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while _pending_count():
        for process in processes:
            if process.poll() is not None:
                raise SystemExit(f"a worker exited early:\n{process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise SystemExit("the drain did not finish")
        time.sleep(0.05)


def _start(command: list[str], env: dict[str, str], count: int) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]


def _stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _drain_deliver_events(workers: int, env: dict[str, str]) -> float:
    started = time.perf_counter()
    processes = _start(
        [sys.executable, "-m", "django", "deliver_events", "--once", "--batch-size", "1000"],
        env,
        workers,
    )
    for process in processes:
        _, err = process.communicate()
        if process.returncode:
            raise SystemExit(f"deliver_events failed:\n{err[-3000:]}")
    return time.perf_counter() - started


def _drain_celery(workers: int, env: dict[str, str]) -> float:
    from bench.celery_app import QUEUE, app

    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(QUEUE)
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "bench.celery_app",
        "worker",
        "--pool",
        "solo",
        "-Q",
        QUEUE,
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "WARNING",
    ]
    processes = [
        subprocess.Popen(
            [*command, "-n", f"bench{n}@%h"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(workers)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(app.control.ping(timeout=0.5)) < workers:
            if time.monotonic() > deadline:
                raise SystemExit("the Celery workers did not come up")
        started = time.perf_counter()
        for _ in range(workers):
            app.send_task("django_app.deliver_outbox", queue=QUEUE)
        _wait_drained(processes)
        return time.perf_counter() - started
    finally:
        _stop(processes)


def _drain_db_worker(workers: int, env: dict[str, str]) -> float:
    from django_tasks_db.models import DBTaskResult

    from django_app.django_tasks import configured_task

    DBTaskResult.objects.all().delete()
    processes = _start(
        [sys.executable, "-m", "django", "db_worker", "--no-startup-delay", "--interval", "0.05"],
        env,
        workers,
    )
    try:
        time.sleep(3)  # the workers import Django and poll; there is no ready signal
        started = time.perf_counter()
        for _ in range(workers):
            configured_task().enqueue()
        _wait_drained(processes)
        return time.perf_counter() - started
    finally:
        _stop(processes)


DRAINERS = {
    "deliver_events": _drain_deliver_events,
    "celery": _drain_celery,
    "db_worker": _drain_db_worker,
}


def render(report: dict[str, Any]) -> str:
    lines = [
        f"Benchmark of {report['date']} on {report['machine']}; N = {report['n']:,} profiles "
        f"in PostgreSQL, median of {report['repeat']} run(s).",
        f"Command: `{report['command']}`",
        "",
    ]
    backfill = report.get("backfill")
    if backfill:
        lines += [
            "| backfill contender | events/s | lost | duplicates | CPU µs/event, sender "
            "| CPU µs/event, receiver | CPU µs/event, PostgreSQL | peak RSS MB, main process "
            "| peak RSS MB, largest worker process | peak PSS MB, all processes | runs |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for name, row in backfill.items():
            database = row.get("database_cpu_us_per_event")
            lines.append(
                f"| {name} | {row['events_per_s']:,.0f} | {row['lost']:,} | {row['duplicates']:,} "
                f"| {row.get('cpu_us_per_event', 0.0):.1f} "
                f"| {row.get('receiver_cpu_us_per_event', 0.0):.1f} "
                f"| {'-' if database is None else f'{database:.1f}'} "
                f"| {row['peak_rss_mb']:.0f} | {_workers_rss(row)} | {row['peak_pss_mb']:.0f} "
                f"| {', '.join(f'{r:,}' for r in row['runs'])} |"
            )
        ratios = [
            _ratio_text(backfill, mine, other)
            for mine, other in RATIO_PAIRS
            if backfill.get(mine, {}).get("events_per_s") and other in backfill
        ]
        if ratios:
            lines += ["", "Ratios: " + ", ".join(ratios) + "."]
        lines.append(
            f"Receiver capacity (one client, ready-made bodies): "
            f"{report['receiver_capacity']:,.0f} events/s."
        )
    save = report.get("save")
    if save:
        contenders = ", ".join(
            f"{name} {save['median_us'][name]:,.0f} µs ({ratio:.2f})"
            for name, ratio in save["ratios"].items()
        )
        lines += [
            "",
            f"Save path (median per save, each in its own transaction, {save['saves']:,} saves "
            f"in rotating blocks; ratio to untracked): {contenders}.",
        ]
        for name, reason in save.get("skipped", {}).items():
            lines.append(f"Not run: {name} ({reason}).")
    drain = report.get("drain")
    if drain:
        lines += [
            "",
            "| drain | workers | events/s | seconds | delivered | duplicates |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in drain.values():
            lines.append(
                f"| {row['engine']} | {row['workers']} | {row['events_per_s']:,.0f} "
                f"| {row['seconds']:.1f} | {row['delivered']:,} | {row['duplicates']:,} |"
            )
    return "\n".join(lines) + "\n"


# The ratios the goals read. The Segment sink against the ThriveStack one: the same command,
# rows and run.
RATIO_PAIRS = [
    ("project", "baseline-careful"),
    ("project", "floor"),
    ("project-1-process", "baseline-careful"),
    ("project-1-process", "floor"),
    ("segment", "project"),
    ("segment-1-process", "project-1-process"),
]


def _ratio_text(backfill: dict[str, Any], mine: str, other: str) -> str:
    """``mine/other`` of the median events/s, and, over several rounds, the range of the
    rounds' own ratios: the two contenders of a round run minutes apart, so their ratio
    moves less with the machine's speed than either median does."""
    text = (
        f"{mine}/{other} = {backfill[mine]['events_per_s'] / backfill[other]['events_per_s']:.2f}"
    )
    pairs = zip(backfill[mine]["runs"], backfill[other]["runs"], strict=True)
    rounds = [a / b for a, b in pairs if b]
    if len(rounds) > 1:
        text += f" (rounds {min(rounds):.2f} to {max(rounds):.2f})"
    return text


def _workers_rss(row: dict[str, Any]) -> str:
    peak = row.get("workers_peak_rss_mb", 0.0)
    return f"{peak:.0f}" if peak else "-"


def _memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return 0.0


if __name__ == "__main__":
    sys.exit(main())
