"""The benchmarks still run (a tiny N, no timing asserted): they must not rot."""

from __future__ import annotations

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
    assert "| project |" in out.read_text()
    assert "segment/project = " in out.read_text()
