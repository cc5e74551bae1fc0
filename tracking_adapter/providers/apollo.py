"""Apollo's People Enrichment person and Organization Enrichment organization → properties.

Apollo gives profile URLs where Clearbit gives handles; they are kept as URLs (see the
package docstring for the rule). ``departments``/``subdepartments`` are lists: the first
entry becomes the role/sub-role, an approximation the vocabulary table documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracking_adapter.providers._common import (
    Invalid,
    build,
    decimal_text,
    dig,
    first_item,
    full_name,
    joined,
    text,
    unique,
    unwrap,
)
from tracking_adapter.schema import EnrichmentProperties, GroupEnrichmentProperties


def from_apollo(person: Any, **overrides: Any) -> EnrichmentProperties:
    """Map an Apollo person (bare, or the ``{"person": ...}`` response of ``people/match``)."""
    data = unwrap(person, "apollo", "person")
    given, family = text(data, "first_name"), text(data, "last_name")
    values = {
        "enrichment_avatar": text(data, "photo_url"),
        "enrichment_city": text(data, "city"),
        "enrichment_country": text(data, "country"),
        "enrichment_employment_domain": text(data, "organization.primary_domain"),
        "enrichment_employment_name": text(data, "organization.name"),
        "enrichment_employment_role": first_item(data, "departments"),
        "enrichment_employment_seniority": text(data, "seniority"),
        "enrichment_employment_sub_role": first_item(data, "subdepartments"),
        "enrichment_employment_title": text(data, "title"),
        "enrichment_facebook_handle": text(data, "facebook_url"),
        "enrichment_first_name": given,
        "enrichment_full_name": text(data, "name") or full_name(given, family),
        "enrichment_github_handle": text(data, "github_url"),
        "enrichment_last_name": family,
        "enrichment_linkedin_handle": text(data, "linkedin_url"),
        "enrichment_location": text(data, "present_raw_address", "formatted_address"),
        "enrichment_phone": _phones(data),
        "enrichment_state": text(data, "state"),
        "enrichment_time_zone": text(data, "time_zone"),
        "enrichment_twitter_handle": text(data, "twitter_url"),
    }
    return build("apollo", values, overrides)


def from_apollo_organization(organization: Any, **overrides: Any) -> GroupEnrichmentProperties:
    """Map an Apollo organization (bare, or the ``{"organization": ...}`` response of
    ``organizations/enrich``) to ``group_enriched``.

    - Profile URLs stay URLs in the ``*_handle`` properties (``twitter_url``,
      ``facebook_url``, ``crunchbase_url``), as in the person preset.
    - ``annual_revenue``, ``total_funding`` and ``alexa_ranking`` are numbers; the
      properties are strings, so each becomes its decimal string (``100000000`` →
      ``"100000000"``). Without the number, Apollo's abbreviated text
      (``annual_revenue_printed``/``total_funding_printed``, ``"100M"``) is used as written.
    - ``technology_names`` is joined with ``", "`` into ``enrichment_tech`` (the names from
      ``current_technologies`` when it is missing); the distinct
      ``current_technologies[].category`` values, in first-seen order, are
      ``enrichment_tech_categories``. ``keywords`` are the tags.
    - The main phone is ``primary_phone`` (its ``sanitized_number``, else its ``number``),
      else ``sanitized_phone``/``phone``; ``enrichment_phone_numbers`` lists the distinct
      numbers of both.
    - ``raw_address`` is the one-string location; ``street_address`` is kept as given (it
      is not split into number and name).
    - ``enrichment_type`` is ``"public"`` when Apollo gives a ``publicly_traded_symbol``,
      and ``""`` otherwise (Apollo states no company type, and no symbol does not mean
      private).

    Apollo has no legal name, head-count band, industry group, sector, sub-industry, time
    zone, country or state code, email addresses, email provider, market cap or other
    domains: those stay blank unless given as keyword overrides.
    """
    data = unwrap(organization, "apollo", "organization")
    phones = _organization_phones(data)
    values = {
        "enrichment_annual_revenue": decimal_text(
            text(data, "annual_revenue", "annual_revenue_printed")
        ),
        "enrichment_city": text(data, "city"),
        "enrichment_country": text(data, "country"),
        "enrichment_crunchbase_handle": text(data, "crunchbase_url"),
        "enrichment_description": text(data, "short_description", "seo_description"),
        "enrichment_domain": text(data, "primary_domain"),
        "enrichment_employees": text(data, "estimated_num_employees"),
        "enrichment_facebook_handle": text(data, "facebook_url"),
        "enrichment_founder_year": text(data, "founded_year"),
        "enrichment_industry": text(data, "industry"),
        "enrichment_location": text(data, "raw_address"),
        "enrichment_logo": text(data, "logo_url"),
        "enrichment_name": text(data, "name"),
        "enrichment_phone": phones[0] if isinstance(phones, list) and phones else phones,
        "enrichment_phone_numbers": phones,
        "enrichment_postal_code": text(data, "postal_code"),
        "enrichment_raised": decimal_text(text(data, "total_funding", "total_funding_printed")),
        "enrichment_state": text(data, "state"),
        "enrichment_street_address": text(data, "street_address"),
        "enrichment_tags": dig(data, "keywords"),
        "enrichment_tech": joined(dig(data, "technology_names"))
        or joined(_technology_field(data, "name")),
        "enrichment_tech_categories": _technology_field(data, "category", distinct=True),
        "enrichment_traffic_rank": decimal_text(text(data, "alexa_ranking")),
        "enrichment_twitter_handle": text(data, "twitter_url"),
        "enrichment_type": "public" if text(data, "publicly_traded_symbol") else None,
    }
    return build("apollo", values, overrides, model=GroupEnrichmentProperties)


def _phones(data: Any) -> Any:
    numbers = data.get("phone_numbers")
    if not isinstance(numbers, list):
        return numbers  # None becomes []; anything else is reported by the schema
    phones = []
    for entry in numbers:
        if isinstance(entry, dict):
            phones.append(entry.get("sanitized_number") or entry.get("raw_number"))
        else:
            phones.append(entry)
    return phones


def _organization_phones(data: Mapping[str, Any]) -> Any:
    """The organization's distinct phone numbers, the primary one first (sanitized forms
    preferred, as for a person); a value of the wrong type is returned for the schema."""
    candidates = (
        text(data, "primary_phone.sanitized_number", "primary_phone.number"),
        text(data, "sanitized_phone", "phone"),
    )
    for candidate in candidates:
        if candidate is not None and not isinstance(candidate, str):
            return candidate
    return unique([number for number in candidates if number]) or None


def _technology_field(data: Mapping[str, Any], field: str, *, distinct: bool = False) -> Any:
    """``current_technologies[].<field>`` as a list (``None`` entries skipped)."""
    technologies = dig(data, "current_technologies")
    if not isinstance(technologies, list):
        return technologies  # None becomes the default; anything else the schema reports
    values = []
    for index, entry in enumerate(technologies):
        if not isinstance(entry, Mapping):
            return Invalid(
                f"current_technologies[{index}] must be an object, got {type(entry).__name__}"
            )
        value = entry.get(field)
        if value is None:
            continue
        if not isinstance(value, str):
            return Invalid(
                f"current_technologies[{index}].{field} must be a string, "
                f"got {type(value).__name__} {value!r:.80}"
            )
        if value.strip():
            values.append(value.strip())
    return unique(values) if distinct else values
