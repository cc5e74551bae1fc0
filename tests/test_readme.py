"""The README's examples run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_core_example_runs_and_delivers_one_valid_event():
    [block] = [b for b in python_blocks() if "from tracking_adapter import UserEnrichedEvent" in b]
    result = subprocess.run(
        [sys.executable, "-c", block], capture_output=True, text=True, check=True, timeout=60
    )
    lines = result.stdout.splitlines()
    assert lines[-1] == "1 delivered"
    assert '"event_name":"user_enriched"' in lines[0]
    assert '"enrichment_city":"San Francisco"' in lines[0]


def test_the_settings_example_is_valid_python_naming_only_known_settings():
    from django_app.conf import DEFAULTS, SOURCE_KEYS

    [block] = [b for b in python_blocks() if "TRACKING_ADAPTER = {" in b]
    namespace: dict = {"INSTALLED_APPS": [], "os": __import__("os")}
    import os

    os.environ.setdefault("THRIVESTACK_API_KEY", "readme-key")
    exec(compile(block, "README settings", "exec"), namespace)
    config = namespace["TRACKING_ADAPTER"]
    assert set(config) <= set(DEFAULTS)
    assert set(config["SOURCE"]) <= set(SOURCE_KEYS)
    assert namespace["INSTALLED_APPS"] == ["django_app"]


def test_the_group_enriched_example_names_only_known_source_keys():
    from django_app.conf import SOURCE_KEYS
    from tracking_adapter import EVENT_TYPES, GROUP_PROPERTY_NAMES

    [block] = [b for b in python_blocks() if 'TRACKING_ADAPTER["SOURCES"] = {' in b]
    namespace: dict = {"TRACKING_ADAPTER": {}}
    exec(compile(block, "README SOURCES", "exec"), namespace)
    sources = namespace["TRACKING_ADAPTER"]["SOURCES"]
    assert set(sources) <= set(EVENT_TYPES)
    group = sources["group_enriched"]
    assert set(group) <= set(SOURCE_KEYS)
    assert set(group["PROPERTIES"]) <= set(GROUP_PROPERTY_NAMES)
