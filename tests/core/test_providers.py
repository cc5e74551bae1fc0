"""Provider presets against the bundled fixtures and sparse inline payloads."""

from __future__ import annotations

import copy
import json
from importlib import resources
from types import SimpleNamespace
from typing import Any

import pytest

from tests.core.conftest import schema_errors
from tracking_adapter import (
    ConfigurationError,
    EnrichmentProperties,
    EventValidationError,
    MappingError,
    UserEnrichedEvent,
)
from tracking_adapter.providers import (
    PRESETS,
    from_apollo,
    from_clearbit,
    from_pdl,
    get_preset,
    preset_from_path,
)


def _fixture(name: str) -> dict[str, Any]:
    text = resources.files("tracking_adapter").joinpath("fixtures", name).read_text("utf-8")
    return json.loads(text)


@pytest.fixture
def clearbit() -> dict[str, Any]:
    return _fixture("clearbit_person.json")


@pytest.fixture
def apollo() -> dict[str, Any]:
    return _fixture("apollo_person.json")


@pytest.fixture
def pdl() -> dict[str, Any]:
    return _fixture("pdl_person.json")


def _problem_paths(exc_info: pytest.ExceptionInfo[EventValidationError]) -> list[str]:
    return [path for path, _ in exc_info.value.problems]


# Sparse, realistic payloads: what providers return for a thinly known person.
SPARSE_CLEARBIT = {
    "id": "b1c2",
    "name": {"fullName": None, "givenName": "Priya", "familyName": "Sharma"},
    "email": "priya.sharma@Gmail.com",
    "location": None,
    "timeZone": None,
    "geo": {
        "city": None,
        "state": None,
        "stateCode": None,
        "country": "India",
        "countryCode": "IN",
    },
    "avatar": None,
    "employment": {"domain": None, "name": None, "title": None, "role": None, "seniority": None},
    "facebook": {"handle": None},
    "github": {"handle": None},
    "twitter": {"handle": None},
    "linkedin": {"handle": None},
    "emailProvider": True,
    "phone": None,
    "activeAt": None,
    "inactiveAt": None,
}

SPARSE_APOLLO = {
    "person": {
        "id": "65f0",
        "first_name": "Wei",
        "last_name": None,
        "name": None,
        "linkedin_url": "https://www.linkedin.com/in/wei-example",
        "title": None,
        "photo_url": None,
        "twitter_url": None,
        "github_url": None,
        "facebook_url": None,
        "state": None,
        "city": "Singapore",
        "country": "Singapore",
        "time_zone": None,
        "present_raw_address": None,
        "formatted_address": "Singapore",
        "departments": [],
        "subdepartments": None,
        "seniority": None,
        "phone_numbers": [
            {"raw_number": "+65 6123 4567", "sanitized_number": None, "type": "work"},
            {"raw_number": None, "sanitized_number": None},
        ],
        "organization": None,
    }
}

SPARSE_PDL = {
    "status": 200,
    "likelihood": 6,
    "data": {
        "full_name": None,
        "first_name": "maria",
        "last_name": "garcia",
        "linkedin_url": "linkedin.com/in/maria-garcia-example",
        "linkedin_username": None,
        "facebook_url": None,
        "facebook_username": None,
        "twitter_url": None,
        "twitter_username": None,
        "github_url": "github.com/mgarcia-example",
        "github_username": None,
        "mobile_phone": "+34600000000",
        "job_title": None,
        "job_title_role": None,
        "job_title_sub_role": None,
        "job_title_levels": [],
        "job_company_name": None,
        "job_company_website": None,
        "location_name": "madrid, spain",
        "location_locality": "madrid",
        "location_region": None,
        "location_country": "spain",
        "phone_numbers": ["+34911111111"],
    },
}


# --------------------------------------------------------------------------------------------
# Clearbit
# --------------------------------------------------------------------------------------------


class TestClearbit:
    def test_fixture_maps_every_documented_field(self, clearbit):
        props = from_clearbit(clearbit)
        assert isinstance(props, EnrichmentProperties)
        assert props.enrichment_active_at == "2012-01-01T00:00:00.000Z"
        assert props.enrichment_avatar.startswith("https://d1ts43dypk8bqh.cloudfront.net/")
        assert props.enrichment_city == "San Francisco"
        assert props.enrichment_country == "United States"
        assert props.enrichment_country_code == "US"
        assert props.enrichment_email_provider == ""  # emailProvider: false
        assert props.enrichment_employment_domain == "example.com"
        assert props.enrichment_employment_name == "Example Inc"
        assert props.enrichment_employment_role == "leadership"
        assert props.enrichment_employment_seniority == "executive"
        assert props.enrichment_employment_sub_role == "ceo"
        assert props.enrichment_employment_title == "Co-founder and CEO"
        assert props.enrichment_facebook_handle == "amaccaw"
        assert props.enrichment_first_name == "Alex"
        assert props.enrichment_full_name == "Alex MacCaw"
        assert props.enrichment_github_handle == "maccman"
        assert props.enrichment_inactive_at == ""  # inactiveAt: null
        assert props.enrichment_last_name == "MacCaw"
        assert props.enrichment_linkedin_handle == "in/alex-maccaw-ab592978"
        assert props.enrichment_location == "San Francisco, CA, US"
        assert props.enrichment_phone == ["+1 415-555-0132"]
        assert props.enrichment_state == "California"
        assert props.enrichment_state_code == "CA"
        assert props.enrichment_time_zone == "America/Los_Angeles"
        assert props.enrichment_twitter_handle == "maccaw"
        assert props.extra == {}

    def test_bare_person_and_envelope_agree(self, clearbit):
        assert from_clearbit(clearbit["person"]) == from_clearbit(clearbit)

    def test_payload_is_not_mutated(self, clearbit):
        before = copy.deepcopy(clearbit)
        from_clearbit(clearbit, enrichment_email_provider="Clearbit")
        assert clearbit == before

    def test_email_provider_true_gives_the_email_domain(self, clearbit):
        clearbit["person"]["emailProvider"] = True
        clearbit["person"]["email"] = "Alex@GMail.COM"
        assert from_clearbit(clearbit).enrichment_email_provider == "gmail.com"

    def test_email_provider_true_without_email_is_empty(self):
        assert from_clearbit({"emailProvider": True}).enrichment_email_provider == ""
        assert (
            from_clearbit({"emailProvider": True, "email": "nope"}).enrichment_email_provider == ""
        )

    def test_email_provider_string_passes_through(self):
        assert from_clearbit({"emailProvider": "Gmail"}).enrichment_email_provider == "Gmail"

    def test_email_provider_of_wrong_type_names_the_property(self):
        with pytest.raises(EventValidationError) as exc_info:
            from_clearbit({"emailProvider": 1})
        assert _problem_paths(exc_info) == ["enrichment_email_provider"]

    def test_sparse_payload(self):
        props = from_clearbit(SPARSE_CLEARBIT)
        assert props.enrichment_full_name == "Priya Sharma"
        assert props.enrichment_first_name == "Priya"
        assert props.enrichment_email_provider == "gmail.com"
        assert props.enrichment_country_code == "IN"
        assert props.enrichment_city == ""
        assert props.enrichment_phone == []
        assert props.enrichment_active_at == ""
        assert props.enrichment_twitter_handle == ""

    def test_full_name_is_never_split(self):
        props = from_clearbit({"name": {"fullName": "Alex MacCaw"}})
        assert props.enrichment_full_name == "Alex MacCaw"
        assert props.enrichment_first_name == ""
        assert props.enrichment_last_name == ""

    def test_full_name_from_one_part(self):
        assert from_clearbit({"name": {"givenName": "Alex"}}).enrichment_full_name == "Alex"
        assert from_clearbit({"name": {"familyName": " MacCaw "}}).enrichment_full_name == "MacCaw"

    def test_blank_values_become_empty_and_text_is_stripped(self):
        props = from_clearbit({"geo": {"city": "   ", "state": "  California "}})
        assert props.enrichment_city == ""
        assert props.enrichment_state == "California"

    def test_wrong_typed_field_names_the_property(self, clearbit):
        clearbit["person"]["geo"]["stateCode"] = 6
        clearbit["person"]["employment"]["title"] = ["CEO"]
        with pytest.raises(EventValidationError) as exc_info:
            from_clearbit(clearbit)
        assert sorted(_problem_paths(exc_info)) == [
            "enrichment_employment_title",
            "enrichment_state_code",
        ]
        assert str(exc_info.value).startswith("clearbit payload: ")

    @pytest.mark.parametrize(
        ("preset", "payload"),
        [
            (from_clearbit, {"geo": "San Francisco"}),
            (from_clearbit, {"name": "Alex MacCaw"}),
            (from_apollo, {"organization": "ThriveStack"}),
        ],
        ids=["clearbit-geo-str", "clearbit-name-str", "apollo-organization-str"],
    )
    def test_wrong_shaped_nested_object_is_an_event_validation_error(self, preset, payload):
        with pytest.raises(EventValidationError):
            preset(payload)


# --------------------------------------------------------------------------------------------
# Apollo
# --------------------------------------------------------------------------------------------


class TestApollo:
    def test_fixture_mapping(self, apollo):
        props = from_apollo(apollo)
        assert props.enrichment_avatar == (
            "https://static.licdn.com/aero-v1/sc/h/9c8pery4andzj6ohjkjp54ma2"
        )
        assert props.enrichment_city == "Pune"
        assert props.enrichment_country == "India"
        assert props.enrichment_employment_domain == "thrivestack.ai"
        assert props.enrichment_employment_name == "ThriveStack"
        assert props.enrichment_employment_role == "master_engineering_technical"
        assert props.enrichment_employment_seniority == "senior"
        assert props.enrichment_employment_sub_role == "software_development"
        assert props.enrichment_employment_title == "Senior Software Engineer"
        assert props.enrichment_first_name == "Santosh"
        assert props.enrichment_last_name == "Yadav"
        assert props.enrichment_full_name == "Santosh Yadav"
        assert props.enrichment_location == "Pune, Maharashtra, India"
        assert props.enrichment_phone == ["+919876543210"]  # sanitized_number, not raw
        assert props.enrichment_state == "Maharashtra"
        assert props.enrichment_time_zone == "Asia/Kolkata"
        # Apollo has none of these.
        assert props.enrichment_active_at == ""
        assert props.enrichment_country_code == ""
        assert props.enrichment_email_provider == ""
        assert props.enrichment_state_code == ""
        assert props.extra == {}

    def test_urls_stay_urls(self, apollo):
        props = from_apollo(apollo)
        assert props.enrichment_linkedin_handle == (
            "http://www.linkedin.com/in/santosh-yadav-7a803a54"
        )
        assert props.enrichment_github_handle == "https://github.com/santosh-yadav-example"
        assert props.enrichment_twitter_handle == ""  # twitter_url: null
        assert props.enrichment_facebook_handle == ""

    def test_fixture_reproduces_the_spec_sample_values(self, apollo, sample_1):
        props = from_apollo(
            apollo, enrichment_email_provider="Apollo", enrichment_country_code="In"
        ).to_wire()
        expected = sample_1["properties"]
        for name in (
            "enrichment_avatar",
            "enrichment_city",
            "enrichment_country",
            "enrichment_country_code",
            "enrichment_email_provider",
            "enrichment_employment_domain",
            "enrichment_employment_name",
            "enrichment_first_name",
            "enrichment_full_name",
            "enrichment_last_name",
            "enrichment_linkedin_handle",
            "enrichment_state",
        ):
            assert props[name] == expected[name], name

    def test_bare_person_and_envelope_agree(self, apollo):
        assert from_apollo(apollo["person"]) == from_apollo(apollo)

    def test_sparse_payload(self):
        props = from_apollo(SPARSE_APOLLO)
        assert props.enrichment_full_name == "Wei"
        assert props.enrichment_last_name == ""
        assert props.enrichment_linkedin_handle == "https://www.linkedin.com/in/wei-example"
        assert props.enrichment_location == "Singapore"  # formatted_address fallback
        assert props.enrichment_phone == ["+65 6123 4567"]  # raw_number when not sanitized
        assert props.enrichment_employment_role == ""  # empty departments
        assert props.enrichment_employment_sub_role == ""
        assert props.enrichment_employment_name == ""  # organization: null

    def test_no_match_envelope_is_empty(self):
        assert from_apollo({"person": None}) == EnrichmentProperties()

    def test_phone_strings_are_kept(self):
        props = from_apollo({"phone_numbers": ["+1 555", None, {"sanitized_number": "+2"}]})
        assert props.enrichment_phone == ["+1 555", "+2"]

    def test_bad_phone_entry_names_the_property(self):
        with pytest.raises(EventValidationError) as exc_info:
            from_apollo({"phone_numbers": [{"sanitized_number": 15550100}]})
        assert _problem_paths(exc_info) == ["enrichment_phone"]

    def test_phone_numbers_not_a_list_names_the_property(self):
        with pytest.raises(EventValidationError) as exc_info:
            from_apollo({"phone_numbers": {"sanitized_number": "+1"}})
        assert _problem_paths(exc_info) == ["enrichment_phone"]

    def test_wrong_typed_field_names_the_property(self, apollo):
        apollo["person"]["seniority"] = 3
        with pytest.raises(EventValidationError) as exc_info:
            from_apollo(apollo)
        assert _problem_paths(exc_info) == ["enrichment_employment_seniority"]
        assert "apollo payload" in str(exc_info.value)


# --------------------------------------------------------------------------------------------
# People Data Labs
# --------------------------------------------------------------------------------------------


class TestPDL:
    def test_fixture_mapping(self, pdl):
        props = from_pdl(pdl)
        assert props.enrichment_city == "san francisco"
        assert props.enrichment_country == "united states"
        assert props.enrichment_state == "california"
        assert props.enrichment_location == "san francisco, california, united states"
        assert props.enrichment_employment_domain == "peopledatalabs.com"
        assert props.enrichment_employment_name == "people data labs"
        assert props.enrichment_employment_role == "operations"
        assert props.enrichment_employment_sub_role == "executive"
        assert props.enrichment_employment_seniority == "cxo"  # job_title_levels[0]
        assert props.enrichment_employment_title == "co-founder and chief executive officer"
        assert props.enrichment_first_name == "sean"
        assert props.enrichment_last_name == "thorne"
        assert props.enrichment_full_name == "sean thorne"
        assert props.enrichment_phone == ["+14155688415", "+14155550100"]  # no duplicate
        assert props.enrichment_avatar == ""
        assert props.enrichment_time_zone == ""
        assert props.enrichment_country_code == ""

    def test_usernames_are_preferred_over_urls(self, pdl):
        props = from_pdl(pdl)
        assert props.enrichment_linkedin_handle == "seanthorne"
        assert props.enrichment_facebook_handle == "deseanthorne"
        assert props.enrichment_twitter_handle == "seanthorne5"
        assert props.enrichment_github_handle == ""  # both null

    def test_url_used_when_username_missing(self, pdl):
        pdl["data"]["linkedin_username"] = None
        pdl["data"]["twitter_username"] = ""
        props = from_pdl(pdl)
        assert props.enrichment_linkedin_handle == "linkedin.com/in/seanthorne"
        assert props.enrichment_twitter_handle == "twitter.com/seanthorne5"

    def test_bare_person_and_envelope_agree(self, pdl):
        assert from_pdl(pdl["data"]) == from_pdl(pdl)

    def test_sparse_payload(self):
        props = from_pdl(SPARSE_PDL)
        assert props.enrichment_full_name == "maria garcia"
        assert props.enrichment_linkedin_handle == "linkedin.com/in/maria-garcia-example"
        assert props.enrichment_github_handle == "github.com/mgarcia-example"
        assert props.enrichment_employment_seniority == ""  # empty levels
        assert props.enrichment_phone == ["+34600000000", "+34911111111"]  # mobile first
        assert props.enrichment_state == ""

    def test_mobile_phone_alone(self):
        assert from_pdl({"mobile_phone": "+1555"}).enrichment_phone == ["+1555"]

    def test_first_non_empty_level_is_used(self):
        assert from_pdl({"job_title_levels": [None, "", "vp"]}).enrichment_employment_seniority == (
            "vp"
        )

    def test_error_envelope_gives_empty_properties(self):
        error = {"status": 404, "error": {"type": "not_found", "message": "No records"}}
        assert from_pdl(error) == EnrichmentProperties()

    def test_wrong_typed_field_names_the_property(self):
        with pytest.raises(EventValidationError) as exc_info:
            from_pdl({"location_locality": 94107, "phone_numbers": [14155550100]})
        assert sorted(_problem_paths(exc_info)) == ["enrichment_city", "enrichment_phone"]


# --------------------------------------------------------------------------------------------
# Shared behaviour of all three presets
# --------------------------------------------------------------------------------------------

ALL_PRESETS = pytest.mark.parametrize(
    ("name", "preset"),
    [("clearbit", from_clearbit), ("apollo", from_apollo), ("pdl", from_pdl)],
)


class TestAllPresets:
    @ALL_PRESETS
    def test_none_payload_gives_empty_properties(self, name, preset):
        assert preset(None) == EnrichmentProperties()

    @ALL_PRESETS
    def test_empty_payload_gives_empty_properties(self, name, preset):
        assert preset({}) == EnrichmentProperties()

    @ALL_PRESETS
    @pytest.mark.parametrize("payload", ["a string", 42, ["list"], b"{}"])
    def test_non_dict_payload_is_an_error_naming_the_provider(self, name, preset, payload):
        with pytest.raises(EventValidationError) as exc_info:
            preset(payload)
        assert _problem_paths(exc_info) == [name]
        assert type(payload).__name__ in str(exc_info.value)

    @ALL_PRESETS
    def test_keyword_overrides_replace_and_add(self, name, preset):
        payload = _fixture(f"{name}_person.json")
        props = preset(
            payload,
            enrichment_city="Override City",
            enrichment_email_provider=name.title(),
            enrichment_first_name=None,
            enrichment_source=name,
        )
        assert props.enrichment_city == "Override City"
        assert props.enrichment_email_provider == name.title()
        assert props.enrichment_first_name == ""  # None override means "not known"
        assert props.extra == {"enrichment_source": name}

    @ALL_PRESETS
    def test_bad_override_names_the_property(self, name, preset):
        with pytest.raises(EventValidationError) as exc_info:
            preset({}, enrichment_city=5)
        assert _problem_paths(exc_info) == ["enrichment_city"]
        assert f"{name} payload" in str(exc_info.value)

    @ALL_PRESETS
    def test_fixture_builds_a_valid_sendable_event(self, name, preset, track_item_schema):
        props = preset(_fixture(f"{name}_person.json"))
        event = UserEnrichedEvent(user_id="u-1", group_id="g-1", properties=props)
        item = event.to_thrivestack()
        assert schema_errors(track_item_schema, item) == []
        json.dumps(item, ensure_ascii=False, allow_nan=False).encode("utf-8")


# --------------------------------------------------------------------------------------------
# get_preset / preset_from_path
# --------------------------------------------------------------------------------------------


class TestGetPreset:
    def test_known_names(self):
        assert get_preset("clearbit") is from_clearbit
        assert get_preset("apollo") is from_apollo
        assert get_preset("pdl") is from_pdl
        assert set(PRESETS) == {"apollo", "clearbit", "pdl"}

    @pytest.mark.parametrize("name", ["zoominfo", "Clearbit", "", None, ["apollo"]])
    def test_unknown_name_lists_the_choices(self, name):
        with pytest.raises(ConfigurationError) as exc_info:
            get_preset(name, setting="TRACKING_ADAPTER['PROVIDER']")
        message = str(exc_info.value)
        assert "apollo, clearbit, pdl" in message
        assert "TRACKING_ADAPTER['PROVIDER']" in message
        assert repr(name) in message

    def test_default_setting_name(self):
        with pytest.raises(ConfigurationError, match=r"^provider: unknown provider 'x'"):
            get_preset("x")


class TestPresetFromPath:
    def test_reads_a_json_string_attribute(self, clearbit):
        source = preset_from_path("clearbit", "enrichment.payload")
        obj = SimpleNamespace(enrichment=SimpleNamespace(payload=json.dumps(clearbit)))
        assert source(obj) == from_clearbit(clearbit)

    def test_reads_json_bytes(self, pdl):
        source = preset_from_path("pdl", "raw")
        assert source(SimpleNamespace(raw=json.dumps(pdl).encode())) == from_pdl(pdl)

    def test_reads_a_dict_attribute(self, apollo):
        source = preset_from_path("apollo", "payload")
        assert source(SimpleNamespace(payload=apollo)).enrichment_phone == ["+919876543210"]

    def test_reads_from_a_dict_source(self, apollo):
        source = preset_from_path("apollo", "row.payload")
        assert source({"row": {"payload": apollo}}).enrichment_city == "Pune"

    @pytest.mark.parametrize("payload", [None, "", "   "])
    def test_missing_or_blank_payload_gives_empty_properties(self, payload):
        source = preset_from_path("clearbit", "payload")
        assert source(SimpleNamespace(payload=payload)) == EnrichmentProperties()

    def test_invalid_json_names_the_path(self):
        source = preset_from_path("clearbit", "enrichment.payload")
        obj = SimpleNamespace(enrichment=SimpleNamespace(payload='{"person": {'))
        with pytest.raises(EventValidationError) as exc_info:
            source(obj)
        ((path, message),) = exc_info.value.problems
        assert path == "enrichment.payload"
        assert "is not valid JSON" in message

    def test_json_that_is_not_an_object_names_the_provider(self):
        source = preset_from_path("pdl", "payload")
        with pytest.raises(EventValidationError) as exc_info:
            source(SimpleNamespace(payload="[1, 2]"))
        assert _problem_paths(exc_info) == ["pdl"]

    def test_unknown_preset_fails_when_built(self):
        with pytest.raises(ConfigurationError, match="zoominfo"):
            preset_from_path("zoominfo", "payload")

    def test_missing_attribute_is_a_mapping_error(self):
        source = preset_from_path("apollo", "paylod")
        with pytest.raises(MappingError, match="paylod"):
            source(SimpleNamespace(payload={}))

    def test_has_a_descriptive_name(self):
        assert preset_from_path("apollo", "a.b").__qualname__ == "apollo_preset_at_a_b"
