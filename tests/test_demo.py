"""``make demo`` runs the whole path and reports nothing lost, nothing duplicated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_demo_delivers_every_event_once():
    result = subprocess.run(
        [sys.executable, "-m", "example_project.demo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "summary: 24 users, 3 accounts, 31 events recorded, 31 received by /track, "
        "0 not delivered, 0 duplicates, 0 invalid" in result.stdout
    )
    assert '"event_name": "user_enriched"' in result.stdout
    assert '"event_name": "group_enriched"' in result.stdout
    # The vendor is not the user's email provider (a wrong mapping the demo once taught).
    assert '"enrichment_email_provider": "Clearbit"' not in result.stdout
    assert '"enrichment_vendor": "Clearbit"' in result.stdout


def test_make_demo_installs_only_what_the_demo_needs():
    """The demo's target installs the package and Django, not the development toolset."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    [demo] = [line for line in makefile.splitlines() if line.startswith("demo:")]
    assert demo.split(":", 1)[1].split() == ["$(DEMO_STAMP)"]
    recipe = makefile.split("$(DEMO_STAMP): ", 1)[1].split("\n\n", 1)[0]
    assert '-e ".[django]"' in recipe
    assert "--group" not in recipe
    assert "==>" in recipe  # it says what it is doing
