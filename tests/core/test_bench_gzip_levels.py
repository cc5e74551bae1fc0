"""bench.gzip_levels, the source of the Segment sink's GZIP_LEVEL figures, still runs."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

from tracking_adapter.sinks.segment import GZIP_LEVEL

REPO = Path(__file__).resolve().parents[2]


def test_the_gzip_levels_benchmark_reports_each_level():
    result = subprocess.run(
        [sys.executable, "-m", "bench.gzip_levels", "600"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    shares = [report["levels"][level]["share_of_body"] for level in ("1", "6", "9")]
    assert 0 < shares[2] <= shares[1] <= shares[0] < 0.5  # more effort, smaller bodies
    assert report["requests"] >= 2  # the batches are cut at the sink's byte limit
    # The sink's own compressor, ISA-L where isal is installed, at the sink's level.
    engine = "isal" if find_spec("isal") else "zlib"
    assert report["sink"] == {"level": GZIP_LEVEL, "engine": engine}
    assert 0 < report["levels"]["sink"]["share_of_body"] < 0.5
