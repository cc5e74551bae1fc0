"""Shared fixtures for the core tests: the spec's samples and JSON Schema validators."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

DATA = Path(__file__).resolve().parent / "data"
REPO = Path(__file__).resolve().parents[2]
# The specs the tests read are vendored in tests/core/data: ThriveStack's published /track
# item schema and spec/group_enriched.md. test_vendored_spec.py compares them with the team's
# shared spec directory (../shared/spec beside the checkout) where that exists.
SHARED_SPEC = REPO.parent / "shared" / "spec"
VENDORED_SPECS = ("thrivestack-track-item.schema.json", "group_enriched.md")
TRACK_ITEM_SCHEMA = DATA / "thrivestack-track-item.schema.json"
GROUP_ENRICHED_SPEC = DATA / "group_enriched.md"

# RFC 3339 date-time (what JSON Schema's "date-time" format means), used when jsonschema's
# optional rfc3339-validator dependency is not installed.
_RFC3339 = re.compile(
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)"
    r"(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)


def load_json(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def format_checker() -> FormatChecker:
    """A FormatChecker that always checks ``date-time`` (jsonschema's own one when available)."""
    checker = FormatChecker()
    if "date-time" not in checker.checkers:
        checker.checks("date-time")(
            lambda value: not isinstance(value, str) or bool(_RFC3339.match(value))
        )
    return checker


def validator_for(schema: dict[str, Any]) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=format_checker())


def schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    return [error.message for error in validator_for(schema).iter_errors(instance)]


@pytest.fixture(scope="session")
def _samples() -> list[dict[str, Any]]:
    return [load_json("spec_sample_1.json"), load_json("spec_sample_2.json")]


@pytest.fixture
def sample_1(_samples) -> dict[str, Any]:
    return copy.deepcopy(_samples[0])


@pytest.fixture
def sample_2(_samples) -> dict[str, Any]:
    return copy.deepcopy(_samples[1])


@pytest.fixture(params=[1, 2], ids=["spec_sample_1", "spec_sample_2"])
def spec_sample(request, _samples) -> dict[str, Any]:
    return copy.deepcopy(_samples[request.param - 1])


@pytest.fixture(scope="session")
def track_item_schema() -> dict[str, Any]:
    return json.loads(TRACK_ITEM_SCHEMA.read_text(encoding="utf-8"))
