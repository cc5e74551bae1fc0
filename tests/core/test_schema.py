"""EnrichmentProperties, UserEnrichedEvent and the wire JSON Schema."""

from __future__ import annotations

import copy
import json
import re
import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.core.conftest import (
    format_checker,
    schema_errors,
)
from tracking_adapter import (
    EVENT_NAME,
    PROPERTY_NAMES,
    EnrichmentProperties,
    GroupEnrichedEvent,
    UserEnrichedEvent,
    format_timestamp,
)
from tracking_adapter.schema import MESSAGE_ID_MAX_LENGTH, TEXT_PROPERTY_NAMES
from tracking_adapter.wire_schema import event_json_schema

SPEC_PROPERTY_ORDER = (
    "enrichment_active_at",
    "enrichment_avatar",
    "enrichment_city",
    "enrichment_country",
    "enrichment_country_code",
    "enrichment_email_provider",
    "enrichment_employment_domain",
    "enrichment_employment_name",
    "enrichment_employment_role",
    "enrichment_employment_seniority",
    "enrichment_employment_sub_role",
    "enrichment_employment_title",
    "enrichment_facebook_handle",
    "enrichment_first_name",
    "enrichment_full_name",
    "enrichment_github_handle",
    "enrichment_inactive_at",
    "enrichment_last_name",
    "enrichment_linkedin_handle",
    "enrichment_location",
    "enrichment_phone",
    "enrichment_state",
    "enrichment_state_code",
    "enrichment_time_zone",
    "enrichment_twitter_handle",
)


def _locs(exc_info: pytest.ExceptionInfo[ValidationError]) -> list[tuple[int | str, ...]]:
    return [tuple(error["loc"]) for error in exc_info.value.errors()]


def _messages(exc_info: pytest.ExceptionInfo[ValidationError]) -> str:
    return " | ".join(error["msg"] for error in exc_info.value.errors())


def _event(**overrides) -> UserEnrichedEvent:
    data = {
        "user_id": "user_123",
        "group_id": "account_123",
        "properties": {"enrichment_city": "Pune", "enrichment_phone": ["+919876543210"]},
        "timestamp": "2023-11-02T00:30:08.276Z",
    }
    data.update(overrides)
    return UserEnrichedEvent.model_validate(data)


# --------------------------------------------------------------------------------------------
# EnrichmentProperties
# --------------------------------------------------------------------------------------------


class TestEnrichmentPropertiesDefaults:
    def test_property_names_are_the_spec_table_in_order(self):
        assert PROPERTY_NAMES == SPEC_PROPERTY_ORDER
        assert len(PROPERTY_NAMES) == 25
        assert tuple(EnrichmentProperties.model_fields) == SPEC_PROPERTY_ORDER

    def test_defaults_are_empty_string_and_empty_phone_list(self):
        props = EnrichmentProperties()
        for name in TEXT_PROPERTY_NAMES:
            assert getattr(props, name) == "", name
        assert props.enrichment_phone == []
        assert props.extra == {}
        wire = props.to_wire()
        assert wire == {name: ([] if name == "enrichment_phone" else "") for name in PROPERTY_NAMES}

    def test_phone_default_is_not_shared_between_instances(self):
        first, second = EnrichmentProperties(), EnrichmentProperties()
        first.enrichment_phone.append("+1")
        assert second.enrichment_phone == []

    @pytest.mark.parametrize("name", PROPERTY_NAMES)
    def test_none_becomes_the_default(self, name):
        props = EnrichmentProperties.model_validate({name: None})
        assert getattr(props, name) == ([] if name == "enrichment_phone" else "")

    @pytest.mark.parametrize("name", TEXT_PROPERTY_NAMES)
    def test_each_text_property_keeps_its_string(self, name):
        props = EnrichmentProperties.model_validate({name: "välue ✓"})
        assert getattr(props, name) == "välue ✓"
        assert props.to_wire()[name] == "välue ✓"


class TestPhone:
    def test_single_string_becomes_one_item_list(self):
        props = EnrichmentProperties(enrichment_phone="+1 415-555-0132")
        assert props.enrichment_phone == ["+1 415-555-0132"]

    def test_blank_single_string_becomes_empty_list(self):
        assert EnrichmentProperties(enrichment_phone="   ").enrichment_phone == []

    def test_none_items_and_blank_items_are_dropped(self):
        props = EnrichmentProperties(enrichment_phone=[None, "+1", None, "", "  ", "+2"])
        assert props.enrichment_phone == ["+1", "+2"]

    def test_tuple_is_accepted(self):
        assert EnrichmentProperties(enrichment_phone=("+1", "+2")).enrichment_phone == ["+1", "+2"]

    def test_int_inside_phone_list_is_an_error_naming_the_property(self):
        with pytest.raises(ValidationError) as exc_info:
            EnrichmentProperties(enrichment_phone=["+1", 4155550132])
        assert _locs(exc_info) == [("enrichment_phone",)]
        assert "item 1" in _messages(exc_info)

    @pytest.mark.parametrize("value", [4155550132, {"number": "+1"}, 1.5, True, b"+1"])
    def test_non_list_phone_is_an_error_naming_the_property(self, value):
        with pytest.raises(ValidationError) as exc_info:
            EnrichmentProperties(enrichment_phone=value)
        assert _locs(exc_info) == [("enrichment_phone",)]

    def test_surrogate_in_phone_is_rejected(self):
        with pytest.raises(ValidationError) as exc_info:
            EnrichmentProperties(enrichment_phone=["+1\udc80"])
        assert _locs(exc_info) == [("enrichment_phone",)]

    def test_to_wire_phone_list_is_a_copy(self):
        props = EnrichmentProperties(enrichment_phone=["+1"])
        props.to_wire()["enrichment_phone"].append("+2")
        assert props.enrichment_phone == ["+1"]


class TestWrongTypes:
    @pytest.mark.parametrize(
        "value",
        [42, 1.5, True, False, {"city": "Pune"}, ["Pune"], b"Pune", date(2023, 1, 1)],
        ids=["int", "float", "true", "false", "dict", "list", "bytes", "date"],
    )
    @pytest.mark.parametrize("name", ["enrichment_city", "enrichment_full_name"])
    def test_wrong_type_for_text_property_names_the_property(self, name, value):
        with pytest.raises(ValidationError) as exc_info:
            EnrichmentProperties.model_validate({name: value})
        assert _locs(exc_info) == [(name,)]
        assert "expected a string or null" in _messages(exc_info)

    @pytest.mark.parametrize("name", TEXT_PROPERTY_NAMES)
    def test_every_text_property_rejects_an_int(self, name):
        with pytest.raises(ValidationError) as exc_info:
            EnrichmentProperties.model_validate({name: 7})
        assert _locs(exc_info) == [(name,)]

    def test_several_bad_properties_are_all_reported(self):
        with pytest.raises(ValidationError) as exc_info:
            EnrichmentProperties.model_validate(
                {"enrichment_city": 1, "enrichment_state": [], "enrichment_phone": [2]}
            )
        assert sorted(_locs(exc_info)) == [
            ("enrichment_city",),
            ("enrichment_phone",),
            ("enrichment_state",),
        ]

    @pytest.mark.parametrize("name", ["enrichment_city", "enrichment_active_at"])
    def test_lone_surrogate_string_is_rejected_naming_the_property(self, name):
        with pytest.raises(ValidationError) as exc_info:
            EnrichmentProperties.model_validate({name: "Pu\ud800ne"})
        assert _locs(exc_info) == [(name,)]
        assert "not valid Unicode at position 2" in _messages(exc_info)

    def test_datetime_only_accepted_for_timestamp_properties(self):
        with pytest.raises(ValidationError) as exc_info:
            EnrichmentProperties(enrichment_city=datetime(2023, 1, 1))
        assert _locs(exc_info) == [("enrichment_city",)]

    def test_assignment_is_validated(self):
        props = EnrichmentProperties()
        with pytest.raises(ValidationError) as exc_info:
            props.enrichment_city = 5
        assert _locs(exc_info) == [("enrichment_city",)]
        assert props.enrichment_city == ""
        props.enrichment_city = None
        assert props.enrichment_city == ""
        props.enrichment_phone = "+1"
        assert props.enrichment_phone == ["+1"]


class TestTimestampProperties:
    @pytest.mark.parametrize("name", ["enrichment_active_at", "enrichment_inactive_at"])
    def test_datetime_is_formatted_like_the_spec(self, name):
        moment = datetime(2023, 11, 2, 0, 30, 8, 276999, tzinfo=UTC)
        props = EnrichmentProperties.model_validate({name: moment})
        assert getattr(props, name) == "2023-11-02T00:30:08.276Z"

    def test_naive_datetime_is_utc_and_offsets_are_converted(self):
        naive = EnrichmentProperties(enrichment_active_at=datetime(2023, 11, 2, 0, 30, 8))
        assert naive.enrichment_active_at == "2023-11-02T00:30:08.000Z"
        ist = timezone(timedelta(hours=5, minutes=30))
        aware = EnrichmentProperties(
            enrichment_active_at=datetime(2023, 11, 2, 6, 0, 8, tzinfo=ist)
        )
        assert aware.enrichment_active_at == "2023-11-02T00:30:08.000Z"

    def test_string_is_kept_verbatim(self):
        props = EnrichmentProperties(enrichment_active_at="2012-01-01")
        assert props.enrichment_active_at == "2012-01-01"

    def test_format_timestamp(self):
        assert format_timestamp(datetime(2023, 11, 2, 0, 30, 8, 276000)) == (
            "2023-11-02T00:30:08.276Z"
        )
        assert format_timestamp(datetime(2023, 11, 2, 0, 30, 8, 5000, tzinfo=UTC)) == (
            "2023-11-02T00:30:08.005Z"
        )

    def test_format_timestamp_pads_years_before_1000(self):
        assert format_timestamp(datetime(1, 1, 1)) == "0001-01-01T00:00:00.000Z"
        assert format_timestamp(datetime(999, 1, 1, tzinfo=UTC)) == "0999-01-01T00:00:00.000Z"

    @given(st.datetimes(timezones=st.just(UTC)))
    def test_format_timestamp_of_utc_is_isoformats_to_the_millisecond(self, moment):
        # The fields formatted in one step must give exactly what isoformat writes.
        expected = moment.isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"
        assert format_timestamp(moment) == expected
        assert format_timestamp(moment.replace(tzinfo=None)) == expected


@given(
    st.lists(
        st.one_of(
            st.none(),
            st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=4),
            st.sampled_from(["+15550000000", " ", "", "\t"]),
        ),
        max_size=4,
    )
)
def test_a_text_list_keeps_its_non_blank_items_on_either_path(items):
    # Lists of plain ASCII text take a shortcut past the item-by-item loop; both keep the
    # same items, in order.
    kept = EnrichmentProperties(enrichment_phone=items).enrichment_phone
    assert kept == [item for item in items if item is not None and item.strip()]
    assert kept is not items


class TestExtras:
    @pytest.mark.parametrize(
        ("name", "value", "problem"),
        [
            ("source", "apo\x00llo", "source: contains a NUL character"),
            ("sou\x00rce", "apollo", "property name 'sou\\x00rce': contains a NUL character"),
            ("source", "caf\udce9", "source: contains a character that is not valid Unicode"),
            ("source", "café", None),  # not ASCII, but text: kept
        ],
    )
    def test_extra_text_is_checked_off_the_plain_path_too(self, name, value, problem):
        # Plain ASCII text skips the checks; anything else still meets them.
        if problem is None:
            assert EnrichmentProperties.model_validate({name: value}).extra == {name: value}
            return
        with pytest.raises(ValidationError) as caught:
            EnrichmentProperties.model_validate({name: value})
        assert problem in str(caught.value)

    def test_extra_properties_are_kept(self):
        props = EnrichmentProperties.model_validate(
            {"enrichment_city": "Pune", "source": "apollo", "score": 0.9, "tags": ["a", {"b": 1}]}
        )
        assert props.extra == {"source": "apollo", "score": 0.9, "tags": ["a", {"b": 1}]}
        assert props.to_wire()["source"] == "apollo"

    def test_to_wire_order_is_spec_order_then_extras_sorted_by_name(self):
        props = EnrichmentProperties.model_validate(
            {
                "zz_extra": 1,
                "enrichment_twitter_handle": "t",
                "aa_extra": 2,
                "enrichment_active_at": "a",
            }
        )
        assert list(props.to_wire()) == [*SPEC_PROPERTY_ORDER, "aa_extra", "zz_extra"]

    def test_equal_content_in_any_order_hashes_the_same(self):
        first = UserEnrichedEvent(user_id="u", group_id="g", properties={"b": 1, "a": 2})
        second = UserEnrichedEvent(user_id="u", group_id="g", properties={"a": 2, "b": 1})
        assert first.content_hash() == second.content_hash()

    def test_a_change_after_validation_is_what_gets_hashed_and_sent(self):
        event = UserEnrichedEvent(user_id="u", group_id="g", properties={"enrichment_city": "A"})
        before = event.content_hash()
        event.properties.enrichment_city = "B"
        assert event.content_hash() != before
        assert b'"enrichment_city":"B"' in event.to_thrivestack_json()
        assert EnrichmentProperties(enrichment_city="B") == event.properties

    def test_to_wire_extras_are_deep_copies(self):
        props = EnrichmentProperties.model_validate({"nested": {"list": [1, 2]}})
        wire = props.to_wire()
        wire["nested"]["list"].append(3)
        assert props.extra == {"nested": {"list": [1, 2]}}

    @pytest.mark.parametrize(
        ("value", "fragment"),
        [
            ({1, 2}, "a set cannot be sent as JSON"),
            (float("nan"), "not a finite number"),
            (float("inf"), "not a finite number"),
            ({"a": [1, float("-inf")]}, "not a finite number"),
            (b"bytes", "a bytes cannot be sent as JSON"),
            ({1: "x"}, "is not a string"),
            (["ok", object()], "cannot be sent as JSON"),
            ("broken \udc80", "not valid Unicode"),
        ],
        ids=["set", "nan", "inf", "nested-inf", "bytes", "int-key", "object", "surrogate"],
    )
    def test_extra_that_is_not_json_is_an_error_naming_it(self, value, fragment):
        with pytest.raises(ValidationError) as exc_info:
            EnrichmentProperties.model_validate({"enrichment_city": "Pune", "my_extra": value})
        message = _messages(exc_info)
        assert "my_extra" in message
        assert fragment in message

    def test_nested_extra_error_names_the_path(self):
        with pytest.raises(ValidationError) as exc_info:
            EnrichmentProperties.model_validate({"meta": {"scores": [1.0, float("nan")]}})
        assert "meta.scores[1]" in _messages(exc_info)

    def test_extra_error_inside_an_event_is_under_properties(self):
        with pytest.raises(ValidationError) as exc_info:
            _event(properties={"weird": {1}})
        assert _locs(exc_info) == [("properties",)]
        assert "weird" in _messages(exc_info)

    def test_surrogate_in_a_nested_extra_key_is_rejected(self):
        with pytest.raises(ValidationError):
            EnrichmentProperties.model_validate({"meta": {"bad\ud800key": 1}})

    def test_failed_extra_assignment_leaves_the_model_unchanged(self):
        props = EnrichmentProperties()
        with pytest.raises(ValidationError):
            props.tags = {"a", "b"}
        assert "tags" not in props.extra
        json.dumps(props.to_wire())


# --------------------------------------------------------------------------------------------
# Hypothesis: arbitrary JSON-ish input never crashes and never yields something unsendable
# --------------------------------------------------------------------------------------------

_ANY_TEXT = st.text(alphabet=st.characters(codec=None), max_size=12)
_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | _ANY_TEXT
    | st.binary(max_size=8)
    | st.datetimes(min_value=datetime(1000, 1, 1))
)
_JSONISH = st.recursive(
    _LEAVES,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(_ANY_TEXT, children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def _property_inputs(draw):
    names = draw(st.lists(st.sampled_from(PROPERTY_NAMES), unique=True, min_size=1, max_size=8))
    return {name: draw(_JSONISH) for name in names}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_property_inputs())
def test_arbitrary_values_validate_to_sendable_json_or_fail_naming_a_given_property(data):
    try:
        props = EnrichmentProperties.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        assert errors
        for error in errors:
            assert error["loc"], error
            assert error["loc"][0] in data, error
        return
    wire = props.to_wire()
    encoded = json.dumps(wire, ensure_ascii=False).encode("utf-8")
    assert json.loads(encoded) == json.loads(json.dumps(wire))
    assert list(wire) == list(PROPERTY_NAMES)
    for name in TEXT_PROPERTY_NAMES:
        assert isinstance(wire[name], str)
    assert all(isinstance(phone, str) and phone.strip() for phone in wire["enrichment_phone"])


# Keys without surrogates: a surrogate in a nested key is the known bug tested above.
_EXTRA_JSONISH = st.recursive(
    _LEAVES.filter(lambda value: not isinstance(value, datetime)),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.from_regex(r"custom_[a-z]{1,6}", fullmatch=True), _EXTRA_JSONISH))
def test_arbitrary_extras_are_sendable_or_rejected_naming_the_extra(extras):
    try:
        props = EnrichmentProperties.model_validate(extras)
    except ValidationError as exc:
        for error in exc.errors():
            assert any(name in error["msg"] for name in extras), error
        return
    assert props.extra == extras
    json.dumps(props.to_wire(), ensure_ascii=False, allow_nan=False).encode("utf-8")


# --------------------------------------------------------------------------------------------
# UserEnrichedEvent: the spec's samples and the wire forms
# --------------------------------------------------------------------------------------------


def _renamed(sample: dict) -> dict:
    """The sample with "event" renamed "event_name", keeping its key order."""
    return {("event_name" if key == "event" else key): value for key, value in sample.items()}


class TestSpecSamples:
    def test_samples_validate_as_printed(self, spec_sample):
        event = UserEnrichedEvent.model_validate(spec_sample)
        assert event.user_id == spec_sample["user_id"]
        assert event.group_id == spec_sample["context"]["group_id"]
        assert event.context == {}
        assert event.properties.to_wire() == spec_sample["properties"]
        assert event.timestamp == datetime(2023, 11, 2, 0, 30, 8, 276000, tzinfo=UTC)

    def test_sample_1_to_thrivestack_is_the_sample_with_event_name(self, sample_1):
        expected = _renamed(sample_1)
        item = UserEnrichedEvent.model_validate(sample_1).to_thrivestack()
        assert item == expected
        assert list(item) == list(expected)
        assert list(item["properties"]) == list(expected["properties"])
        assert list(item["context"]) == list(expected["context"])
        assert json.dumps(item) == json.dumps(expected)

    def test_sample_2_to_thrivestack_is_the_sample_with_event_name(self, sample_2):
        expected = _renamed(sample_2)
        item = UserEnrichedEvent.model_validate(sample_2).to_thrivestack()
        assert json.dumps(item) == json.dumps(expected)

    def test_validation_does_not_mutate_the_input(self, spec_sample):
        before = copy.deepcopy(spec_sample)
        UserEnrichedEvent.model_validate(spec_sample)
        assert spec_sample == before

    def test_to_thrivestack_validates_against_thrivestacks_schema(
        self, spec_sample, track_item_schema
    ):
        item = UserEnrichedEvent.model_validate(spec_sample).to_thrivestack()
        assert schema_errors(track_item_schema, item) == []

    def test_built_event_validates_against_thrivestacks_schema(self, track_item_schema):
        event = _event(context={"source": "product", "device_id": "d-1"})
        assert schema_errors(track_item_schema, event.to_thrivestack()) == []

    def test_thrivestack_schema_check_is_not_vacuous(self, track_item_schema, sample_1):
        item = UserEnrichedEvent.model_validate(sample_1).to_thrivestack()
        assert schema_errors(track_item_schema, {**item, "timestamp": "yesterday"})
        del item["event_name"]
        assert any("event_name" in message for message in schema_errors(track_item_schema, item))

    def test_format_checker_checks_date_time(self):
        checker = format_checker()
        assert checker.conforms("2023-11-02T00:30:08.276Z", "date-time")
        assert not checker.conforms("2023-11-02 00:30", "date-time")


class TestEventName:
    def test_event_name_spelling_is_accepted(self, sample_1):
        event = UserEnrichedEvent.model_validate(_renamed(sample_1))
        assert event == UserEnrichedEvent.model_validate(sample_1)

    def test_event_name_may_be_omitted(self):
        assert _event().to_thrivestack()["event_name"] == EVENT_NAME

    def test_both_spellings_with_the_same_value_are_accepted(self, sample_1):
        sample_1["event_name"] = "user_enriched"
        assert UserEnrichedEvent.model_validate(sample_1).user_id == "user_123"

    @pytest.mark.parametrize("key", ["event", "event_name"])
    @pytest.mark.parametrize("name", ["signed_up", "User Enriched", "", "user_enriched "])
    def test_another_event_name_is_rejected(self, sample_1, key, name):
        del sample_1["event"]
        sample_1[key] = name
        with pytest.raises(ValidationError) as exc_info:
            UserEnrichedEvent.model_validate(sample_1)
        assert "must be 'user_enriched'" in _messages(exc_info)

    def test_event_and_event_name_disagreeing_is_rejected(self, sample_1):
        sample_1["event_name"] = "signed_up"
        with pytest.raises(ValidationError) as exc_info:
            UserEnrichedEvent.model_validate(sample_1)
        assert "signed_up" in _messages(exc_info)

    @pytest.mark.parametrize("name", [["user_enriched"], {"name": "user_enriched"}])
    def test_unhashable_event_name_is_a_validation_error(self, sample_1, name):
        sample_1["event"] = name
        with pytest.raises(ValidationError):
            UserEnrichedEvent.model_validate(sample_1)

    def test_unknown_top_level_key_is_rejected(self, sample_1):
        sample_1["type"] = "identify"
        with pytest.raises(ValidationError) as exc_info:
            UserEnrichedEvent.model_validate(sample_1)
        assert _locs(exc_info) == [("type",)]


class TestGroupId:
    def test_group_id_at_the_top(self):
        event = UserEnrichedEvent.model_validate({"user_id": "u", "group_id": "g"})
        assert event.group_id == "g"
        assert event.to_thrivestack()["context"] == {"group_id": "g"}

    def test_group_id_in_context(self):
        event = UserEnrichedEvent.model_validate(
            {"user_id": "u", "context": {"group_id": "g", "source": "product"}}
        )
        assert event.group_id == "g"
        assert event.context == {"source": "product"}
        assert event.to_thrivestack()["context"] == {"group_id": "g", "source": "product"}

    @pytest.mark.parametrize(
        "data",
        [
            {"user_id": "u", "group_id": "g", "context": {"group_id": "g"}},
            {"user_id": "u", "group_id": "g1", "context": {"group_id": "g2"}},
            {"user_id": "u", "group_id": "g", "context": {"groupId": "g"}},
        ],
        ids=["same", "different", "segment-spelling"],
    )
    def test_group_id_given_twice_is_rejected_even_when_equal(self, data):
        # The JSON Schema cannot compare two values, and it must accept what the model does.
        with pytest.raises(ValidationError, match="group_id is given twice, at the top"):
            UserEnrichedEvent.model_validate(data)

    def test_conflicting_group_id_and_group_id_in_segment_spelling_rejected(self):
        with pytest.raises(ValidationError, match=r"context\.groupId"):
            UserEnrichedEvent.model_validate(
                {"user_id": "u", "context": {"group_id": "g1", "groupId": "g2"}}
            )

    def test_missing_group_id_is_an_error_naming_it(self):
        with pytest.raises(ValidationError) as exc_info:
            UserEnrichedEvent.model_validate({"user_id": "u", "context": {}})
        assert _locs(exc_info) == [("group_id",)]

    @pytest.mark.parametrize("value", ["", "  ", True, None, 1.5])
    def test_bad_group_id_is_rejected(self, value):
        with pytest.raises(ValidationError) as exc_info:
            UserEnrichedEvent.model_validate({"user_id": "u", "group_id": value})
        assert _locs(exc_info) == [("group_id",)]

    def test_context_must_be_json(self):
        with pytest.raises(ValidationError) as exc_info:
            _event(context={"bad": {1, 2}})
        assert _locs(exc_info) == [("context",)]
        assert "context.bad" in _messages(exc_info)


class TestUserId:
    def test_int_user_id_becomes_string(self):
        assert _event(user_id=42).user_id == "42"

    def test_uuid_user_id_becomes_string(self):
        value = uuid.UUID("766b3aef-5904-46fe-af05-a293fee8a345")
        assert _event(user_id=value).user_id == str(value)

    @pytest.mark.parametrize("value", ["", " ", "\t\n"])
    def test_empty_user_id_is_rejected(self, value):
        with pytest.raises(ValidationError) as exc_info:
            _event(user_id=value)
        assert _locs(exc_info) == [("user_id",)]
        assert "must not be empty" in _messages(exc_info)

    @pytest.mark.parametrize("value", [True, False, None, 4.2, ["u"], {"id": "u"}, "u\ud800"])
    def test_wrong_user_id_is_rejected(self, value):
        with pytest.raises(ValidationError) as exc_info:
            _event(user_id=value)
        assert _locs(exc_info) == [("user_id",)]

    def test_missing_user_id_is_reported(self):
        with pytest.raises(ValidationError) as exc_info:
            UserEnrichedEvent.model_validate({"group_id": "g"})
        assert _locs(exc_info) == [("user_id",)]


class TestSegmentForm:
    def _message(self) -> dict:
        return {
            "type": "track",
            "userId": "user_123",
            "event": "user_enriched",
            "properties": EnrichmentProperties(enrichment_city="Pune", source="x").to_wire(),
            "context": {"groupId": "account_123", "library": {"name": "analytics-python"}},
            "timestamp": "2023-11-02T00:30:08.276Z",
            "messageId": "msg-1",
        }

    def test_segment_message_is_accepted(self):
        event = UserEnrichedEvent.model_validate(self._message())
        assert event.user_id == "user_123"
        assert event.group_id == "account_123"
        assert event.message_id == "msg-1"
        assert event.context == {"library": {"name": "analytics-python"}}
        assert event.properties.extra == {"source": "x"}

    def test_segment_message_round_trips(self):
        message = self._message()
        event = UserEnrichedEvent.model_validate(message)
        assert event.to_segment() == message
        assert UserEnrichedEvent.model_validate(event.to_segment()) == event

    def test_to_segment_shape(self):
        event = _event(context={"source": "product"})
        segment = event.to_segment()
        assert list(segment) == [
            "type",
            "userId",
            "event",
            "properties",
            "context",
            "timestamp",
            "messageId",
        ]
        assert segment["type"] == "track"
        assert segment["event"] == EVENT_NAME
        assert segment["context"] == {"source": "product", "groupId": "account_123"}
        assert "group_id" not in segment["context"]
        assert segment["messageId"] == event.message_id
        assert segment["timestamp"] == "2023-11-02T00:30:08.276Z"

    def test_to_segment_does_not_mutate_context_or_input(self):
        data = {
            "user_id": "u",
            "group_id": "g",
            "properties": {"enrichment_phone": ["+1"], "meta": {"k": [1]}},
            "context": {"library": {"name": "x"}, "traits": {"plan": "pro"}},
        }
        data_before = copy.deepcopy(data)
        event = UserEnrichedEvent.model_validate(data)
        context_before = copy.deepcopy(event.context)
        segment = event.to_segment()
        assert event.context == context_before
        assert "groupId" not in event.context
        assert data == data_before
        segment["context"]["library"]["name"] = "changed"
        segment["context"]["extra"] = 1
        segment["properties"]["enrichment_phone"].append("+2")
        segment["properties"]["meta"]["k"].append(2)
        assert event.context == context_before
        assert data == data_before
        assert event.properties.enrichment_phone == ["+1"]
        assert event.properties.extra == {"meta": {"k": [1]}}
        assert event.to_segment() != segment

    def test_to_thrivestack_output_is_independent_of_the_event(self):
        event = _event(context={"device": {"id": "d"}})
        item = event.to_thrivestack()
        item["context"]["device"]["id"] = "changed"
        item["properties"]["enrichment_phone"].clear()
        assert event.context == {"device": {"id": "d"}}
        assert event.properties.enrichment_phone == ["+919876543210"]

    def test_segment_user_id_plus_user_id_is_rejected(self):
        with pytest.raises(ValidationError) as exc_info:
            UserEnrichedEvent.model_validate({"userId": "a", "user_id": "b", "group_id": "g"})
        assert ("userId",) in _locs(exc_info)


class TestTimestamp:
    def test_z_string_parses(self):
        assert _event(timestamp="2023-11-02T00:30:08.276Z").timestamp == datetime(
            2023, 11, 2, 0, 30, 8, 276000, tzinfo=UTC
        )

    def test_naive_datetime_is_utc(self):
        event = _event(timestamp=datetime(2023, 11, 2, 0, 30, 8))
        assert event.timestamp == datetime(2023, 11, 2, 0, 30, 8, tzinfo=UTC)
        assert event.timestamp.utcoffset() == timedelta(0)

    @pytest.mark.parametrize(
        "text",
        ["2023-11-02T00:30:08", "2023-11-02", "2023-11-02 00:30:08Z", " 2023-11-02T00:30:08Z"],
    )
    def test_a_string_must_be_rfc3339_with_a_time_zone(self, text):
        with pytest.raises(ValidationError, match="not an RFC 3339 date-time with a time zone"):
            _event(timestamp=text)

    @pytest.mark.parametrize(
        "text",
        ["2023-11-02t00:30:08.276z", "2023-11-02T00:30:08.276z", "2023-11-02t06:00:08.276+05:30"],
    )
    def test_rfc3339_lowercase_t_and_z_are_accepted(self, text):
        assert _event(timestamp=text).timestamp == datetime(
            2023, 11, 2, 0, 30, 8, 276000, tzinfo=UTC
        )

    @pytest.mark.parametrize("text", ["2023-02-29T00:00:00Z", "2023-11-02T00:30:60Z"])
    def test_impossible_dates_and_leap_seconds_are_refused(self, text):
        with pytest.raises(ValidationError) as exc_info:
            _event(timestamp=text)
        assert _locs(exc_info) == [("timestamp",)]

    @pytest.mark.parametrize(
        "value",
        [
            "2023-11-02T06:00:08.276+05:30",
            datetime(2023, 11, 1, 19, 30, 8, 276000, tzinfo=timezone(timedelta(hours=-5))),
        ],
    )
    def test_offsets_are_converted_to_utc(self, value):
        event = _event(timestamp=value)
        assert event.timestamp.tzinfo == UTC
        assert event.to_thrivestack()["timestamp"] == "2023-11-02T00:30:08.276Z"

    def test_truncated_to_milliseconds(self):
        event = _event(timestamp=datetime(2023, 11, 2, 0, 30, 8, 276999, tzinfo=UTC))
        assert event.timestamp.microsecond == 276000
        assert _event(timestamp="2023-11-02T00:30:08.276999Z").timestamp.microsecond == 276000

    def test_date_is_midnight_utc(self):
        assert _event(timestamp=date(2023, 11, 2)).timestamp == datetime(2023, 11, 2, tzinfo=UTC)

    def test_default_is_now_in_utc(self):
        before = datetime.now(UTC) - timedelta(milliseconds=1)
        event = UserEnrichedEvent(user_id="u", group_id="g")
        after = datetime.now(UTC)
        assert before <= event.timestamp <= after
        assert event.timestamp.utcoffset() == timedelta(0)

    def test_default_timestamp_is_truncated_to_milliseconds_and_round_trips(self):
        # Retry so a clock landing exactly on a millisecond cannot make this pass by luck.
        events = [UserEnrichedEvent(user_id="u", group_id="g") for _ in range(5)]
        assert all(event.timestamp.microsecond % 1000 == 0 for event in events)
        assert all(
            UserEnrichedEvent.model_validate(event.to_thrivestack()) == event for event in events
        )

    @pytest.mark.parametrize(
        "value",
        [1698885008, 1698885008.276, "yesterday", "", "2023-13-01T00:00:00Z", True, None, []],
    )
    def test_bad_timestamp_is_an_error_naming_timestamp(self, value):
        with pytest.raises(ValidationError) as exc_info:
            _event(timestamp=value)
        assert _locs(exc_info) == [("timestamp",)]

    def test_bad_timestamp_message_shows_the_expected_form(self):
        with pytest.raises(ValidationError, match=re.escape("2023-11-02T00:30:08.276Z")):
            _event(timestamp="yesterday")


class TestMessageId:
    def test_derived_ids_and_content_hashes_are_pinned(self):
        # Ids a collector has seen must not change with a release: a resend would no longer
        # be deduplicated. Values from the implementation these ids were first sent with.
        cases = [
            UserEnrichedEvent(
                user_id="u-1",
                group_id="acct-1",
                timestamp=datetime(2023, 11, 2, 0, 30, 8, 276000, tzinfo=UTC),
                properties={"enrichment_city": "Pune", "enrichment_phone": ["+91 20 0000"]},
            ),
            UserEnrichedEvent(
                user_id="Zoë",
                group_id="acct-é",
                timestamp=datetime(
                    1999,
                    12,
                    31,
                    23,
                    59,
                    59,
                    999999,
                    tzinfo=timezone(timedelta(hours=5, minutes=30)),
                ),
                properties={
                    "enrichment_full_name": "Zoë 日本 😀",
                    "custom_plan": {"tier": 2, "ok": True},
                },
            ),
            GroupEnrichedEvent(
                user_id="u-1",
                group_id="acct-1",
                timestamp=datetime(2024, 3, 1, 12, 0),
                properties={
                    "enrichment_name": "Acme",
                    "enrichment_employees": 120,
                    "enrichment_tags": ["b2b", "saas"],
                },
            ),
        ]
        assert [(event.message_id, event.content_hash()) for event in cases] == [
            (
                "7e836d8f-29dc-569e-95d6-903b40c70612",
                "2b9500b895e8c68dd53187d5b85a4e600d813f6e78cdbf86f61324722d82c5b0",
            ),
            (
                "837162d7-80db-5e68-85e1-d2b95dbcc1da",
                "bfe9bb7228524e8c5dd16e0e2452faacc0279f27bb2cf5cb496d9bbf2ae6e3e4",
            ),
            (
                "5c6fbcaf-6890-5b70-97f2-d0a830f7dc1c",
                "29ee1f6cae65f90e491a2882f459b674de0294775c5bc2517b643f1f32c4dbc0",
            ),
        ]
        # The path of an event built with an id of its own, whose serialisations are not
        # computed at validation, agrees with the one of a new event.
        rebuilt = [
            type(event).model_validate({**event.model_dump(), "message_id": "given"})
            for event in cases
        ]
        assert [event.derive_message_id() for event in rebuilt] == [e.message_id for e in cases]

    def test_default_is_deterministic(self):
        assert _event().message_id == _event().message_id
        assert _event().message_id == _event().derive_message_id()

    def test_default_is_a_uuid_within_the_limit(self):
        message_id = _event().message_id
        assert len(message_id) <= MESSAGE_ID_MAX_LENGTH == 100
        assert str(uuid.UUID(message_id)) == message_id

    @pytest.mark.parametrize(
        "change",
        [
            {"properties": {"enrichment_city": "Mumbai"}},
            {"properties": {"enrichment_city": "Pune", "enrichment_phone": [], "x": 1}},
            {"timestamp": "2023-11-02T00:30:08.277Z"},
            {"user_id": "user_124"},
            {"group_id": "account_124"},
        ],
        ids=["properties", "extras", "timestamp", "user", "group"],
    )
    def test_different_data_gives_a_different_id(self, change):
        assert _event(**change).message_id != _event().message_id

    def test_sub_millisecond_difference_gives_the_same_id(self):
        first = _event(timestamp=datetime(2023, 11, 2, 0, 30, 8, 276001, tzinfo=UTC))
        second = _event(timestamp=datetime(2023, 11, 2, 0, 30, 8, 276999, tzinfo=UTC))
        assert first.message_id == second.message_id

    def test_context_does_not_change_the_id(self):
        assert _event(context={"source": "product"}).message_id == _event().message_id

    def test_given_message_id_is_kept(self):
        assert _event(message_id="resend-7").message_id == "resend-7"
        assert _event(messageId="seg-7").message_id == "seg-7"

    def test_message_id_at_the_limit_is_accepted(self):
        assert _event(message_id="m" * 100).message_id == "m" * 100

    def test_message_id_over_the_limit_is_rejected(self):
        with pytest.raises(ValidationError) as exc_info:
            _event(message_id="m" * 101)
        assert _locs(exc_info) == [("message_id",)]


class TestContentHash:
    def test_is_a_sha256_hex_digest(self):
        assert re.fullmatch(r"[0-9a-f]{64}", _event().content_hash())

    def test_ignores_timestamp_and_context(self):
        base = _event().content_hash()
        assert _event(timestamp="2024-01-01T00:00:00Z").content_hash() == base
        assert _event(context={"source": "marketing"}).content_hash() == base

    def test_changes_with_properties(self):
        base = _event().content_hash()
        assert _event(properties={"enrichment_city": "Mumbai"}).content_hash() != base
        assert (
            _event(
                properties={"enrichment_city": "Pune", "enrichment_phone": ["+919876543210", "+1"]}
            ).content_hash()
            != base
        )

    def test_changes_with_group_id(self):
        assert _event(group_id="account_999").content_hash() != _event().content_hash()

    def test_none_and_missing_properties_hash_the_same(self):
        explicit = _event(properties={"enrichment_city": "Pune", "enrichment_state": None})
        implicit = _event(properties={"enrichment_city": "Pune"})
        assert explicit.content_hash() == implicit.content_hash()


class TestRoundTrip:
    def test_event_survives_its_thrivestack_form(self):
        event = _event(
            timestamp=datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
            context={"source": "product"},
            properties={"enrichment_city": "Pune", "enrichment_phone": "+1", "score": 3},
        )
        again = UserEnrichedEvent.model_validate(event.to_thrivestack())
        assert again.content_hash() == event.content_hash()
        assert again.message_id == event.message_id
        assert again.timestamp == event.timestamp
        assert again == event

    def test_spec_sample_survives_twice(self, spec_sample):
        once = UserEnrichedEvent.model_validate(spec_sample)
        twice = UserEnrichedEvent.model_validate(once.to_thrivestack())
        assert twice == once
        assert twice.to_thrivestack() == once.to_thrivestack()

    def test_event_survives_its_segment_form(self):
        event = _event(message_id="fixed-id", context={"source": "product"})
        assert UserEnrichedEvent.model_validate(event.to_segment()) == event

    @settings(max_examples=50, deadline=None)
    @given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 30)))
    def test_any_modern_timestamp_round_trips(self, moment):
        event = UserEnrichedEvent(user_id="u", group_id="g", timestamp=moment)
        again = UserEnrichedEvent.model_validate(event.to_thrivestack())
        assert again.timestamp == event.timestamp
        assert again.message_id == event.message_id


# --------------------------------------------------------------------------------------------
# The wire JSON Schema
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wire_schema():
    return event_json_schema()


class TestWireSchema:
    def test_spec_samples_validate(self, wire_schema, spec_sample):
        assert schema_errors(wire_schema, spec_sample) == []

    def test_thrivestack_form_validates(self, wire_schema, spec_sample):
        item = UserEnrichedEvent.model_validate(spec_sample).to_thrivestack()
        assert schema_errors(wire_schema, item) == []

    def test_group_id_at_top_validates(self, wire_schema):
        assert schema_errors(wire_schema, {"user_id": "u", "group_id": "g", "properties": {}}) == []

    def test_missing_group_id_fails(self, wire_schema, sample_1):
        del sample_1["context"]["group_id"]
        assert schema_errors(wire_schema, sample_1)
        del sample_1["context"]
        assert schema_errors(wire_schema, sample_1)

    def test_other_event_name_fails(self, wire_schema, sample_1):
        sample_1["event"] = "signed_up"
        assert schema_errors(wire_schema, sample_1)
        del sample_1["event"]
        sample_1["event_name"] = "signed_up"
        assert schema_errors(wire_schema, sample_1)

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("enrichment_city", 5),
            ("enrichment_phone", [5]),
            ("enrichment_phone", {"number": "+1"}),  # one string is a list; an object is not
        ],
    )
    def test_wrong_property_types_fail(self, wire_schema, sample_1, key, value):
        sample_1["properties"][key] = value
        assert schema_errors(wire_schema, sample_1)

    def test_null_properties_and_extras_validate(self, wire_schema, sample_1):
        sample_1["properties"]["enrichment_city"] = None
        sample_1["properties"]["enrichment_phone"] = None
        sample_1["properties"]["custom"] = {"any": ["thing"]}
        assert schema_errors(wire_schema, sample_1) == []

    def test_bad_timestamp_and_unknown_keys_fail(self, wire_schema, sample_1):
        assert schema_errors(wire_schema, {**sample_1, "timestamp": "yesterday"})
        assert schema_errors(wire_schema, {**sample_1, "surprise": 1})
        assert schema_errors(wire_schema, {**sample_1, "message_id": "m" * 101})
        assert schema_errors(wire_schema, {**sample_1, "user_id": ""})

    def test_schema_lists_every_property(self, wire_schema):
        properties = wire_schema["properties"]["properties"]["properties"]
        assert list(properties) == list(PROPERTY_NAMES)
        array, one_string = properties["enrichment_phone"]["anyOf"]  # as the model takes it
        assert array["type"] == "array"
        assert array["items"]["type"] == ["string", "null"]
        assert one_string["type"] == ["string", "null"]

    def test_schema_is_fresh_each_call(self):
        first = event_json_schema()
        first["properties"]["properties"]["properties"].clear()
        assert event_json_schema()["properties"]["properties"]["properties"]


_ID_TEXT = st.text(min_size=1, max_size=12).filter(str.strip)


@settings(max_examples=200, deadline=None)
@given(
    user_id=_ID_TEXT,
    group_id=_ID_TEXT,
    moment=st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    city=st.text(max_size=12),
)
def test_the_hand_built_wire_json_is_the_wire_dict_for_any_text(user_id, group_id, moment, city):
    try:
        event = UserEnrichedEvent(
            user_id=user_id,
            group_id=group_id,
            timestamp=moment,
            properties={"enrichment_city": city},
            context={"source": city},
        )
    except ValidationError:
        return  # NUL or a lone surrogate: refused, tested above
    assert json.loads(event.to_thrivestack_json()) == event.to_thrivestack()
    assert UserEnrichedEvent.model_validate_json(event.to_json()) == event
    m = event.timestamp
    assert event.timestamp_text() == (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}."
        f"{m.microsecond // 1000:03d}Z"
    )


def test_replacing_the_properties_object_never_serves_the_old_content():
    # The cache once keyed on id(properties): a freed object's id is soon reused.
    event = UserEnrichedEvent(user_id="u", group_id="g", properties={"enrichment_city": "A"})
    for number in range(200):
        event.properties_json()  # cached for the current object
        event.properties = EnrichmentProperties(enrichment_city="passing")  # frees it
        city = f"city-{number}"
        event.properties = EnrichmentProperties(enrichment_city=city)  # may get its address
        assert json.loads(event.properties_json())["enrichment_city"] == city
        assert (
            event.content_hash()
            == UserEnrichedEvent(
                user_id="u", group_id="g", properties={"enrichment_city": city}
            ).content_hash()
        )
