"""The benchmarks still run (a tiny N, no timing asserted): they must not rot."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.django.helpers import REPO

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,  # the Celery engine of the drain
    # The runner is a process of its own with bench/settings.py, always on psycopg 3: in
    # the psycopg2 pass it would only run the psycopg 3 pass's test again.
    pytest.mark.skipif(
        os.environ.get("TEST_PG_DRIVER") == "psycopg2",
        reason="the benchmarks run on psycopg 3 (bench/settings.py): the psycopg 3 pass runs them",
    ),
]


def test_the_benchmark_runner_completes_and_reports_every_part(tmp_path):
    out = tmp_path / "smoke.md"
    env = dict(os.environ, BENCH_DB="tracking_bench_smoke")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--n", "300", "--repeat", "1", "--saves", "200",
         "--engines", "deliver_events,celery,db_worker", "--workers", "2", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    for name in (
        "baseline-careful",
        "project",
        "project-1-process",
        "segment",
        "segment-1-process",
        "floor",
    ):
        assert report["backfill"][name]["lost"] == 0, name
        assert report["backfill"][name]["duplicates"] == 0, name
        assert report["backfill"][name]["cpu_us_per_event"] > 0, name
    for engine in ("deliver_events", "celery", "db_worker"):
        assert report["drain"][f"{engine} x2"]["delivered"] == 300, engine
        assert report["drain"][f"{engine} x2"]["duplicates"] == 0, engine
    assert report["save"]["ratio"] > 0
    # Every run shows the save path's floor next to the project (and django-outbox-pattern
    # where the bench group is installed, or says why not).
    assert {"untracked", "floor", "project"} <= set(report["save"]["ratios"])
    assert "outbox_pattern" in report["save"]["ratios"] or "outbox_pattern" in (
        report["save"].get("skipped", {})
    )
    assert "floor " in out.read_text().split("Save path")[1]

    # The save path's SQL alone (README, "What bounds them"), on the data just seeded.
    sql = subprocess.run(
        [sys.executable, "-m", "bench.savesql", "300"],
        cwd=REPO, env=dict(env, BENCH_ENDPOINT="http://127.0.0.1:9"), capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert sql.returncode == 0, sql.stderr[-3000:]
    medians = json.loads(sql.stdout.strip().splitlines()[-1])["median_us"]
    assert set(medians) == {
        "select_1",
        "floor_insert",
        "record_function",
        "record_unprotected",
        "outbox_insert",
        "ledger_upsert",
    }
    assert all(value > 0 for value in medians.values())
    assert "| project |" in out.read_text()
    assert "segment/project = " in out.read_text()

    # The row pieces timed (README, "What bounds them"): each gives a time per row.
    timed = subprocess.run(
        [sys.executable, "-m", "bench.instructions", "--time", "build", "segment"],
        cwd=REPO, env=dict(env, BENCH_ENDPOINT="http://127.0.0.1:9", PYTHONPATH=str(REPO)),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert timed.returncode == 0, timed.stderr[-3000:]
    per_row = json.loads(timed.stdout.strip().splitlines()[-1])
    assert set(per_row) == {"build", "segment"}
    assert all(value > 0 for value in per_row.values())

    # The instruction counts' save pieces (README, "What bounds them"), run once each
    # without valgrind: the same code the counts run under it.
    from bench.instructions import SAVE_PIECES

    for piece in SAVE_PIECES:
        if piece == "save_outbox_pattern" and not importlib.util.find_spec("django_outbox_pattern"):
            continue  # the bench group's contender: not installed by make test
        run = subprocess.run(
            [sys.executable, "-m", "bench.instructions", "--worker", piece, "1"],
            cwd=REPO, env=dict(env, BENCH_ENDPOINT="http://127.0.0.1:9", PYTHONPATH=str(REPO)),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 0, (piece, run.stderr[-3000:])
