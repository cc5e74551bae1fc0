"""bench.run's ratios: the medians' ratio, and the range of the rounds' own ratios."""

from __future__ import annotations

from bench.run import _ratio_text


def test_a_ratio_over_several_rounds_shows_the_range_of_each_rounds_ratio():
    backfill = {
        "segment": {"events_per_s": 90.0, "runs": [80, 90, 120]},
        "project": {"events_per_s": 100.0, "runs": [100, 100, 100]},
    }
    assert _ratio_text(backfill, "segment", "project") == (
        "segment/project = 0.90 (rounds 0.80 to 1.20)"
    )


def test_a_ratio_of_one_round_is_the_ratio_alone():
    backfill = {
        "segment": {"events_per_s": 90.0, "runs": [90]},
        "project": {"events_per_s": 100.0, "runs": [100]},
    }
    assert _ratio_text(backfill, "segment", "project") == "segment/project = 0.90"
