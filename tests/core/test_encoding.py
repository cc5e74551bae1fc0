"""tracking_adapter.encoding: the fast encoders give the plain model's bytes, exactly."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pydantic
import pydantic_core
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracking_adapter import (
    GROUP_PROPERTY_NAMES,
    PROPERTY_NAMES,
    EnrichmentProperties,
    GroupEnrichedEvent,
    GroupEnrichmentProperties,
    UserEnrichedEvent,
    encoding,
)
from tracking_adapter.encoding import (
    ascii_json,
    compact_json,
    dumps,
    event_json,
    properties_text,
    segment_message,
    thrivestack_item,
)
from tracking_adapter.schema import EnrichedEvent, PropertiesBase


def plain(event: EnrichedEvent) -> bytes:
    """What the Segment sink sent before the encoder: the official client's encoding."""
    return json.dumps(event.to_segment()).encode("ascii")


# Text the model accepts (no NUL, no lone surrogate), weighted towards what the encoder must
# get right: JSON's separators and quotes inside strings, escapes, format directives (the
# encoder fills a %-template), DEL, characters outside ASCII (accented, U+2028, astral).
_TRICKY = st.sampled_from(
    [",", ":", ", ", '":', ',"', '"', "\\", "%s", "%", "\x7f", "\n", "\t", "\x01", "\x1f",
     "é", "São", "Rhône", "\u2028", "\u00a0", "日本", "😀", "{", "}", "[", "]", "1e5", "true"]
)  # fmt: skip
_CHARACTERS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
_TEXT = st.lists(_TRICKY | st.text(_CHARACTERS, max_size=6), max_size=4).map("".join)
_ID = _TEXT.filter(lambda text: text.strip())
_LEAF = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
_JSON = st.recursive(
    _LEAF,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_TEXT, children, max_size=3),
    max_leaves=8,
)
_EXTRAS = st.dictionaries(st.from_regex(r"custom_[a-z]{1,6}", fullmatch=True), _JSON, max_size=3)
_CONTEXT = st.dictionaries(
    _TEXT.filter(lambda key: key not in ("group_id", "groupId")), _JSON, max_size=3
)
_TIMESTAMPS = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1))


def _value_for(model: Any, name: str) -> st.SearchStrategy[Any]:
    """Values the property ``name`` of ``model`` takes, by the kind of its default."""
    field = model.model_fields[name]
    if field.default_factory is list:
        return st.lists(_TEXT, max_size=3) | _TEXT
    if field.default == "":
        return _TEXT
    if "dict" in str(field.annotation):
        return st.none() | st.dictionaries(_TEXT, _JSON, max_size=3)
    return st.none() | st.integers(min_value=0, max_value=10**12)


@st.composite
def _properties(draw: st.DrawFn, model: Any, names: tuple[str, ...]) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=12))
    values = {name: draw(_value_for(model, name)) for name in chosen}
    return {**values, **draw(_EXTRAS)}


@st.composite
def _events(draw: st.DrawFn, kind: type[EnrichedEvent]) -> EnrichedEvent:
    names = PROPERTY_NAMES if kind is UserEnrichedEvent else GROUP_PROPERTY_NAMES
    return kind(
        user_id=draw(_ID),
        group_id=draw(_ID),
        properties=draw(_properties(kind.PROPERTIES_MODEL, names)),
        context=draw(st.just({}) | _CONTEXT),
        timestamp=draw(_TIMESTAMPS),
        message_id=draw(st.just("") | _ID),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_events(UserEnrichedEvent))
def test_user_enriched_segment_message_is_the_plain_encoding(event):
    assert segment_message(event) == plain(event)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_events(GroupEnrichedEvent))
def test_group_enriched_segment_message_is_the_plain_encoding(event):
    assert segment_message(event) == plain(event)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_events(UserEnrichedEvent) | _events(GroupEnrichedEvent))
def test_the_thrivestack_item_is_the_plain_encoding(event):
    assert thrivestack_item(event) == pydantic_core.to_json(event.to_thrivestack())
    assert event.to_thrivestack_json() == thrivestack_item(event)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_events(UserEnrichedEvent) | _events(GroupEnrichedEvent))
def test_the_stored_event_is_the_models_own_dump(event):
    dumped = {**event.model_dump(mode="json"), "timestamp": event.timestamp_text()}
    assert event_json(event) == pydantic_core.to_json(dumped)
    assert event.to_json() == event_json(event)
    assert type(event).model_validate_json(event_json(event)) == event


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_compact_json_is_pydantics_encoding(value):
    assert compact_json(value) == pydantic_core.to_json(value)


@given(_TEXT)
def test_compact_json_writes_text_as_it_always_did(text):
    """Ids are hashed in this form (the content hash's group id): it must not move."""
    assert compact_json(text) == json.dumps(text, ensure_ascii=False).encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_dumps_is_json_dumps(value):
    assert dumps(value) == json.dumps(value)


@given(_TEXT)
def test_ascii_json_is_json_dumps(text):
    assert ascii_json(text) == json.dumps(text).encode("ascii")


# -- values the model's validation would not have let in: the plain path encodes them --


def _event(**properties: Any) -> UserEnrichedEvent:
    return UserEnrichedEvent(
        user_id="u1",
        group_id="g1",
        properties=properties,
        timestamp=datetime(2024, 1, 1, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"enrichment_city": 12},  # not a string
        {"enrichment_city": None},
        {"enrichment_phone": "+1 555"},  # a string where a list belongs
        {"enrichment_phone": ("+1", "+2")},  # a tuple: a list in JSON
        {"enrichment_phone": ["+1", 2]},
    ],
)
def test_fields_set_past_validation_are_encoded_as_the_plain_path_does(fields):
    event = _event()
    properties = EnrichmentProperties.model_construct(**{**event.properties.__dict__, **fields})
    event.__dict__["properties"] = properties
    assert properties_text(properties) == json.dumps(properties.to_wire())
    assert segment_message(event) == plain(event)


@pytest.mark.parametrize(
    "text",
    ["Pune", "", "a, b: c", "%s %d", '"quoted"', "back\\slash", "\\u0000", "tab\tnew\nline",
     "\x1f", "\x7f", "é", "\u2028", "😀", "\x00"],
)  # fmt: skip
def test_texts_go_in_as_they_are_only_when_they_need_no_escape(text):
    """Printable ASCII without a quote or backslash is put between the keys as it is; any
    other text in any field makes every field take the escaper (a NUL, set past
    validation, included)."""
    event = _event(enrichment_phone=["+1", "+2"], enrichment_industry="Retail")
    values = {**event.properties.__dict__, "enrichment_city": text, "enrichment_tech": "x"}
    properties = EnrichmentProperties.model_construct(**values)
    event.__dict__["properties"] = properties
    assert properties_text(properties) == json.dumps(properties.to_wire())
    assert segment_message(event) == plain(event)


def test_a_field_missing_from_the_instance_is_the_plain_paths_error():
    properties = EnrichmentProperties.model_construct()
    del properties.__dict__["enrichment_city"]
    with pytest.raises(KeyError):
        properties.to_wire()
    with pytest.raises(KeyError):
        properties_text(properties)


def test_an_extra_named_like_a_field_merges_as_the_plain_dict_does():
    properties = EnrichmentProperties(enrichment_city="Pune", custom_x=1)
    properties.__pydantic_extra__ = {"enrichment_city": "Lyon", "custom_x": 1}
    assert properties_text(properties) == json.dumps(properties.to_wire())


def test_values_changed_in_place_are_encoded_as_they_are_now():
    event = _event(enrichment_phone=["+1"], custom_tags=["a"])
    before = segment_message(event)
    event.properties.enrichment_phone.append("+2")  # no assignment: no cache knows
    event.properties.__pydantic_extra__["custom_tags"].append("é")
    assert segment_message(event) == plain(event) != before


def test_properties_replaced_are_encoded_anew():
    event = GroupEnrichedEvent(user_id="u", group_id="g")
    first = segment_message(event)
    event.properties.name = "Initech"
    assert segment_message(event) == plain(event) != first
    event.properties = GroupEnrichmentProperties(name="Acme", custom_x=[1, "é", 1.5e-7])
    assert segment_message(event) == plain(event)


# -- kinds of our own: their own forms are respected --


def test_a_kind_that_changes_to_segment_is_encoded_the_plain_way():
    class Renamed(UserEnrichedEvent):
        def to_segment(self) -> dict[str, Any]:
            return {**super().to_segment(), "event": "renamed"}

    event = Renamed(user_id="u", group_id="g", properties={"enrichment_city": "Pune"})
    assert segment_message(event) == plain(event)
    assert b'"event": "renamed"' in segment_message(event)


def test_a_model_that_changes_to_wire_is_encoded_the_plain_way():
    class Upper(EnrichmentProperties):
        def to_wire(self) -> dict[str, Any]:
            return {name: str(value).upper() for name, value in super().to_wire().items()}

    properties = Upper(enrichment_city="pune")
    assert properties_text(properties) == json.dumps(properties.to_wire())
    assert '"PUNE"' in properties_text(properties)


@pytest.mark.parametrize("fields", [{}, {"only": (str, "")}, {"n%s": (int, 0), "m": (str, "x")}])
def test_models_of_any_shape_are_encoded_as_the_plain_path_does(fields):
    model = pydantic.create_model("Custom", __base__=PropertiesBase, **fields)
    for properties in (model(), model(custom_extra={"a": [1, 2.5]})):
        assert properties_text(properties) == json.dumps(properties.to_wire())


# -- gzip: the same bytes once decoded, whichever library compresses --

BODIES = st.binary(max_size=4096) | st.text(max_size=2000).map(str.encode)


@pytest.fixture(params=["isal", "zlib"])
def gzip_engine(request, monkeypatch):
    """Each test runs with ISA-L (where installed) and with zlib alone, as on a platform
    without isal's wheels."""
    if request.param == "isal":
        if encoding.gzip_engine() != "isal":
            pytest.skip("isal is not installed here: zlib does all the compression")
    else:
        monkeypatch.setattr(encoding, "_isal", lambda: (None, None))
    assert encoding.gzip_engine() == request.param
    return request.param


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, level=st.sampled_from([0, 1, 2, 3, 6, 9]))
def test_gzip_compress_is_gzip_once_decoded(gzip_engine, body, level):
    compressed = encoding.gzip_compress(body, level)
    assert compressed[:2] == b"\x1f\x8b"  # a gzip member, as Content-Encoding: gzip says
    assert gzip.decompress(compressed) == body
    assert encoding.gzip_decompress(gzip.compress(body)) == body


def test_isal_compresses_at_its_levels_and_zlib_above_them(gzip_engine):
    body = b'{"batch": [' + b", ".join([b'{"type": "track", "userId": "u"}'] * 2000) + b"]}"
    for level in (1, 9):  # ISA-L has levels 0 to 3
        compressed = encoding.gzip_compress(body, level)
        by_zlib = gzip.compress(body, compresslevel=level, mtime=0)
        # The deflate stream and the trailer, after the header (its time and flags).
        assert (compressed[10:] == by_zlib[10:]) is (gzip_engine == "zlib" or level == 9)
        assert len(compressed) < len(body) / 10


def test_gzip_decompress_reads_every_member(gzip_engine):
    assert encoding.gzip_decompress(gzip.compress(b"one ") + gzip.compress(b"two")) == b"one two"


@pytest.mark.parametrize(
    "data",
    [
        b"not gzip",
        gzip.compress(b"x" * 1000)[:-4],
        gzip.compress(b"x" * 1000)[:12] + b"\xff" * 20,
        b"\x1f\x8b",
    ],
    ids=["not-gzip", "cut-short", "corrupt", "header-only"],
)
def test_what_is_not_a_whole_gzip_stream_is_one_error(gzip_engine, data):
    with pytest.raises(gzip.BadGzipFile, match=r"not a whole gzip stream|Not a gzipped file"):
        encoding.gzip_decompress(data)


def test_isal_is_imported_when_first_needed_not_with_the_package():
    script = (
        "import sys, tracking_adapter, tracking_adapter.sinks.segment, tracking_adapter.receiver\n"
        "before = 'isal' in sys.modules\n"
        "from tracking_adapter.encoding import gzip_compress, gzip_engine\n"
        "gzip_compress(b'x', 1)\n"
        "print(before, 'isal' in sys.modules, gzip_engine())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    engine = encoding.gzip_engine()
    assert result.stdout.split() == ["False", str(engine == "isal"), engine]
