"""What ``manage.py reconcile_user_enriched`` costs when nothing differs (not a test).

    python -m tests.django.reconcile_cost --n 10000 --repeat 5                 # SQLite
    TEST_DATABASE=postgres python -m tests.django.reconcile_cost --n 10000     # PostgreSQL

Creates a throwaway database (the test suite's settings and naming), seeds N enriched
profiles with one-to-one users and a shared account, backfills them (memory sink: the
ledger holds every user, the outbox nothing), then times reconcile: in this process (the
command itself) and as a fresh ``python -m django`` process (what cron pays, start-up
included). Prints medians; the database is dropped at the end.

The test settings' SOURCE takes the user id from a property (``tracking_user_id``), so
rows are read as model instances. ``--field-paths`` maps it from ``user.username``
instead: every path is then a field, and rows are read as tuples (the fast path); it is
timed in process only (a new process would read the test settings' SOURCE).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def seed(count: int) -> None:
    from django.contrib.auth.models import User

    from tests.testapp.models import Account, Profile

    account = Account.objects.create(external_id="acct_cost")
    start = datetime(2024, 3, 1, tzinfo=UTC)
    for offset in range(0, count, 5000):
        numbers = range(offset, min(count, offset + 5000))
        users = User.objects.bulk_create([User(username=f"cost{n}") for n in numbers])
        Profile.objects.bulk_create(
            [
                Profile(
                    user=user,
                    account=account,
                    first_name=f"First{n}",
                    last_name=f"Last{n}",
                    city=f"City {n % 500}",
                    country="IN",
                    company=f"Company {n % 800}",
                    title="Engineer",
                    phone=f"+91 98{n:08d}",
                    enriched_at=start + timedelta(minutes=n),
                )
                for n, user in zip(numbers, users, strict=True)
            ]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="profiles (10000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each kind (5)")
    parser.add_argument(
        "--field-paths", action="store_true", help="USER_ID from user.username (tuples)"
    )
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.pop("TRACKING_TEST_ENDPOINT", None)  # the memory sink
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import override_settings

    from django_app.models import LedgerEntry, OutboxEvent

    if args.field_paths:
        config = settings.TRACKING_ADAPTER
        override_settings(
            TRACKING_ADAPTER={**config, "SOURCE": {**config["SOURCE"], "USER_ID": "user.username"}}
        ).enable()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        seed(args.n)
        call_command("backfill_user_enriched", "--workers", "1", stdout=io.StringIO())
        assert LedgerEntry.objects.count() == args.n
        assert OutboxEvent.objects.count() == 0

        in_process = []
        for _ in range(args.repeat):
            out = io.StringIO()
            started = time.perf_counter()
            call_command("reconcile_user_enriched", stdout=out)
            in_process.append(time.perf_counter() - started)
            assert f"{args.n:,} checked, 0 out of date, 0 recorded" in out.getvalue(), (
                out.getvalue()
            )

        env = dict(os.environ, PYTHONPATH=str(REPO))
        if connection.vendor == "postgresql":
            env.update(TEST_DATABASE="postgres", PGDATABASE=connection.settings_dict["NAME"])
        else:
            env["SQLITE_PATH"] = connection.settings_dict["NAME"]
        command = [sys.executable, "-m", "django", "reconcile_user_enriched"]
        as_process = []
        for _ in range(0 if args.field_paths else args.repeat):
            started = time.perf_counter()
            result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
            as_process.append(time.perf_counter() - started)
            assert result.returncode == 0, result
            assert " 0 recorded" in result.stdout, result

        process = (
            f"{statistics.median(as_process):.3f}s as a new process (start-up included)"
            if as_process
            else "not timed as a new process"
        )
        print(
            f"{connection.vendor}, {'tuples' if args.field_paths else 'instances'}, "
            f"{args.n:,} profiles in step, median of {args.repeat}: "
            f"reconcile {statistics.median(in_process):.3f}s in process "
            f"({args.n / statistics.median(in_process):,.0f} profiles/s), {process}; "
            f"runs: {', '.join(f'{t:.3f}' for t in in_process)}"
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
