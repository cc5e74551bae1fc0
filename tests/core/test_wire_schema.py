"""The printed JSON Schema accepts exactly what the model accepts, for every event kind.

Both sides get the same parsed JSON (``json.loads`` of ``json.dumps``). The only allowed
disagreements are the two the schema's ``$comment`` names: nesting deeper than
``MAX_NESTING`` levels and a date-time whose UTC instant falls outside years 1-9999; there
the model refuses and the schema cannot.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from tests.core.conftest import REPO
from tracking_adapter.schema import (
    EVENT_TYPES,
    GROUP_PROPERTY_NAMES,
    ID_PATTERN,
    MAX_NESTING,
    PROPERTY_NAMES,
    TEXT_PATTERN,
    TIMESTAMP_PATTERN,
    EnrichedEvent,
    GroupEnrichedEvent,
    UserEnrichedEvent,
)
from tracking_adapter.wire_schema import event_json_schema

EVENT_CLASSES: tuple[type[EnrichedEvent], ...] = (UserEnrichedEvent, GroupEnrichedEvent)
FORMAT_CHECKER = Draft202012Validator.FORMAT_CHECKER
SPEC_GROUP_ENRICHED = REPO.parent / "shared" / "spec" / "group_enriched.md"

# spec/group_enriched.md's table (names in its order, types as published).
GROUP_SPEC_TYPES: dict[str, str] = {
    "enrichment_annual_revenue": "string",
    "enrichment_city": "string",
    "enrichment_country": "string",
    "enrichment_country_code": "string",
    "enrichment_crunchbase_handle": "string",
    "enrichment_description": "string",
    "enrichment_domain": "string",
    "enrichment_domain_aliases": "object",
    "enrichment_email_addresses": "array",
    "enrichment_email_provider": "string",
    "enrichment_employees": "integer",
    "enrichment_employees_range": "string",
    "enrichment_facebook_handle": "string",
    "enrichment_founder_year": "integer",
    "enrichment_industry": "string",
    "enrichment_industry_group": "string",
    "enrichment_legal_name": "string",
    "enrichment_location": "string",
    "enrichment_logo": "string",
    "enrichment_market_cap": "string",
    "enrichment_name": "string",
    "enrichment_phone": "string",
    "enrichment_phone_numbers": "array",
    "enrichment_postal_code": "string",
    "enrichment_raised": "string",
    "enrichment_sector": "string",
    "enrichment_state": "string",
    "enrichment_state_code": "string",
    "enrichment_street_address": "string",
    "enrichment_street_name": "string",
    "enrichment_street_number": "string",
    "enrichment_sub_industry": "string",
    "enrichment_tags": "array",
    "enrichment_tech": "string",
    "enrichment_tech_categories": "array",
    "enrichment_time_zone": "string",
    "enrichment_traffic_rank": "string",
    "enrichment_twitter_handle": "string",
    "enrichment_type": "string",
    "group_type": "string",
    "name": "string",
    "planId": "string",
    "planName": "string",
}
USER_SPEC_TYPES: dict[str, str] = {
    name: "array" if name == "enrichment_phone" else "string" for name in PROPERTY_NAMES
}
SPEC_TYPES: dict[type[EnrichedEvent], dict[str, str]] = {
    UserEnrichedEvent: USER_SPEC_TYPES,
    GroupEnrichedEvent: GROUP_SPEC_TYPES,
}
# What each published type accepts on input (null is the default; one string is a list).
WIRE_TYPES = {
    "string": {"string", "null"},
    "array": {"array", "string", "null"},
    "integer": {"integer", "null"},
    "object": {"object", "null"},
}


@cache
def validator(event_class: type[EnrichedEvent]) -> Draft202012Validator:
    # Without rfc3339-validator jsonschema skips "date-time" silently, and the schema would
    # accept 2023-02-30: fail loudly instead (it is in the test dependency group).
    assert not FORMAT_CHECKER.conforms("2023-02-30T00:00:00Z", "date-time"), (
        "jsonschema's date-time check is unavailable: install rfc3339-validator"
    )
    schema = event_json_schema(event_class)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FORMAT_CHECKER)


def model_errors(event_class: type[EnrichedEvent], document: Any) -> list[str]:
    try:
        event_class.model_validate(document)
    except ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return []


def schema_errors(event_class: type[EnrichedEvent], document: Any) -> list[str]:
    return [
        f"{error.json_path}: {error.message}"[:300]
        for error in validator(event_class).iter_errors(document)
    ]


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)


def _utc_out_of_range(text: str) -> bool:
    """A well-formed RFC 3339 date-time whose UTC instant is before year 1 or after 9999."""
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        return False
    year, month, day, hour, minute, second, sign, off_h, off_m = match.groups()
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        return False
    if not sign:
        return False
    offset = timedelta(hours=int(off_h), minutes=int(off_m))
    try:
        local - offset if sign == "+" else local + offset
    except OverflowError:
        return True
    return False


def documented_gap(document: Any) -> str | None:
    """Which of the schema's two stated gaps (its ``$comment``) the document falls in."""
    if _depth(document) > MAX_NESTING:
        return "nesting"
    if (
        isinstance(document, dict)
        and isinstance(document.get("timestamp"), str)
        and _utc_out_of_range(document["timestamp"])
    ):
        return "UTC instant outside years 1-9999"
    return None


def as_parsed_json(document: Any) -> Any:
    return json.loads(json.dumps(document))


def assert_agreement(event_class: type[EnrichedEvent], document: Any) -> bool:
    """The model's verdict is the schema's; returns it."""
    by_model = model_errors(event_class, document)
    gap = documented_gap(document)
    if gap is not None:
        assert by_model, f"{gap}: the model must refuse {document!r:.300}"
        return False
    if validator(event_class).is_valid(document) is not bool(by_model):
        return not by_model  # agreed (the errors are listed only when they do not)
    by_schema = schema_errors(event_class, document)
    assert bool(by_model) == bool(by_schema), (
        f"{event_class.EVENT_NAME}: model {'refuses' if by_model else 'accepts'}, schema "
        f"{'refuses' if by_schema else 'accepts'} {document!r:.500}\n"
        f"model: {by_model[:3]}\nschema: {by_schema[:3]}"
    )
    return not by_model


# --------------------------------------------------------------------------------------------
# Hand-picked inputs
# --------------------------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "event": "<the event>",
    "user_id": "user_123",
    "properties": {"enrichment_city": "Pune"},
    "context": {"group_id": "account_123"},
    "timestamp": "2023-11-02T00:30:08.276Z",
}
_MISSING = object()


def _case(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    for key, value in changes.items():
        path = key.split("__")
        target = document
        for part in path[:-1]:
            target = target[part]
        if value is _MISSING:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return document


HAND_PICKED: dict[str, tuple[dict[str, Any], bool]] = {
    # The examples (schema and model disagreed on each but the date-only one).
    "blank id": (_case(user_id="  "), False),
    "NUL in id": (_case(user_id="user\x00123"), False),
    "integer id": (_case(user_id=42), True),
    "integer group id": (_case(context__group_id=-7), True),
    "missing properties": (_case(properties=_MISSING), True),
    "empty message_id": (_case(message_id=""), True),
    "date-only timestamp": (_case(timestamp="2023-11-02"), False),
    "phone as a string": (_case(properties={"enrichment_phone": "+91 98765 43210"}), True),
    "lowercase t and z": (_case(timestamp="2023-11-02t00:30:08.276z"), True),
    "NUL in a context key": (_case(context={"group_id": "g", "a\x00": 1}), False),
    # Agreed before, kept agreeing.
    "the spec's sample": (_case(), True),
    "February 30th": (_case(timestamp="2023-02-30T00:30:08Z"), False),
    "group_id twice, equal": (_case(group_id="account_123"), False),
    "both user id spellings": (_case(userId="user_123"), False),
    # More edges.
    "integral float id": (_case(user_id=42.0), True),
    "fractional float id": (_case(user_id=4.2), False),
    "bool id": (_case(user_id=True), False),
    "null properties": (_case(properties=None), True),
    "101-character message_id": (_case(message_id="m" * 101), False),
    "100-character messageId": (_case(messageId="m" * 100), True),
    "lone surrogate in a property": (_case(properties={"enrichment_city": "\ud800"}), False),
    "NUL in an extra's name": (_case(properties={"x\x00": 1}), False),
    "nested extra": (_case(properties={"custom": {"a": [1, 2.5, None, {"b": "c"}]}}), True),
    "Segment type other than track": (_case(type="identify"), False),
    "trailing newline after the zone": (_case(timestamp="2023-11-02T00:30:08Z\n"), False),
    "offset without a colon": (_case(timestamp="2023-11-02T00:30:08+0530"), False),
    "leap second": (_case(timestamp="2016-12-31T23:59:60Z"), False),
    "BOM as the id (not whitespace to Python)": (_case(user_id="\ufeff"), True),
    "unit separator as the id (whitespace to Python)": (_case(user_id="\x1f"), False),
    "no group id": (_case(context={}), False),
    "properties as a list": (_case(properties=[{"enrichment_city": "Pune"}]), False),
    "context as a list": (_case(context=[["group_id", "g"]]), False),
    "timestamp as a number": (_case(timestamp=1698885008276), False),
    "an unknown top-level key": (_case(anonymousId="a1"), False),
}


@pytest.mark.parametrize("event_class", EVENT_CLASSES, ids=lambda c: c.EVENT_NAME)
@pytest.mark.parametrize(("document", "accepted"), HAND_PICKED.values(), ids=list(HAND_PICKED))
def test_hand_picked_inputs(event_class, document, accepted):
    document = as_parsed_json({**document, "event": event_class.EVENT_NAME})
    assert assert_agreement(event_class, document) is accepted


@pytest.mark.parametrize("event_class", EVENT_CLASSES, ids=lambda c: c.EVENT_NAME)
def test_the_other_event_name_is_refused_by_both(event_class):
    other = next(c for c in EVENT_CLASSES if c is not event_class)
    for key in ("event", "event_name"):
        document = {**_case(event=_MISSING), key: other.EVENT_NAME}
        assert assert_agreement(event_class, document) is False


@pytest.mark.parametrize("event_class", EVENT_CLASSES, ids=lambda c: c.EVENT_NAME)
def test_the_documented_gaps_are_refused_by_the_model(event_class):
    deep: Any = "bottom"
    for _ in range(MAX_NESTING + 1):
        deep = [deep]
    for document in (
        _case(event=event_class.EVENT_NAME, context={"group_id": "g", "deep": deep}),
        _case(event=event_class.EVENT_NAME, timestamp="0001-01-01T00:00:00+00:01"),
        _case(event=event_class.EVENT_NAME, timestamp="9999-12-31T23:59:59-00:01"),
    ):
        assert documented_gap(document)
        assert model_errors(event_class, document)
        assert schema_errors(event_class, document) == []  # what JSON Schema cannot say


def test_the_format_check_is_really_on():
    assert not FORMAT_CHECKER.conforms("2023-02-30T00:00:00Z", "date-time")
    assert FORMAT_CHECKER.conforms("2024-02-29t00:00:00z", "date-time")
    assert schema_errors(UserEnrichedEvent, _case(timestamp="2023-02-29T00:00:00Z"))


def test_patterns_mean_the_same_in_python_and_ecma_262():
    # \s, \d, \w and \b differ between the two (Unicode sets in Python, others in ECMA-262);
    # [\s\S] (any character) means the same in both.
    for pattern in (TEXT_PATTERN, ID_PATTERN, TIMESTAMP_PATTERN):
        assert not re.search(r"\\[sSdDwWbB]", pattern.replace("[\\s\\S]", "")), pattern
    # The id rule is str.strip()'s: every character Python calls whitespace, no other.
    blank_id = re.compile(ID_PATTERN)
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if char.isspace() or code in (0xFEFF, 0x180E, 0x200B):
            assert (blank_id.search(char * 2) is None) is char.isspace(), hex(code)


# --------------------------------------------------------------------------------------------
# Generated inputs
# --------------------------------------------------------------------------------------------

ODD_CHARACTERS = (
    "\x00",
    " ",
    "\t",
    "\n",
    "\r",
    "\x0b",
    "\x1f",
    "\x85",
    "\xa0",
    "\u2028",
    "\u3000",
    "\ufeff",
    "\ud800",
    "\udbff",
    "\udc00",
    "\udfff",
    "é",
    "😀",
    "a",
    "T",
    "z",
    "0",
    "-",
    '"',
    "\\",
)
GOOD_TEXT = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=10
)
TEXTS = st.one_of(
    GOOD_TEXT,
    st.text(max_size=10),  # any code point but surrogates: NUL included
    st.text(alphabet=st.sampled_from(ODD_CHARACTERS), max_size=6),
    st.sampled_from(["", " ", "\t\n", "\x00", "Pune", "user_123", "\ud800", "\x1f", "\ufeff"]),
)


def mostly(good: st.SearchStrategy[Any], *bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` seven times in eight, else one of ``bad``. (``st.one_of`` would not do:
    it picks a branch uniformly, and a repeated branch counts once.)"""
    return st.sampled_from([good] * 7 + [st.one_of(*bad)]).flatmap(lambda chosen: chosen)


def _json_values(texts: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        texts,
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)
        ),
        max_leaves=6,
    )


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXTS,
)
JSON_VALUES = _json_values(TEXTS)  # strings and keys anything, NUL and surrogates included
GOOD_JSON_VALUES = _json_values(GOOD_TEXT)


def _nest(depth: int, as_dicts: bool, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = {"k": value} if as_dicts and level % 2 else [value]
    return value


DEEP_VALUES = st.builds(
    _nest, st.integers(MAX_NESTING + 6, MAX_NESTING + 20), st.booleans(), SCALARS
)

GOOD_IDS = st.one_of(
    GOOD_TEXT.filter(str.strip),
    st.integers(-(10**25), 10**25),
    st.integers(-(10**6), 10**6).map(float),
)
IDS = mostly(
    GOOD_IDS,
    TEXTS,
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    JSON_VALUES,
)


@st.composite
def rfc3339(draw: st.DrawFn) -> str:
    """An RFC 3339 date-time, its fields in range; a day past its month's end at times."""
    if draw(st.booleans()):  # a real date, its extremes included (for the UTC range)
        m = draw(
            st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59))
        )
        year, month, day, hour, minute, second = (
            m.year, m.month, m.day, m.hour, m.minute, m.second
        )  # fmt: skip
    else:  # only the format checker knows 2023-02-29 and 2023-04-31 are not dates
        year, month = draw(st.integers(1, 9999)), draw(st.integers(1, 12))
        day = draw(st.one_of(st.integers(1, 28), st.integers(29, 31)))
        hour, minute, second = draw(st.integers(0, 23)), draw(st.integers(0, 59)), 0
    separator = draw(st.sampled_from("Tt"))
    fraction = draw(st.sampled_from(["", ".0", ".276", ".059000", ".123456789"]))
    zone = draw(st.sampled_from(["Z", "z", "+00:00", "-00:00", "+05:30", "-08:00", "+23:59"]))
    return (
        f"{year:04d}-{month:02d}-{day:02d}{separator}"
        f"{hour:02d}:{minute:02d}:{second:02d}{fraction}{zone}"
    )


ODD_TIMESTAMPS = st.sampled_from(
    [
        "2023-11-02",
        "2023-02-29T00:00:00Z",
        "2024-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2000-02-29T12:00:00-01:00",
        "2023-04-31T00:00:00Z",
        "2023-11-02T00:30:08Z\n",
        " 2023-11-02T00:30:08Z",
        "2023-11-02T00:30:60Z",
        "2023-11-02T24:00:00Z",
        "2023-11-02T00:30:08",
        "2023-11-02T00:30:08+0530",
        "2023-11-02T00:30:08+24:00",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+00:01",
        "9999-12-31T23:59:59-00:01",
        "2023-11-02 00:30:08Z",
        "2023-13-01T00:00:00Z",
        "2023-11-02T00:30:08.Z",
        "\uff12\uff10\uff12\uff13-11-02T00:30:08Z",  # fullwidth digits
        "20231102T003008Z",
    ]
)
TIMESTAMPS = mostly(rfc3339(), ODD_TIMESTAMPS, TEXTS, SCALARS)

# Each property's published type, the value kinds it takes (spec tables).
_GOOD_VALUES = {
    "string": st.one_of(GOOD_TEXT, st.none()),
    "array": st.one_of(st.lists(st.one_of(GOOD_TEXT, st.none()), max_size=3), GOOD_TEXT, st.none()),
    "integer": st.one_of(
        st.integers(-(10**20), 10**20), st.integers(-1000, 3000).map(float), st.none()
    ),
    "object": st.one_of(st.none(), st.dictionaries(GOOD_TEXT, GOOD_JSON_VALUES, max_size=3)),
}


def property_values(spec_type: str) -> st.SearchStrategy[Any]:
    return mostly(_GOOD_VALUES[spec_type], TEXTS, JSON_VALUES)


@st.composite
def properties_objects(draw: st.DrawFn, event_class: type[EnrichedEvent]) -> dict[str, Any]:
    types = SPEC_TYPES[event_class]
    names = draw(st.lists(st.sampled_from(list(types)), unique=True, max_size=6))
    properties = {name: draw(property_values(types[name])) for name in names}
    extras = mostly(
        st.dictionaries(GOOD_TEXT, GOOD_JSON_VALUES, max_size=2),
        st.dictionaries(TEXTS, JSON_VALUES, min_size=1, max_size=2),
    )
    for name, value in draw(extras).items():
        properties.setdefault(name, value)
    return properties


MESSAGE_IDS = mostly(
    st.one_of(
        st.just(""),
        GOOD_TEXT,
        # Segment's limit is 100 characters: code points, an astral one counting once.
        st.sampled_from(["m" * 99, "m" * 100, "m" * 101, "😀" * 100, "😀" * 101]),
    ),
    TEXTS,
    SCALARS,
)


@st.composite
def events(draw: st.DrawFn, target: type[EnrichedEvent]) -> dict[str, Any]:
    """An event (mostly of the ``target`` kind) in any of the accepted spellings; mostly
    valid."""
    source = draw(mostly(st.just(target), st.sampled_from(EVENT_CLASSES)))
    document: dict[str, Any] = {}
    event_keys = draw(st.sampled_from([(), ("event",), ("event_name",), ("event", "event_name")]))
    for key in event_keys:
        document[key] = source.EVENT_NAME
    if draw(st.booleans()):
        document["type"] = draw(mostly(st.just("track"), st.sampled_from(["identify", "Track"])))
    document[draw(st.sampled_from(["user_id", "userId"]))] = draw(IDS)
    context = draw(
        mostly(
            st.dictionaries(GOOD_TEXT, GOOD_JSON_VALUES, max_size=2),
            st.dictionaries(TEXTS, JSON_VALUES, min_size=1, max_size=2),
        )
    )
    context.pop("group_id", None)
    context.pop("groupId", None)
    place = draw(st.sampled_from(["group_id", "context.group_id", "context.groupId"]))
    if place == "group_id":
        document["group_id"] = draw(IDS)
    else:
        context[place.removeprefix("context.")] = draw(IDS)
    if context or place != "group_id" or draw(st.booleans()):
        document["context"] = context
    shape = draw(st.sampled_from(["object", "object", "object", "null", "missing"]))
    if shape == "object":
        document["properties"] = draw(properties_objects(source))
    elif shape == "null":
        document["properties"] = None
    if draw(st.integers(0, 3)):
        document["timestamp"] = draw(TIMESTAMPS)
    message_keys = draw(
        st.sampled_from([(), ("message_id",), ("messageId",), ("message_id", "messageId")])
    )
    for message_key in message_keys:
        document[message_key] = draw(MESSAGE_IDS)
    return document


TOP_KEYS = [
    "event",
    "event_name",
    "type",
    "user_id",
    "userId",
    "group_id",
    "groupId",
    "properties",
    "timestamp",
    "context",
    "message_id",
    "messageId",
    "anonymousId",
]
UNKNOWN_KEYS = ["groupId", "anonymousId", "Event", "properties ", "", "integrations"]
# One value of each JSON kind, equally likely (JSON_VALUES leans towards scalars).
ANY_KIND = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXTS,
    st.lists(SCALARS, max_size=2),
    st.dictionaries(GOOD_TEXT, SCALARS, max_size=2),
)
MUTATIONS = [
    "drop",
    "add",
    "retype",
    "retype field",
    "drop property",
    "add property",
    "retype property",
    "context key",
    "context",
    "second group place",
    "both spellings",
    "event name",
    "deep",
    "whole",
]


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any]) -> Any:
    document = copy.deepcopy(document)
    mutation = draw(st.sampled_from(MUTATIONS))
    properties = document.get("properties")
    context = document.get("context")
    if mutation == "drop" and document:
        del document[draw(st.sampled_from(sorted(document)))]
    elif mutation == "add":
        key = draw(st.one_of(st.sampled_from(TOP_KEYS), st.sampled_from(UNKNOWN_KEYS), TEXTS))
        document[key] = draw(st.one_of(IDS, TIMESTAMPS, ANY_KIND))
    elif mutation == "retype" and document:
        key = draw(st.sampled_from(sorted(document)))
        document[key] = draw(st.one_of(IDS, ANY_KIND))
    elif mutation == "retype field":
        key = draw(st.sampled_from(["user_id", "group_id", "properties", "timestamp", "context"]))
        document[key] = draw(ANY_KIND)
    elif mutation == "drop property" and isinstance(properties, dict) and properties:
        del properties[draw(st.sampled_from(sorted(properties)))]
    elif mutation == "add property" and isinstance(properties, dict):
        types = {**USER_SPEC_TYPES, **GROUP_SPEC_TYPES}
        name = draw(st.one_of(st.sampled_from(sorted(types)), TEXTS))
        properties[name] = draw(property_values(types.get(name, "string")))
    elif mutation == "retype property" and isinstance(properties, dict) and properties:
        properties[draw(st.sampled_from(sorted(properties)))] = draw(ANY_KIND)
    elif mutation == "context key" and isinstance(context, dict):
        context[draw(st.one_of(st.sampled_from(["group_id", "groupId"]), TEXTS))] = draw(
            st.one_of(IDS, JSON_VALUES)
        )
    elif mutation == "context":
        document["context"] = draw(ANY_KIND)
    elif mutation == "second group place":
        place = draw(st.sampled_from(["group_id", "context.group_id", "context.groupId"]))
        value = draw(GOOD_IDS)
        if place == "group_id":
            document["group_id"] = value
        else:
            if not isinstance(context, dict):
                context = document["context"] = {}
            context[place.removeprefix("context.")] = value
    elif mutation == "both spellings":
        key = draw(st.sampled_from(["user_id", "userId", "message_id", "messageId"]))
        document[key] = draw(GOOD_IDS if key.startswith("user") else MESSAGE_IDS)
    elif mutation == "event name":
        key = draw(st.sampled_from(["event", "event_name"]))
        document[key] = draw(st.one_of(st.sampled_from(sorted(EVENT_TYPES)), TEXTS, JSON_VALUES))
    elif mutation == "deep":
        target = draw(st.sampled_from(["context", "properties", "top"]))
        deep = draw(DEEP_VALUES)
        if target == "context" and isinstance(context, dict):
            context["deep"] = deep
        elif target == "properties" and isinstance(properties, dict):
            properties[draw(st.sampled_from(["deep", "enrichment_domain_aliases"]))] = {"d": deep}
        else:
            document["deep"] = deep
    elif mutation == "whole":
        return draw(st.one_of(JSON_VALUES, st.lists(st.just(document), max_size=2)))
    return document


@st.composite
def documents(draw: st.DrawFn, target: type[EnrichedEvent]) -> Any:
    document: Any = draw(events(target))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 1, 2, 3]))):
        if isinstance(document, dict):
            document = draw(mutated(document))
    return as_parsed_json(document)


@pytest.mark.parametrize("event_class", EVENT_CLASSES, ids=lambda c: c.EVENT_NAME)
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_the_schema_accepts_exactly_what_the_model_accepts(event_class, data):
    document = data.draw(documents(event_class), label="document")
    assert_agreement(event_class, document)


# --------------------------------------------------------------------------------------------
# The printed schemas
# --------------------------------------------------------------------------------------------


def _types(field_schema: dict[str, Any]) -> set[str]:
    """The JSON types a property's schema admits (its own and its anyOf branches')."""
    found: set[str] = set()
    for part in [field_schema, *field_schema.get("anyOf", [])]:
        kind = part.get("type")
        if kind is not None:
            found.update([kind] if isinstance(kind, str) else kind)
    return found


def _spec_table(path: Any) -> dict[str, str]:
    rows = re.findall(r"^\| (\w+) \| (\w+) \|", path.read_text(encoding="utf-8"), re.MULTILINE)
    return {name: kind for name, kind in rows if name != "property"}


def test_the_spec_table_is_the_one_tested_here():
    if not SPEC_GROUP_ENRICHED.exists():
        pytest.skip(f"{SPEC_GROUP_ENRICHED} is not present")
    assert list(_spec_table(SPEC_GROUP_ENRICHED).items()) == list(GROUP_SPEC_TYPES.items())


def test_schema_command_prints_the_group_enriched_schema():
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8"}
    result = subprocess.run(
        [sys.executable, "-m", "tracking_adapter", "schema", "--event", "group_enriched"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=REPO,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    Draft202012Validator.check_schema(printed)
    assert printed == event_json_schema(GroupEnrichedEvent)
    assert printed["title"] == "group_enriched"
    assert printed["$id"] == "https://tracking-adapter.invalid/schemas/group_enriched.json"
    properties = printed["properties"]["properties"]["properties"]
    assert len(properties) == 43
    assert list(properties) == list(GROUP_SPEC_TYPES) == list(GROUP_PROPERTY_NAMES)
    for name, spec_type in GROUP_SPEC_TYPES.items():
        assert _types(properties[name]) == WIRE_TYPES[spec_type], name
        assert properties[name]["description"]
    assert properties["enrichment_domain_aliases"]["default"] is None
    assert properties["enrichment_tags"]["default"] == []
    assert properties["enrichment_phone"]["default"] == ""


@pytest.mark.parametrize("event_class", EVENT_CLASSES, ids=lambda c: c.EVENT_NAME)
def test_each_schema_names_its_event_and_its_gaps(event_class):
    name = event_class.EVENT_NAME
    schema = event_json_schema(event_class)
    assert schema == event_json_schema(name)
    assert schema["title"] == name
    assert schema["$id"] == f"https://tracking-adapter.invalid/schemas/{name}.json"
    assert schema["properties"]["event"] == schema["properties"]["event_name"] == {"const": name}
    assert str(MAX_NESTING) in schema["$comment"]
    assert "9999" in schema["$comment"]
    assert "json_value" in schema["$defs"]
    properties = schema["properties"]["properties"]["properties"]
    assert {n: _types(s) for n, s in properties.items()} == {
        n: WIRE_TYPES[t] for n, t in SPEC_TYPES[event_class].items()
    }
    assert list(properties) == list(event_class.PROPERTIES_MODEL.model_fields)


def test_user_enriched_is_the_default_and_unknown_names_are_errors():
    assert event_json_schema() == event_json_schema(UserEnrichedEvent)
    assert list(event_json_schema()["properties"]["properties"]["properties"]) == list(
        PROPERTY_NAMES
    )
    with pytest.raises(ValueError, match="unknown event 'signed_up'"):
        event_json_schema("signed_up")


def test_the_schema_is_fresh_each_call():
    first = event_json_schema(GroupEnrichedEvent)
    first["properties"]["properties"]["properties"]["enrichment_tags"]["anyOf"].clear()
    first["$defs"].clear()
    again = event_json_schema(GroupEnrichedEvent)
    assert again["properties"]["properties"]["properties"]["enrichment_tags"]["anyOf"]
    assert again["$defs"]
