"""Company presets (``group_enriched``) against the bundled fixtures and inline payloads."""

from __future__ import annotations

import copy
import json
import math
import re
from importlib import resources
from types import SimpleNamespace
from typing import Any

import pytest

from tests.core.conftest import GROUP_ENRICHED_SPEC, schema_errors
from tracking_adapter import (
    ConfigurationError,
    EnrichmentProperties,
    EventValidationError,
    GroupEnrichedEvent,
    GroupEnrichmentProperties,
)
from tracking_adapter.providers import (
    GROUP_PRESETS,
    PRESETS,
    PRESETS_BY_EVENT,
    from_apollo,
    from_apollo_organization,
    from_clearbit,
    from_clearbit_company,
    from_pdl,
    from_pdl_company,
    get_preset,
    preset_from_path,
)
from tracking_adapter.providers._common import build, decimal_text

SPEC_GROUP_ENRICHED = GROUP_ENRICHED_SPEC

# spec/group_enriched.md's table, in its order (written out here, not read from the schema).
SPEC_GROUP_PROPERTY_ORDER = (
    "enrichment_annual_revenue",
    "enrichment_city",
    "enrichment_country",
    "enrichment_country_code",
    "enrichment_crunchbase_handle",
    "enrichment_description",
    "enrichment_domain",
    "enrichment_domain_aliases",
    "enrichment_email_addresses",
    "enrichment_email_provider",
    "enrichment_employees",
    "enrichment_employees_range",
    "enrichment_facebook_handle",
    "enrichment_founder_year",
    "enrichment_industry",
    "enrichment_industry_group",
    "enrichment_legal_name",
    "enrichment_location",
    "enrichment_logo",
    "enrichment_market_cap",
    "enrichment_name",
    "enrichment_phone",
    "enrichment_phone_numbers",
    "enrichment_postal_code",
    "enrichment_raised",
    "enrichment_sector",
    "enrichment_state",
    "enrichment_state_code",
    "enrichment_street_address",
    "enrichment_street_name",
    "enrichment_street_number",
    "enrichment_sub_industry",
    "enrichment_tags",
    "enrichment_tech",
    "enrichment_tech_categories",
    "enrichment_time_zone",
    "enrichment_traffic_rank",
    "enrichment_twitter_handle",
    "enrichment_type",
    "group_type",
    "name",
    "planId",
    "planName",
)

BLANK = GroupEnrichmentProperties().to_wire()


def _fixture(name: str) -> dict[str, Any]:
    text = resources.files("tracking_adapter.fixtures").joinpath(name).read_text("utf-8")
    return json.loads(text)


def _problem_paths(exc_info: pytest.ExceptionInfo[EventValidationError]) -> list[str]:
    return [path for path, _ in exc_info.value.problems]


def _expected(**values: Any) -> dict[str, Any]:
    """The blank wire form with ``values`` filled in, in the spec's order."""
    unknown = set(values) - set(BLANK)
    assert not unknown, unknown
    return {**BLANK, **values}


@pytest.fixture
def clearbit() -> dict[str, Any]:
    return _fixture("clearbit_company.json")


@pytest.fixture
def apollo() -> dict[str, Any]:
    return _fixture("apollo_organization.json")


@pytest.fixture
def pdl() -> dict[str, Any]:
    return _fixture("pdl_company.json")


COMPANY_FIXTURES = {
    "clearbit": "clearbit_company.json",
    "apollo": "apollo_organization.json",
    "pdl": "pdl_company.json",
}

ALL_PRESETS = pytest.mark.parametrize(
    ("name", "preset"),
    [
        ("clearbit", from_clearbit_company),
        ("apollo", from_apollo_organization),
        ("pdl", from_pdl_company),
    ],
)


# --------------------------------------------------------------------------------------------
# Clearbit
# --------------------------------------------------------------------------------------------

CLEARBIT_EXPECTED = _expected(
    enrichment_annual_revenue="312000000",
    enrichment_city="San Francisco",
    enrichment_country="United States",
    enrichment_country_code="US",
    enrichment_crunchbase_handle="organization/brightwave-software",
    enrichment_description=(
        "Brightwave builds workflow software that helps operations teams automate approvals,"
        " audits and reporting across finance and HR."
    ),
    enrichment_domain="brightwave.example",
    enrichment_domain_aliases={"domains": ["brightwave-hq.example", "getbrightwave.example"]},
    enrichment_email_addresses=["hello@brightwave.example", "press@brightwave.example"],
    enrichment_email_provider="",  # emailProvider: false
    enrichment_employees=1450,
    enrichment_employees_range="1K-5K",
    enrichment_facebook_handle="brightwavehq",
    enrichment_founder_year=2014,
    enrichment_industry="Software",
    enrichment_industry_group="Software & Services",
    enrichment_legal_name="Brightwave Software, Inc.",
    enrichment_location="500 Howard St, Suite 300, San Francisco, CA 94105, USA",
    enrichment_logo="https://logo.clearbit.com/brightwave.example",
    enrichment_market_cap="2400000000",
    enrichment_name="Brightwave",
    enrichment_phone="+1 415-555-0142",
    enrichment_phone_numbers=["+1 415-555-0142", "+1 800-555-0199"],
    enrichment_postal_code="94105",
    enrichment_raised="128500000",
    enrichment_sector="Information Technology",
    enrichment_state="California",
    enrichment_state_code="CA",
    enrichment_street_address="500 Howard Street, Suite 300",  # built from the geo parts
    enrichment_street_name="Howard Street",
    enrichment_street_number="500",
    enrichment_sub_industry="Application Software",
    enrichment_tags=[
        "Technology",
        "SAAS",
        "B2B",
        "Enterprise",
        "Information Technology & Services",
    ],
    enrichment_tech="google_apps, salesforce, hubspot, segment, stripe, aws_route_53",
    enrichment_tech_categories=[
        "productivity",
        "crm",
        "marketing_automation",
        "analytics",
        "payment",
        "dns",
    ],
    enrichment_time_zone="America/Los_Angeles",
    enrichment_traffic_rank="151024",  # alexaGlobalRank, not the trafficRank band
    enrichment_twitter_handle="brightwave",
    enrichment_type="public",
)


class TestClearbitCompany:
    def test_fixture_maps_every_documented_field(self, clearbit):
        props = from_clearbit_company(clearbit)
        assert isinstance(props, GroupEnrichmentProperties)
        assert props.to_wire() == CLEARBIT_EXPECTED
        assert type(props.enrichment_employees) is int
        assert type(props.enrichment_founder_year) is int
        assert type(props.enrichment_tags) is list
        assert type(props.enrichment_tech) is str
        assert props.extra == {}

    def test_product_properties_are_not_taken_from_the_provider(self, clearbit):
        props = from_clearbit_company(clearbit)
        assert (props.group_type, props.name, props.planId, props.planName) == ("", "", "", "")

    @pytest.mark.parametrize(
        "envelope",
        [
            lambda company: {
                "person": {"id": "p-1", "email": "a@brightwave.example"},
                "company": company,
            },
            lambda company: {
                "ip": "203.0.113.7",
                "domain": "brightwave.example",
                "company": company,
            },
        ],
        ids=["combined", "reveal"],
    )
    def test_bare_company_and_envelopes_agree(self, clearbit, envelope):
        assert from_clearbit_company(envelope(clearbit)) == from_clearbit_company(clearbit)

    def test_payload_is_not_mutated(self, clearbit):
        before = copy.deepcopy(clearbit)
        props = from_clearbit_company(clearbit, planName="Pro")
        assert clearbit == before
        props.enrichment_domain_aliases["domains"].append("changed.example")
        assert clearbit == before

    def test_email_provider_true_gives_the_company_domain(self, clearbit):
        clearbit["emailProvider"] = True
        clearbit["domain"] = "GMail.com"
        assert from_clearbit_company(clearbit).enrichment_email_provider == "gmail.com"

    def test_email_provider_true_without_domain_is_empty(self):
        assert from_clearbit_company({"emailProvider": True}).enrichment_email_provider == ""

    def test_email_provider_string_passes_through(self):
        props = from_clearbit_company({"emailProvider": "Google Workspace"})
        assert props.enrichment_email_provider == "Google Workspace"

    def test_email_provider_of_wrong_type_names_the_property(self):
        with pytest.raises(EventValidationError) as exc_info:
            from_clearbit_company({"emailProvider": 1})
        assert _problem_paths(exc_info) == ["enrichment_email_provider"]

    @pytest.mark.parametrize(
        ("metrics", "expected"),
        [
            ({"annualRevenue": 2.5e9}, "2500000000"),  # an integral float, not "2.5e9"
            ({"annualRevenue": 1234.5}, "1234.5"),
            ({"annualRevenue": 0}, "0"),
            ({"annualRevenue": "  $1.2B "}, "$1.2B"),  # a string is kept as written
            ({"annualRevenue": None, "estimatedAnnualRevenue": "$10M-$50M"}, "$10M-$50M"),
            ({"annualRevenue": 5, "estimatedAnnualRevenue": "$1M-$10M"}, "5"),
            ({}, ""),
        ],
    )
    def test_annual_revenue_is_the_decimal_string(self, metrics, expected):
        props = from_clearbit_company({"metrics": metrics})
        assert props.enrichment_annual_revenue == expected

    def test_large_numbers_are_written_in_full(self):
        props = from_clearbit_company({"metrics": {"marketCap": 3.1e12, "raised": 10**15}})
        assert props.enrichment_market_cap == "3100000000000"
        assert props.enrichment_raised == "1000000000000000"

    def test_traffic_rank_falls_back_to_the_band(self, clearbit):
        clearbit["metrics"]["alexaGlobalRank"] = None
        assert from_clearbit_company(clearbit).enrichment_traffic_rank == "high"

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("annualRevenue", True),
            ("marketCap", math.nan),
            ("raised", [1]),
            ("alexaGlobalRank", {}),
        ],
    )
    def test_number_of_wrong_type_names_the_property(self, field, value):
        prop = {
            "annualRevenue": "enrichment_annual_revenue",
            "marketCap": "enrichment_market_cap",
            "raised": "enrichment_raised",
            "alexaGlobalRank": "enrichment_traffic_rank",
        }[field]
        with pytest.raises(EventValidationError) as exc_info:
            from_clearbit_company({"metrics": {field: value}})
        assert _problem_paths(exc_info) == [prop]

    @pytest.mark.parametrize(
        ("aliases", "expected"),
        [
            (None, None),
            ([], None),
            ([None, "  ", "a.example"], {"domains": ["a.example"]}),
            ("a.example", {"domains": ["a.example"]}),
            (
                {"domains": ["a.example"], "source": "dns"},
                {"domains": ["a.example"], "source": "dns"},
            ),
        ],
        ids=["null", "empty", "blanks", "one-string", "object"],
    )
    def test_domain_aliases_object(self, aliases, expected):
        props = from_clearbit_company({"domainAliases": aliases})
        assert props.enrichment_domain_aliases == expected

    def test_domain_alias_of_wrong_type_names_the_property_and_item(self):
        with pytest.raises(EventValidationError) as exc_info:
            from_clearbit_company({"domainAliases": ["a.example", 7]})
        ((path, message),) = exc_info.value.problems
        assert path == "enrichment_domain_aliases"
        assert "item 1 must be a string, got int 7" in message
        assert str(exc_info.value).startswith("clearbit payload: ")

    def test_an_override_replaces_a_bad_value_without_validating_it(self):
        props = from_clearbit_company(
            {"domainAliases": [7], "tech": [None, 8]},
            enrichment_domain_aliases=None,
            enrichment_tech="",
        )
        assert props.enrichment_domain_aliases is None
        assert props.enrichment_tech == ""

    def test_a_single_street_address_is_used_as_given(self, clearbit):
        clearbit["geo"]["streetAddress"] = "500 Howard St Ste 300"
        props = from_clearbit_company(clearbit)
        assert props.enrichment_street_address == "500 Howard St Ste 300"
        assert props.enrichment_street_number == "500"
        assert props.enrichment_street_name == "Howard Street"

    @pytest.mark.parametrize(
        ("geo", "expected"),
        [
            ({"streetNumber": "90", "streetName": "Main Street"}, "90 Main Street"),
            ({"streetName": "Main Street", "subPremise": "Floor 2"}, "Main Street, Floor 2"),
            ({"subPremise": "Unit 4"}, "Unit 4"),
            ({"streetNumber": " ", "streetName": None, "subPremise": None}, ""),
        ],
    )
    def test_street_address_is_built_from_the_parts_present(self, geo, expected):
        assert from_clearbit_company({"geo": geo}).enrichment_street_address == expected

    def test_street_part_of_wrong_type_names_its_property_once(self):
        with pytest.raises(EventValidationError) as exc_info:
            from_clearbit_company({"geo": {"streetNumber": 500, "streetName": "Howard Street"}})
        assert _problem_paths(exc_info) == ["enrichment_street_number"]
        with pytest.raises(EventValidationError) as exc_info:
            from_clearbit_company({"geo": {"streetName": "Howard Street", "subPremise": 300}})
        assert _problem_paths(exc_info) == ["enrichment_street_address"]

    @pytest.mark.parametrize(
        ("tech", "expected"),
        [
            (["react", None, "  ", " stripe "], "react, stripe"),
            ([], ""),
            (None, ""),
            ("react, stripe", "react, stripe"),
        ],
    )
    def test_tech_is_one_joined_string(self, tech, expected):
        assert from_clearbit_company({"tech": tech}).enrichment_tech == expected

    @pytest.mark.parametrize("tech", [["react", 3], {"react": True}, 3])
    def test_tech_of_wrong_type_names_the_property(self, tech):
        with pytest.raises(EventValidationError) as exc_info:
            from_clearbit_company({"tech": tech})
        assert _problem_paths(exc_info) == ["enrichment_tech"]

    def test_wrong_typed_fields_are_all_reported_in_spec_order(self, clearbit):
        clearbit["tech"] = ["react", 3]
        clearbit["geo"]["stateCode"] = 6
        clearbit["metrics"]["employees"] = "many"
        clearbit["tags"] = [1]
        with pytest.raises(EventValidationError) as exc_info:
            from_clearbit_company(clearbit)
        assert _problem_paths(exc_info) == [
            "enrichment_employees",
            "enrichment_state_code",
            "enrichment_tags",
            "enrichment_tech",
        ]
        assert str(exc_info.value).startswith("clearbit payload: ")

    def test_integral_float_counts_are_ints_and_bools_are_refused(self):
        props = from_clearbit_company({"metrics": {"employees": 240.0}, "foundedYear": 2014.0})
        assert props.enrichment_employees == 240
        assert type(props.enrichment_employees) is int
        assert props.enrichment_founder_year == 2014
        with pytest.raises(EventValidationError) as exc_info:
            from_clearbit_company({"metrics": {"employees": True}})
        assert _problem_paths(exc_info) == ["enrichment_employees"]

    @pytest.mark.parametrize("payload", [{"geo": "San Francisco"}, {"metrics": "big"}])
    def test_wrong_shaped_nested_object_is_an_event_validation_error(self, payload):
        with pytest.raises(EventValidationError):
            from_clearbit_company(payload)


# --------------------------------------------------------------------------------------------
# Apollo
# --------------------------------------------------------------------------------------------

APOLLO_EXPECTED = _expected(
    enrichment_annual_revenue="148600000",
    enrichment_city="Chicago",
    enrichment_country="United States",
    enrichment_crunchbase_handle="https://www.crunchbase.com/organization/kestrel-logistics",
    enrichment_description=(
        "Kestrel Logistics is a technology-driven third-party logistics provider that matches"
        " shippers with carriers and gives them live visibility into every load."
    ),
    enrichment_domain="kestrel-logistics.example",
    enrichment_employees=640,
    enrichment_facebook_handle="https://www.facebook.com/KestrelLogistics",
    enrichment_founder_year=2011,
    enrichment_industry="logistics & supply chain",
    enrichment_location="222 West Adams Street, Suite 1900, Chicago, Illinois 60606, US",
    enrichment_logo=(
        "https://zenprospect-production.s3.amazonaws.com/uploads/pictures/"
        "65a0c1d2e3f4a50001b2c3d4/picture"
    ),
    enrichment_name="Kestrel Logistics",
    enrichment_phone="+13125550176",  # primary_phone.sanitized_number
    enrichment_phone_numbers=["+13125550176", "+13125550188"],
    enrichment_postal_code="60606",
    enrichment_raised="87500000",
    enrichment_state="Illinois",
    enrichment_street_address="222 West Adams Street",
    enrichment_tags=[
        "freight brokerage",
        "supply chain visibility",
        "3pl",
        "last mile delivery",
        "transportation management",
    ],
    enrichment_tech="Amazon AWS, Google Analytics, Hubspot, Marketo, Salesforce, Zendesk",
    enrichment_tech_categories=[
        "Hosting",
        "Analytics and Tracking",
        "Marketing Automation",  # once, though two technologies have it
        "Customer Relationship Management",
        "Support and Feedback",
    ],
    enrichment_traffic_rank="287345",
    enrichment_twitter_handle="https://twitter.com/kestrellogistics",
)


class TestApolloOrganization:
    def test_fixture_mapping(self, apollo):
        props = from_apollo_organization(apollo)
        assert isinstance(props, GroupEnrichmentProperties)
        assert props.to_wire() == APOLLO_EXPECTED
        assert type(props.enrichment_employees) is int
        assert type(props.enrichment_founder_year) is int
        # Apollo has none of these.
        assert props.enrichment_country_code == ""
        assert props.enrichment_domain_aliases is None
        assert props.enrichment_email_addresses == []
        assert props.enrichment_employees_range == ""
        assert props.enrichment_type == ""  # no publicly_traded_symbol
        assert props.extra == {}

    def test_bare_organization_and_envelope_agree(self, apollo):
        assert from_apollo_organization(apollo["organization"]) == from_apollo_organization(apollo)

    def test_no_match_envelope_is_blank(self):
        assert from_apollo_organization({"organization": None}) == GroupEnrichmentProperties()

    def test_payload_is_not_mutated(self, apollo):
        before = copy.deepcopy(apollo)
        from_apollo_organization(apollo, planId="plan_42")
        assert apollo == before

    def test_a_traded_symbol_makes_it_public(self, apollo):
        apollo["organization"]["publicly_traded_symbol"] = "KSTL"
        assert from_apollo_organization(apollo).enrichment_type == "public"

    def test_printed_amounts_are_the_fallback(self, apollo):
        organization = apollo["organization"]
        organization["annual_revenue"] = None
        organization["total_funding"] = None
        props = from_apollo_organization(apollo)
        assert props.enrichment_annual_revenue == "148.6M"
        assert props.enrichment_raised == "87.5M"

    def test_seo_description_is_the_fallback(self, apollo):
        apollo["organization"]["short_description"] = None
        props = from_apollo_organization(apollo)
        assert props.enrichment_description == (
            "Freight brokerage and supply chain visibility for mid-market shippers."
        )

    def test_tech_names_fall_back_to_current_technologies(self, apollo):
        apollo["organization"]["technology_names"] = []
        props = from_apollo_organization(apollo)
        assert props.enrichment_tech == (
            "Amazon AWS, Google Analytics, Hubspot, Marketo, Salesforce, Zendesk"
        )

    @pytest.mark.parametrize(
        ("fields", "phone", "numbers"),
        [
            ({"primary_phone": {}, "phone": "+1 312-555-0100"}, "+1 312-555-0100", None),
            ({"primary_phone": {"number": "+1 312-555-0101"}}, "+1 312-555-0101", None),
            (
                {
                    "primary_phone": {"sanitized_number": "+13125550102"},
                    "sanitized_phone": "+13125550102",
                },
                "+13125550102",
                None,
            ),
            ({"primary_phone": None, "phone": None}, "", []),
        ],
        ids=["phone-only", "unsanitized", "same-number", "none"],
    )
    def test_phones(self, fields, phone, numbers):
        props = from_apollo_organization(fields)
        assert props.enrichment_phone == phone
        assert props.enrichment_phone_numbers == (numbers if numbers is not None else [phone])

    def test_phone_of_wrong_type_names_both_phone_properties(self):
        with pytest.raises(EventValidationError) as exc_info:
            from_apollo_organization({"phone": 3125550100})
        assert _problem_paths(exc_info) == ["enrichment_phone", "enrichment_phone_numbers"]

    @pytest.mark.parametrize(
        ("technologies", "message"),
        [
            (["Hosting"], "current_technologies[0] must be an object, got str"),
            ([{"name": "AWS", "category": 5}], "current_technologies[0].category must be a string"),
        ],
    )
    def test_bad_current_technologies_name_the_property(self, technologies, message):
        with pytest.raises(EventValidationError) as exc_info:
            from_apollo_organization(
                {"technology_names": ["AWS"], "current_technologies": technologies}
            )
        ((path, text),) = exc_info.value.problems
        assert path == "enrichment_tech_categories"
        assert message in text

    def test_wrong_typed_fields_name_the_properties(self, apollo):
        apollo["organization"]["estimated_num_employees"] = "640"
        apollo["organization"]["keywords"] = "freight, 3pl"  # one string: one tag
        apollo["organization"]["city"] = ["Chicago"]
        with pytest.raises(EventValidationError) as exc_info:
            from_apollo_organization(apollo)
        assert _problem_paths(exc_info) == ["enrichment_city", "enrichment_employees"]
        assert "apollo payload" in str(exc_info.value)

    def test_one_keyword_string_is_one_tag(self):
        props = from_apollo_organization({"keywords": "freight, 3pl"})
        assert props.enrichment_tags == ["freight, 3pl"]


# --------------------------------------------------------------------------------------------
# People Data Labs
# --------------------------------------------------------------------------------------------

PDL_EXPECTED = _expected(
    enrichment_annual_revenue="$25M-$50M",  # inferred_revenue, a band already
    enrichment_city="cambridge",
    enrichment_country="united states",
    enrichment_crunchbase_handle="crunchbase.com/organization/fernhill-biotech",  # from profiles
    enrichment_description=(
        "fernhill biotech develops gene therapies for rare inherited diseases of the liver and"
        " the eye, from discovery through clinical trials."
    ),
    enrichment_domain="fernhillbio.example",
    enrichment_domain_aliases={"domains": ["fernhillbiotech.example", "fernhill-bio.example"]},
    enrichment_employees=312,
    enrichment_employees_range="201-500",
    enrichment_facebook_handle="facebook.com/fernhillbio",
    enrichment_founder_year=2009,
    enrichment_industry="biotechnology",
    enrichment_location="cambridge, massachusetts, united states",
    enrichment_name="Fernhill Biotech",  # display_name
    enrichment_postal_code="02142",
    enrichment_raised="214500000",
    enrichment_state="massachusetts",
    enrichment_street_address="75 binney street",  # address_line_2 is not appended
    enrichment_tags=["gene therapy", "rare diseases", "biologics", "clinical trials"],
    enrichment_twitter_handle="twitter.com/fernhillbio",
    enrichment_type="private",
)


class TestPDLCompany:
    def test_fixture_mapping(self, pdl):
        props = from_pdl_company(pdl)
        assert isinstance(props, GroupEnrichmentProperties)
        assert props.to_wire() == PDL_EXPECTED
        assert type(props.enrichment_employees) is int
        assert type(props.enrichment_founder_year) is int
        assert props.extra == {}

    def test_record_at_the_top_under_data_and_bare_agree(self, pdl):
        bare = {key: value for key, value in pdl.items() if key not in ("status", "likelihood")}
        expected = from_pdl_company(pdl)
        assert from_pdl_company(bare) == expected
        assert from_pdl_company({"status": 200, "likelihood": 9, "data": bare}) == expected

    def test_error_envelope_is_blank(self):
        error = {"status": 404, "error": {"type": "not_found", "message": "No records were found"}}
        assert from_pdl_company(error) == GroupEnrichmentProperties()

    def test_name_falls_back_to_the_common_name(self, pdl):
        pdl["display_name"] = None
        assert from_pdl_company(pdl).enrichment_name == "fernhill biotech"

    def test_crunchbase_url_is_preferred_to_profiles(self, pdl):
        pdl["crunchbase_url"] = "crunchbase.com/organization/fernhill"
        assert from_pdl_company(pdl).enrichment_crunchbase_handle == (
            "crunchbase.com/organization/fernhill"
        )

    def test_fallbacks(self, pdl):
        pdl["industry"] = None
        pdl["summary"] = ""
        pdl["profiles"] = ["linkedin.com/company/fernhill-biotech"]
        props = from_pdl_company(pdl)
        assert props.enrichment_industry == "biotechnology research"  # industry_v2
        assert props.enrichment_description == "gene therapies for rare inherited diseases"
        assert props.enrichment_crunchbase_handle == ""

    def test_float_funding_is_written_in_full(self):
        assert from_pdl_company({"total_funding_raised": 45250000.0}).enrichment_raised == (
            "45250000"
        )

    def test_wrong_typed_fields_name_the_properties(self):
        with pytest.raises(EventValidationError) as exc_info:
            from_pdl_company(
                {"location": {"postal_code": 2142}, "size": 200, "alternative_domains": [1]}
            )
        assert _problem_paths(exc_info) == [
            "enrichment_domain_aliases",
            "enrichment_employees_range",
            "enrichment_postal_code",
        ]

    def test_location_of_wrong_shape_is_an_event_validation_error(self):
        with pytest.raises(EventValidationError):
            from_pdl_company({"location": "cambridge"})


# --------------------------------------------------------------------------------------------
# Shared behaviour of all three presets
# --------------------------------------------------------------------------------------------


class TestAllCompanyPresets:
    @ALL_PRESETS
    @pytest.mark.parametrize("payload", [None, {}])
    def test_no_data_gives_blank_properties(self, name, preset, payload):
        props = preset(payload)
        assert props == GroupEnrichmentProperties()
        assert props.is_blank()
        assert props.to_wire() == BLANK
        assert props.enrichment_domain_aliases is None
        assert props.enrichment_employees is None
        assert props.enrichment_tags == []

    @ALL_PRESETS
    @pytest.mark.parametrize("payload", ["a string", 42, ["list"], b"{}"])
    def test_non_dict_payload_is_an_error_naming_the_provider(self, name, preset, payload):
        with pytest.raises(EventValidationError) as exc_info:
            preset(payload)
        assert _problem_paths(exc_info) == [name]
        assert type(payload).__name__ in str(exc_info.value)

    @ALL_PRESETS
    def test_keyword_overrides_replace_and_add(self, name, preset):
        props = preset(
            _fixture(COMPANY_FIXTURES[name]),
            enrichment_city="Override City",
            enrichment_name=None,
            enrichment_employees=7,
            group_type="account",
            name="Acme (in product)",
            planId="plan_pro",
            planName="Pro",
            enrichment_source=name,
        )
        assert props.enrichment_city == "Override City"
        assert props.enrichment_name == ""  # None override means "not known"
        assert props.enrichment_employees == 7
        assert (props.group_type, props.name, props.planId, props.planName) == (
            "account",
            "Acme (in product)",
            "plan_pro",
            "Pro",
        )
        assert props.extra == {"enrichment_source": name}

    @ALL_PRESETS
    def test_bad_override_names_the_property(self, name, preset):
        with pytest.raises(EventValidationError) as exc_info:
            preset({}, enrichment_city=5, enrichment_employees="ten")
        assert _problem_paths(exc_info) == ["enrichment_city", "enrichment_employees"]
        assert f"{name} payload" in str(exc_info.value)

    @ALL_PRESETS
    def test_fixture_builds_a_valid_group_enriched_event(self, name, preset, track_item_schema):
        props = preset(_fixture(COMPANY_FIXTURES[name]), group_type="account", planName="Pro")
        event = GroupEnrichedEvent(user_id="u-1", group_id="acct-1", properties=props)
        item = event.to_thrivestack()
        assert item["event_name"] == "group_enriched"
        assert item["context"] == {"group_id": "acct-1"}
        assert list(item["properties"]) == list(SPEC_GROUP_PROPERTY_ORDER)
        assert len(item["properties"]) == 43
        assert schema_errors(track_item_schema, item) == []
        json.dumps(item, ensure_ascii=False, allow_nan=False).encode("utf-8")
        assert GroupEnrichedEvent.model_validate(item) == event  # the wire form reads back

    def test_spec_order_matches_the_shared_spec(self):
        table = SPEC_GROUP_ENRICHED.read_text("utf-8").split("## Properties", 1)[1]
        names = re.findall(r"^\| (\w+) \| (?:string|object|array|integer) \|", table, re.M)
        assert tuple(names) == SPEC_GROUP_PROPERTY_ORDER


# --------------------------------------------------------------------------------------------
# The person presets are unchanged
# --------------------------------------------------------------------------------------------


class TestPersonPresetsUnchanged:
    @pytest.mark.parametrize(
        ("preset", "fixture"),
        [
            (from_clearbit, "clearbit_person.json"),
            (from_apollo, "apollo_person.json"),
            (from_pdl, "pdl_person.json"),
        ],
    )
    def test_person_presets_still_give_enrichment_properties(self, preset, fixture):
        props = preset(_fixture(fixture))
        assert type(props) is EnrichmentProperties
        assert not props.is_blank()

    def test_clearbit_person_ignores_the_company_of_a_combined_response(self):
        combined = _fixture("clearbit_person.json")
        assert from_clearbit(combined) == from_clearbit(combined["person"])
        company = from_clearbit_company(combined)
        assert company.enrichment_name == "Example Inc"
        assert company.enrichment_domain == "example.com"

    def test_build_defaults_to_the_person_model(self):
        assert type(build("x", {"enrichment_city": "Pune"}, {})) is EnrichmentProperties
        group = build("x", {"enrichment_city": "Pune"}, {}, model=GroupEnrichmentProperties)
        assert type(group) is GroupEnrichmentProperties
        with pytest.raises(EventValidationError) as exc_info:
            build("x", {"enrichment_tech": 5}, {}, model=GroupEnrichmentProperties)
        assert str(exc_info.value).startswith("x payload: enrichment_tech: ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (251200000, "251200000"),
        (2.5e9, "2500000000"),
        (1e21, "1000000000000000000000"),
        (0.1, "0.1"),
        (1.5e-7, "0.00000015"),
        ("87.5M", "87.5M"),
        (None, None),
    ],
)
def test_decimal_text(value, expected):
    assert decimal_text(value) == expected


@pytest.mark.parametrize("value", [True, math.inf, math.nan, [1], {"a": 1}])
def test_decimal_text_leaves_what_it_cannot_convert_to_the_schema(value):
    result = decimal_text(value)
    assert result is value


# --------------------------------------------------------------------------------------------
# get_preset / preset_from_path
# --------------------------------------------------------------------------------------------


class TestGroupPresetRegistry:
    def test_tables(self):
        assert {
            "clearbit": from_clearbit_company,
            "apollo": from_apollo_organization,
            "pdl": from_pdl_company,
        } == GROUP_PRESETS
        assert {"apollo": from_apollo, "clearbit": from_clearbit, "pdl": from_pdl} == PRESETS
        assert PRESETS_BY_EVENT == {"user_enriched": PRESETS, "group_enriched": GROUP_PRESETS}

    def test_get_preset_by_event(self):
        assert get_preset("clearbit", event="group_enriched") is from_clearbit_company
        assert get_preset("apollo", event="group_enriched") is from_apollo_organization
        assert get_preset("pdl", event="group_enriched") is from_pdl_company
        assert get_preset("clearbit") is from_clearbit
        assert get_preset("clearbit", event="user_enriched") is from_clearbit

    def test_unknown_group_provider_lists_the_choices(self):
        with pytest.raises(ConfigurationError) as exc_info:
            get_preset("zoominfo", setting="SOURCES['group_enriched']", event="group_enriched")
        message = str(exc_info.value)
        assert message.startswith("SOURCES['group_enriched']: unknown provider 'zoominfo'")
        assert "apollo, clearbit, pdl" in message

    @pytest.mark.parametrize("event", ["account_enriched", "", None, ["group_enriched"]])
    def test_unknown_event_lists_the_events(self, event):
        with pytest.raises(ConfigurationError) as exc_info:
            get_preset("clearbit", event=event)
        message = str(exc_info.value)
        assert message.startswith("provider: ")
        assert repr(event) in message
        assert "group_enriched, user_enriched" in message

    def test_preset_from_path_reads_a_group_payload(self, clearbit):
        source = preset_from_path("clearbit", "company.payload", event="group_enriched")
        obj = SimpleNamespace(company=SimpleNamespace(payload=json.dumps(clearbit)))
        assert source(obj) == from_clearbit_company(clearbit)
        assert source(obj, planName="Pro").planName == "Pro"
        assert source.accepts_overrides is True
        assert source.__qualname__ == "clearbit_group_enriched_preset_at_company_payload"

    @pytest.mark.parametrize("payload", [None, "", "  "])
    def test_preset_from_path_missing_payload_is_blank(self, payload):
        source = preset_from_path("pdl", "raw", event="group_enriched")
        assert source(SimpleNamespace(raw=payload)) == GroupEnrichmentProperties()

    def test_preset_from_path_default_is_the_person_preset(self, apollo):
        source = preset_from_path("apollo", "payload")
        assert type(source(SimpleNamespace(payload={}))) is EnrichmentProperties
        assert source.__qualname__ == "apollo_preset_at_payload"

    def test_preset_from_path_unknown_event_fails_when_built(self):
        with pytest.raises(ConfigurationError, match="account_enriched"):
            preset_from_path("apollo", "payload", event="account_enriched")
