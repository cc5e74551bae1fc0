"""Chaos runner: outbox workers killed with SIGKILL at random moments must lose nothing.

    python -m tests.chaos --events 20000 --kills 5          # SIGKILL chaos
    python -m tests.chaos --concurrency --events 20000      # 4 workers racing a busy host app

It creates its own PostgreSQL database (``tracking_chaos`` on 127.0.0.1:5432, user
postgres; ``--database`` to change), migrates it with ``DJANGO_SETTINGS_MODULE=tests.settings``,
``TEST_DATABASE=postgres`` and ``PGDATABASE=<database>``, fills the outbox with N pending
events, starts ``python -m django deliver_events`` workers against a real
``LoopbackReceiver`` and, in chaos mode, kills one with SIGKILL each time the receiver has
taken a random share of the events (plus a random few milliseconds, so the kill lands
anywhere in a batch: before the send, during it, after it but before the settle), starting
a new worker each time. Killed workers' batches come back when their lease runs out
(``--lease`` seconds). The report is JSON on stdout: delivered, lost, duplicates, wall time;
the exit status is 1 if anything was lost, left pending or dead, if a worker crashed, or
(in concurrency mode, where nobody dies) if anything arrived twice.

The test suite runs the short form (1,000 events, 2 kills) on its own test database, and a
smaller concurrency test of its own (tests/django/test_faults.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
# A worker asked to stop exits 0; one still importing Django has no handler yet and dies of
# the SIGTERM itself. Anything else (1: it crashed) is a failure.
CLEAN_EXITS = (0, -signal.SIGTERM)


# -- the pieces shared by the long form and the suite's short form -------------------------


class Workers:
    """``deliver_events`` subprocesses on one database, which may be killed and replaced."""

    def __init__(self, env: dict[str, str], batch_size: int, lease: float) -> None:
        self.env = {**env, "TRACKING_TEST_LEASE_SECONDS": str(lease)}
        self.batch_size = batch_size
        self.procs: list[tuple[subprocess.Popen[bytes], IO[bytes], IO[bytes]]] = []
        self.killed: list[tuple[subprocess.Popen[bytes], IO[bytes], IO[bytes]]] = []
        self.started: dict[int, float] = {}

    def start(self) -> None:
        # Files, not pipes: a pipe nobody reads could fill up and stall a worker. Closed in stop().
        out = tempfile.TemporaryFile()  # noqa: SIM115
        err = tempfile.TemporaryFile()  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "django",
                "deliver_events",
                "--batch-size",
                str(self.batch_size),
                "--poll-interval",
                "0.1",
            ],
            env=self.env,
            cwd=REPO,
            stdout=out,
            stderr=err,
        )
        self.procs.append((proc, out, err))
        self.started[proc.pid] = time.monotonic()

    def kill_one(self, rng: random.Random, warm: float = 1.5) -> int:
        """SIGKILL a random worker among those past their start-up (``warm`` seconds, the
        time to import Django), so the kill lands while it works, not while it boots."""
        _wait(lambda: any(self._age(p) >= warm for p, _o, _e in self.procs), warm + 1)
        ready = [i for i, (p, _o, _e) in enumerate(self.procs) if self._age(p) >= warm]
        index = rng.choice(ready or range(len(self.procs)))
        entry = self.procs.pop(index)
        entry[0].send_signal(signal.SIGKILL)
        entry[0].wait(timeout=10)
        self.killed.append(entry)
        return entry[0].pid

    def _age(self, proc: subprocess.Popen[bytes]) -> float:
        return time.monotonic() - self.started[proc.pid]

    def stop(self) -> list[dict[str, Any]]:
        """SIGTERM the live workers; their exit status and output, for the report."""
        for proc, _out, _err in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        results = []
        for proc, out, err in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            out.seek(0)
            err.seek(0)
            results.append(
                {
                    "pid": proc.pid,
                    "returncode": proc.returncode,
                    "stdout": out.read().decode(errors="replace").strip()[-500:],
                    "stderr": err.read().decode(errors="replace").strip()[-2000:],
                }
            )
            out.close()
            err.close()
        for _proc, out, err in self.killed:
            out.close()
            err.close()
        return results


def worker_environment(database: str, endpoint: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        TEST_DATABASE="postgres",
        PGDATABASE=database,
        TRACKING_TEST_ENDPOINT=endpoint,
        PYTHONPATH=str(REPO),
    )
    return env


def _wait(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def outbox_counts() -> Counter[str]:
    from django_app.models import OutboxEvent

    return Counter(OutboxEvent.objects.values_list("status", flat=True))


def _identity(item: dict[str, Any]) -> str:
    """How the receiver tells /track items apart (they carry no message id): the whole item."""
    return json.dumps(item, sort_keys=True)


def outbox_identities() -> list[str]:
    """The /track item of every outbox row, as the receiver would identify it."""
    from django_app.models import OutboxEvent
    from tracking_adapter import UserEnrichedEvent

    return [
        _identity(
            json.loads(json.dumps(UserEnrichedEvent.model_validate(payload).to_thrivestack()))
        )
        for payload in OutboxEvent.objects.values_list("payload", flat=True).iterator(2000)
    ]


def leased_now() -> int:
    """Pending rows under a live lease: what a kill at this moment leaves in flight."""
    from django.utils import timezone

    from django_app.models import OutboxEvent, Status

    return OutboxEvent.objects.filter(
        status=Status.PENDING, lease_expires_at__gt=timezone.now()
    ).count()


def storm(
    *,
    receiver: Any,
    database: str,
    expected_users: set[str],
    kills: int,
    workers: int,
    batch_size: int,
    lease: float,
    seed: int,
    host_app: Any = None,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """Drain the outbox with ``workers`` workers, SIGKILLing ``kills`` of them on the way.

    ``host_app``: a callable run in this thread while the workers drain (it saves profiles);
    it returns the number of saves. The outbox then also holds the events it recorded.
    """
    from django.db import close_old_connections

    _quiet_resets(receiver)
    rng = random.Random(seed)
    started = time.monotonic()
    total_expected = len(expected_users)
    thresholds = sorted(rng.uniform(0.1, 0.85) * total_expected for _ in range(kills))
    pool = Workers(worker_environment(database, receiver.thrivestack_endpoint), batch_size, lease)
    kill_log: list[dict[str, Any]] = []
    saves = 0
    timed_out = False
    try:
        for _ in range(workers):
            pool.start()
        for threshold in thresholds:
            if not _wait(lambda t=threshold: receiver.item_count >= t, timeout):
                timed_out = True
                break
            time.sleep(rng.uniform(0.0, 0.06))  # anywhere in a batch: before, during, after
            in_flight = leased_now()
            pid = pool.kill_one(rng)
            kill_log.append(
                {
                    "at_items": receiver.item_count,
                    "pid": pid,
                    "leased_rows": in_flight,
                    "seconds": round(time.monotonic() - started, 2),
                }
            )
            pool.start()
        if host_app is not None:
            saves = host_app()
        expected_rows = sum(outbox_counts().values())

        def drained() -> bool:
            close_old_connections()
            counts = outbox_counts()
            return counts.get("pending", 0) == 0 and sum(counts.values()) == expected_rows

        if not timed_out and not _wait(drained, timeout + lease):
            timed_out = True
    finally:
        worker_results = pool.stop()
    wall = time.monotonic() - started
    counts = outbox_counts()
    with receiver._lock:
        received = list(receiver.items)
        duplicates = receiver.duplicate_count
    received_users = {item["user_id"] for item in received}
    arrived = Counter(_identity(item) for item in received)
    never_arrived = sum(1 for identity in outbox_identities() if identity not in arrived)
    return {
        "events": total_expected,
        "kills": len(kill_log),
        "workers": workers,
        "batch_size": batch_size,
        "lease_seconds": lease,
        "seed": seed,
        "host_saves": saves,
        "outbox_rows": sum(counts.values()),
        "delivered": counts.get("delivered", 0),
        "pending": counts.get("pending", 0),
        "dead": counts.get("dead", 0),
        "received_items": len(received),
        "received_distinct": len(arrived),
        # Committed events the receiver never got: pre-filled users missing, or any outbox
        # row (the host app's included) whose /track item never arrived.
        "lost": max(len(expected_users - received_users), never_arrived),
        "duplicates": duplicates,
        "timed_out": timed_out,
        "wall_seconds": round(wall, 2),
        "kill_log": kill_log,
        "delivered_by_surviving_workers": [
            int(r["stdout"].rsplit("delivered ", 1)[-1].split(",")[0])
            if "delivered " in r["stdout"]
            else None
            for r in worker_results
        ],
        "worker_exits": [r["returncode"] for r in worker_results],
        "worker_errors": [r["stderr"] for r in worker_results if r["returncode"] not in (0,)],
    }


def _quiet_resets(receiver: Any) -> None:
    """A killed worker's keep-alive connection is reset under the receiver: expected here,
    so not printed as a traceback (any other error still is)."""
    server = receiver._server
    original = server.handle_error

    def handle_error(request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            original(request, client_address)

    server.handle_error = handle_error


def run_on_current_database(
    *,
    events: int,
    kills: int,
    workers: int = 2,
    batch_size: int = 50,
    lease: float = 1.5,
    latency: float = 0.01,
    seed: int | None = None,
) -> dict[str, Any]:
    """The short form, for the test suite: the current (test) database, already migrated."""
    from django.db import connection

    from tests.django.helpers import pending_rows
    from tracking_adapter.receiver import LoopbackReceiver

    rows = pending_rows(events, prefix="chaos")
    with LoopbackReceiver(api_key="test-api-key", latency=latency) as receiver:
        return storm(
            receiver=receiver,
            database=connection.settings_dict["NAME"],
            expected_users={row.user_id for row in rows},
            kills=kills,
            workers=workers,
            batch_size=batch_size,
            lease=lease,
            seed=random.randrange(1 << 30) if seed is None else seed,
            timeout=60,
        )


# -- the long form -------------------------------------------------------------------------


def create_database(name: str) -> None:
    try:
        import psycopg as driver
        from psycopg import sql
    except ImportError:  # TEST_PG_DRIVER=psycopg2: tests/settings.py hid psycopg 3
        import psycopg2 as driver
        from psycopg2 import sql

    admin = driver.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=os.environ.get("PGPORT", "5432"),
        user=os.environ.get("PGUSER", "postgres"),
        dbname="postgres",
    )
    try:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        admin.close()


def setup_django(database: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["TEST_DATABASE"] = "postgres"
    os.environ["PGDATABASE"] = database
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def host_app_loop(stop_when: Any, limit: int) -> Any:
    """The host app of --concurrency: profile saves in transactions until the workers are done."""

    def run() -> int:
        from django.db import transaction

        from tests.django.helpers import make_profile

        profiles = [make_profile(city="Start") for _ in range(50)]
        saved = 0
        while saved < limit and not stop_when():
            with transaction.atomic():
                profile = profiles[saved % len(profiles)]
                profile.city = f"City {saved}"
                profile.save()
                if saved % 10 == 0:
                    make_profile(city=f"New {saved}")
            saved += 1
        return saved

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument(
        "--workers", type=int, default=None, help="default 2, or 4 with --concurrency"
    )
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--lease", type=float, default=3.0, help="LEASE_SECONDS of the workers")
    parser.add_argument("--latency", type=float, default=0.01, help="receiver delay per request")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--database", default="tracking_chaos")
    parser.add_argument(
        "--concurrency",
        action="store_true",
        help="no kills: 4 workers drain while this process saves profiles; nothing may arrive twice",
    )
    parser.add_argument("--saves", type=int, default=2000, help="host-app saves with --concurrency")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args(argv)
    seed = random.randrange(1 << 30) if args.seed is None else args.seed
    workers = args.workers or (4 if args.concurrency else 2)
    kills = 0 if args.concurrency else args.kills

    create_database(args.database)
    setup_django(args.database)
    from tests.django.helpers import pending_rows
    from tracking_adapter.receiver import LoopbackReceiver

    fill_started = time.monotonic()
    expected = {row.user_id for row in pending_rows(args.events, prefix="chaos")}
    fill_seconds = time.monotonic() - fill_started
    with LoopbackReceiver(api_key="test-api-key", latency=args.latency) as receiver:
        host_app = None
        if args.concurrency:  # saves go on until the workers have taken the pre-filled events
            host_app = host_app_loop(lambda: receiver.item_count >= args.events, args.saves)
        report = storm(
            receiver=receiver,
            database=args.database,
            expected_users=expected,
            kills=kills,
            workers=workers,
            batch_size=args.batch_size,
            lease=args.lease,
            seed=seed,
            host_app=host_app,
            timeout=max(120.0, args.events / 100),
        )
    report["mode"] = "concurrency" if args.concurrency else "sigkill"
    report["fill_seconds"] = round(fill_seconds, 2)
    if not args.keep_database:
        from django.db import connections

        connections.close_all()
        create_database(args.database)  # leave an empty database, not N rows
    print(json.dumps(report, indent=2))
    failed = (
        report["lost"]
        or report["pending"]
        or report["dead"]
        or report["timed_out"]
        or report["delivered"] != report["outbox_rows"]
        or (args.concurrency and report["duplicates"])
        or any(code not in CLEAN_EXITS for code in report["worker_exits"])
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
