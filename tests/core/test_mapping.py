"""resolve_path, PropertyMap and EventMapping."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tracking_adapter import (
    EnrichmentProperties,
    EventMapping,
    EventValidationError,
    MappingError,
    PropertyMap,
    TrackingAdapterError,
    UserEnrichedEvent,
    resolve_path,
)
from tracking_adapter.mapping import extract
from tracking_adapter.providers import preset_from_path

# --------------------------------------------------------------------------------------------
# Source objects shaped like ORM models
# --------------------------------------------------------------------------------------------


@dataclass
class Phone:
    number: str
    kind: str = "mobile"


@dataclass
class Company:
    name: str
    domain: str | None = None


@dataclass
class Account:
    external_id: str
    company: Company | None = None


class Profile:
    """Like a Django model: plain attributes, a relation, a property, methods."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    @property
    def unset_relation(self) -> Any:
        # Django raises RelatedObjectDoesNotExist (an AttributeError) for an unset one-to-one.
        raise AttributeError("Profile has no unset_relation")

    @property
    def broken_lookup(self) -> Any:
        raise KeyError("not an AttributeError")

    def get_full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def greeting(self, punctuation: str = "!") -> str:
        return f"Hi {self.first_name}{punctuation}"

    def needs_argument(self, value: str) -> str:
        return value

    def get_account(self) -> Account:
        return self.account


def _profile(**overrides: Any) -> Profile:
    values = {
        "pk": 7,
        "first_name": "Santosh",
        "last_name": "Yadav",
        "city": "Pune",
        "account": Account("acct-1", Company("ThriveStack", "thrivestack.ai")),
        "phone_numbers": [Phone("+919876543210"), Phone("+912000000000", "work")],
        "enriched_at": datetime(2023, 11, 2, 0, 30, 8, 276000, tzinfo=UTC),
        "meta": {"geo": {"state": "Maharashtra"}, "tags": ["a", "b"]},
        "payload": None,
    }
    values.update(overrides)
    return Profile(**values)


# --------------------------------------------------------------------------------------------
# resolve_path
# --------------------------------------------------------------------------------------------


class TestResolvePath:
    def test_dict_keys(self):
        assert resolve_path({"a": {"b": {"c": 3}}}, "a.b.c") == 3

    def test_single_part(self):
        assert resolve_path({"a": 1}, "a") == 1
        assert resolve_path(_profile(), "city") == "Pune"

    def test_attributes_and_nested_objects(self):
        profile = _profile()
        assert resolve_path(profile, "account.external_id") == "acct-1"
        assert resolve_path(profile, "account.company.domain") == "thrivestack.ai"

    def test_list_indexes(self):
        profile = _profile()
        assert resolve_path(profile, "phone_numbers.0.number") == "+919876543210"
        assert resolve_path(profile, "phone_numbers.1.kind") == "work"
        assert resolve_path(profile, "phone_numbers.-1.number") == "+912000000000"
        assert resolve_path({"phones": [{"n": "x"}]}, "phones.0.n") == "x"
        assert resolve_path({"t": ("a", "b")}, "t.1") == "b"

    def test_index_past_the_end_is_none(self):
        assert resolve_path(_profile(), "phone_numbers.5.number") is None
        assert resolve_path(_profile(), "phone_numbers.-3") is None
        assert resolve_path({"phones": []}, "phones.0") is None

    def test_mixed_dict_in_object(self):
        assert resolve_path(_profile(), "meta.geo.state") == "Maharashtra"
        assert resolve_path(_profile(), "meta.tags.1") == "b"

    def test_none_along_the_way_is_none(self):
        assert resolve_path(_profile(account=None), "account.company.name") is None
        assert resolve_path(_profile(account=Account("a", None)), "account.company.name") is None
        assert resolve_path({"a": None}, "a.b.c.d") is None
        assert resolve_path(None, "anything") is None

    def test_missing_dict_key_is_none(self):
        assert resolve_path({"a": {}}, "a.b") is None
        assert resolve_path({"a": {}}, "a.b.c") is None
        assert resolve_path(_profile(), "meta.missing.deeper") is None

    def test_missing_attribute_is_a_mapping_error_naming_the_path(self):
        with pytest.raises(MappingError) as exc_info:
            resolve_path(_profile(), "account.compnay.name")
        message = str(exc_info.value)
        assert "'account.compnay.name'" in message
        assert "Account has no attribute 'compnay'" in message
        assert isinstance(exc_info.value, TrackingAdapterError)
        assert isinstance(exc_info.value, ValueError)

    def test_property_raising_attribute_error_is_none(self):
        assert resolve_path(_profile(), "unset_relation") is None
        assert resolve_path(_profile(), "unset_relation.name") is None

    def test_property_raising_another_error_propagates(self):
        with pytest.raises(KeyError):
            resolve_path(_profile(), "broken_lookup")

    def test_bound_method_without_arguments_is_called(self):
        assert resolve_path(_profile(), "get_full_name") == "Santosh Yadav"
        assert resolve_path(_profile(), "get_account.company.name") == "ThriveStack"

    def test_bound_method_with_only_defaults_is_called(self):
        assert resolve_path(_profile(), "greeting") == "Hi Santosh!"

    def test_bound_method_needing_arguments_is_not_called(self):
        profile = _profile()
        value = resolve_path(profile, "needs_argument")
        assert callable(value)
        assert value("x") == "x"

    def test_callable_values_in_dicts_are_not_called(self):
        function = lambda: "called"  # noqa: E731
        assert resolve_path({"f": function}, "f") is function

    @pytest.mark.parametrize("path", ["", "a..b", ".a", "a.", ".", "a.b..c"])
    def test_bad_paths_are_mapping_errors(self, path):
        with pytest.raises(MappingError, match="is not a dotted path"):
            resolve_path({"a": {"b": 1}}, path)

    @pytest.mark.parametrize("path", [None, 5, ["a"]])
    def test_non_string_paths_are_mapping_errors(self, path):
        with pytest.raises(MappingError):
            resolve_path({"a": 1}, path)

    def test_bad_path_is_rejected_even_when_the_object_is_none(self):
        with pytest.raises(MappingError):
            resolve_path(None, "a..b")

    def test_non_index_into_a_list_is_a_mapping_error(self):
        with pytest.raises(MappingError, match="must be an index"):
            resolve_path(_profile(), "phone_numbers.first.number")

    @pytest.mark.parametrize("part", ["--1", "²"])
    def test_malformed_index_is_a_mapping_error(self, part):
        with pytest.raises(MappingError):
            resolve_path({"a": [1, 2]}, f"a.{part}")

    def test_extract_with_callable_and_path(self):
        profile = _profile()
        assert extract(profile, "city") == "Pune"
        assert extract(profile, lambda obj: obj.city.upper()) == "PUNE"


# --------------------------------------------------------------------------------------------
# PropertyMap
# --------------------------------------------------------------------------------------------


class TestPropertyMap:
    def test_paths_and_callables(self):
        property_map = PropertyMap(
            {
                "enrichment_city": "city",
                "enrichment_employment_name": "account.company.name",
                "enrichment_full_name": lambda obj: f"{obj.first_name} {obj.last_name}",
                "enrichment_phone": lambda obj: [phone.number for phone in obj.phone_numbers],
                "custom_tag": "meta.tags.0",
            }
        )
        values = property_map.values(_profile())
        assert values == {
            "enrichment_city": "Pune",
            "enrichment_employment_name": "ThriveStack",
            "enrichment_full_name": "Santosh Yadav",
            "enrichment_phone": ["+919876543210", "+912000000000"],
            "custom_tag": "a",
        }
        assert property_map(_profile()) == values

    def test_values_are_raw_not_validated(self):
        assert PropertyMap({"enrichment_city": "pk"}).values(_profile()) == {"enrichment_city": 7}

    def test_missing_attribute_raises_at_use(self):
        property_map = PropertyMap({"enrichment_city": "ciity"})
        with pytest.raises(MappingError, match="ciity"):
            property_map.values(_profile())

    @pytest.mark.parametrize("source", [5, None, ["city"], {"path": "city"}, b"city"])
    def test_non_path_non_callable_values_are_rejected(self, source):
        with pytest.raises(MappingError) as exc_info:
            PropertyMap({"enrichment_city": source})
        message = str(exc_info.value)
        assert "enrichment_city" in message
        assert type(source).__name__ in message

    def test_every_problem_is_listed(self):
        with pytest.raises(MappingError) as exc_info:
            PropertyMap({"enrichment_city": 1, "": "city", "enrichment_state": None})
        message = str(exc_info.value)
        assert "enrichment_city" in message
        assert "enrichment_state" in message
        assert "property name ''" in message

    def test_the_map_is_copied(self):
        fields = {"enrichment_city": "city"}
        property_map = PropertyMap(fields)
        fields["enrichment_state"] = "state"
        assert list(property_map.fields) == ["enrichment_city"]

    def test_repr_shows_fields(self):
        assert "enrichment_city" in repr(PropertyMap({"enrichment_city": "city"}))


# --------------------------------------------------------------------------------------------
# EventMapping
# --------------------------------------------------------------------------------------------

PROFILE_MAPPING = EventMapping(
    user_id="pk",
    group_id="account.external_id",
    properties=PropertyMap(
        {
            "enrichment_city": "city",
            "enrichment_first_name": "first_name",
            "enrichment_last_name": "last_name",
            "enrichment_full_name": "get_full_name",
            "enrichment_employment_name": "account.company.name",
            "enrichment_employment_domain": "account.company.domain",
            "enrichment_phone": lambda obj: [phone.number for phone in obj.phone_numbers],
            "enrichment_state": "meta.geo.state",
        }
    ),
    timestamp="enriched_at",
    context={"source": "product"},
)


class TestEventMappingBuild:
    def test_build_on_an_object(self):
        event = PROFILE_MAPPING.build(_profile())
        assert isinstance(event, UserEnrichedEvent)
        assert event.user_id == "7"
        assert event.group_id == "acct-1"
        assert event.timestamp == datetime(2023, 11, 2, 0, 30, 8, 276000, tzinfo=UTC)
        assert event.context == {"source": "product"}
        props = event.properties
        assert props.enrichment_city == "Pune"
        assert props.enrichment_full_name == "Santosh Yadav"
        assert props.enrichment_employment_name == "ThriveStack"
        assert props.enrichment_employment_domain == "thrivestack.ai"
        assert props.enrichment_phone == ["+919876543210", "+912000000000"]
        assert props.enrichment_state == "Maharashtra"
        assert props.enrichment_country == ""
        item = event.to_thrivestack()
        assert item["context"] == {"group_id": "acct-1", "source": "product"}
        assert item["timestamp"] == "2023-11-02T00:30:08.276Z"

    def test_build_on_a_dict(self):
        mapping = EventMapping(
            user_id="user.id",
            group_id="user.account_id",
            properties=PropertyMap(
                {"enrichment_city": "geo.city", "enrichment_phone": "phones", "source": "src"}
            ),
            timestamp="at",
        )
        event = mapping.build(
            {
                "user": {"id": 42, "account_id": "acct-9"},
                "geo": {"city": "Pune"},
                "phones": "+1",
                "src": "crm",
                "at": "2023-11-02T06:00:08.276+05:30",
            }
        )
        assert event.user_id == "42"
        assert event.group_id == "acct-9"
        assert event.properties.enrichment_city == "Pune"
        assert event.properties.enrichment_phone == ["+1"]
        assert event.properties.extra == {"source": "crm"}
        assert event.timestamp == datetime(2023, 11, 2, 0, 30, 8, 276000, tzinfo=UTC)

    def test_callables_for_ids_and_timestamp(self):
        mapping = EventMapping(
            user_id=lambda obj: f"user-{obj.pk}",
            group_id=lambda obj: obj.account.external_id.upper(),
            properties=lambda obj: {"enrichment_city": obj.city},
            timestamp=lambda obj: obj.enriched_at + timedelta(hours=1),
        )
        event = mapping.build(_profile())
        assert (event.user_id, event.group_id) == ("user-7", "ACCT-1")
        assert event.timestamp == datetime(2023, 11, 2, 1, 30, 8, 276000, tzinfo=UTC)

    def test_without_timestamp_the_event_is_stamped_now(self):
        mapping = EventMapping(
            user_id="pk", group_id="account.external_id", properties=lambda obj: {}
        )
        before = datetime.now(UTC) - timedelta(seconds=1)
        event = mapping.build(_profile())
        assert before <= event.timestamp <= datetime.now(UTC)

    def test_timestamp_path_resolving_to_none_means_now(self):
        before = datetime.now(UTC) - timedelta(seconds=1)
        event = PROFILE_MAPPING.build(_profile(enriched_at=None))
        assert event.timestamp >= before

    def test_timestamp_override(self):
        moment = datetime(2024, 1, 1, tzinfo=UTC)
        assert PROFILE_MAPPING.build(_profile(), timestamp=moment).timestamp == moment

    def test_properties_override_with_a_dict(self):
        event = PROFILE_MAPPING.build(_profile(), properties={"enrichment_city": "Mumbai"})
        assert event.properties.enrichment_city == "Mumbai"
        assert event.properties.enrichment_full_name == ""

    def test_properties_override_does_not_call_the_map(self):
        def explode(obj: Any) -> dict[str, Any]:
            raise AssertionError("the mapping's properties must not be read")

        mapping = EventMapping(user_id="pk", group_id="account.external_id", properties=explode)
        event = mapping.build(_profile(), properties={"enrichment_city": "Delhi"})
        assert event.properties.enrichment_city == "Delhi"

    def test_properties_override_with_a_model(self):
        override = EnrichmentProperties(enrichment_city="Goa", score=1)
        event = PROFILE_MAPPING.build(_profile(), properties=override)
        assert event.properties == override

    def test_properties_source_returning_a_model(self):
        mapping = EventMapping(
            user_id="pk",
            group_id="account.external_id",
            properties=lambda obj: EnrichmentProperties(enrichment_city=obj.city),
        )
        assert mapping.build(_profile()).properties.enrichment_city == "Pune"
        assert mapping.properties_of(_profile()).enrichment_city == "Pune"

    def test_build_is_deterministic(self):
        first, second = PROFILE_MAPPING.build(_profile()), PROFILE_MAPPING.build(_profile())
        assert first.message_id == second.message_id
        assert first == second

    def test_mapping_context_is_not_shared_with_the_event(self):
        event = PROFILE_MAPPING.build(_profile())
        event.context["source"] = "changed"
        assert PROFILE_MAPPING.context == {"source": "product"}


class TestEventMappingErrors:
    def test_errors_are_aggregated(self):
        with pytest.raises(EventValidationError) as exc_info:
            PROFILE_MAPPING.build(_profile(pk=None, city=12))
        error = exc_info.value
        paths = [path for path, _ in error.problems]
        assert "user_id" in paths
        assert "properties.enrichment_city" in paths
        assert len(error.problems) == 2
        message = str(error)
        assert "user_id: missing: the mapped value is None" in message
        assert "properties.enrichment_city: expected a string or null, got int 12" in message
        assert isinstance(error, ValueError)

    def test_every_bad_field_is_reported(self):
        mapping = EventMapping(
            user_id="uid",
            group_id="gid",
            properties=PropertyMap({"enrichment_phone": "phones", "enrichment_state": "state"}),
            timestamp="at",
        )
        with pytest.raises(EventValidationError) as exc_info:
            mapping.build({"uid": " ", "gid": True, "phones": ["+1", 5], "state": {}, "at": "soon"})
        assert sorted(path for path, _ in exc_info.value.problems) == [
            "group_id",
            "properties.enrichment_phone",
            "properties.enrichment_state",
            "timestamp",
            "user_id",
        ]

    def test_problem_messages_drop_pydantics_prefix(self):
        with pytest.raises(EventValidationError) as exc_info:
            PROFILE_MAPPING.build(_profile(city=12))
        ((path, message),) = exc_info.value.problems
        assert path == "properties.enrichment_city"
        assert not message.startswith("Value error")

    def test_phone_item_error_has_the_property_path(self):
        with pytest.raises(EventValidationError) as exc_info:
            PROFILE_MAPPING.build(_profile(phone_numbers=[Phone(5)]))
        assert exc_info.value.problems[0][0] == "properties.enrichment_phone"
        assert "item 0" in exc_info.value.problems[0][1]

    def test_missing_group_id_is_reported(self):
        with pytest.raises(EventValidationError) as exc_info:
            PROFILE_MAPPING.build(_profile(account=None))
        assert [path for path, _ in exc_info.value.problems] == ["group_id"]

    def test_path_typo_is_a_mapping_error(self):
        mapping = EventMapping(
            user_id="pkk", group_id="account.external_id", properties=lambda obj: {}
        )
        with pytest.raises(MappingError, match="pkk"):
            mapping.build(_profile())

    def test_properties_of_names_the_bad_property(self):
        with pytest.raises(EventValidationError) as exc_info:
            PROFILE_MAPPING.properties_of(_profile(city=["Pune"]))
        assert exc_info.value.problems[0][0] == "enrichment_city"
        assert str(exc_info.value).startswith("properties: enrichment_city:")

    def test_properties_of_valid(self):
        props = PROFILE_MAPPING.properties_of(_profile())
        assert props.enrichment_state == "Maharashtra"

    def test_non_json_extra_from_the_map_is_reported(self):
        mapping = EventMapping(
            user_id="pk",
            group_id="account.external_id",
            properties=lambda obj: {"custom_score": float("nan")},
        )
        with pytest.raises(EventValidationError, match="custom_score"):
            mapping.build(_profile())


# --------------------------------------------------------------------------------------------
# EventMapping with a provider preset reading a stored payload
# --------------------------------------------------------------------------------------------


@dataclass
class EnrichmentRecord:
    """A row holding an Apollo payload as JSON text, the way a text column stores it."""

    user_pk: int
    account_id: str
    payload: Any
    fetched_at: datetime = field(default_factory=lambda: datetime(2024, 5, 1, tzinfo=UTC))


class TestEventMappingWithPreset:
    MAPPING = EventMapping(
        user_id="user_pk",
        group_id="account_id",
        properties=preset_from_path("apollo", "payload"),
        timestamp="fetched_at",
    )

    def test_json_text_payload(self):
        payload = json.dumps(
            {"person": {"first_name": "Ada", "last_name": "Lovelace", "city": "London"}}
        )
        event = self.MAPPING.build(EnrichmentRecord(1, "acct", payload))
        assert event.properties.enrichment_full_name == "Ada Lovelace"
        assert event.properties.enrichment_city == "London"
        assert event.to_thrivestack()["timestamp"] == "2024-05-01T00:00:00.000Z"

    def test_bad_payload_value_names_the_property(self):
        record = EnrichmentRecord(1, "acct", {"city": 9})
        with pytest.raises(EventValidationError) as exc_info:
            self.MAPPING.build(record)
        assert [path for path, _ in exc_info.value.problems] == ["enrichment_city"]
        assert "apollo payload" in str(exc_info.value)

    def test_empty_payload_gives_empty_properties(self):
        event = self.MAPPING.build(EnrichmentRecord(1, "acct", ""))
        assert event.properties == EnrichmentProperties()
