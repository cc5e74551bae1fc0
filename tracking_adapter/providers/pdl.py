"""People Data Labs' Person and Company Enrichment records → enrichment properties.

PDL returns usernames for social profiles (``linkedin_username``), which are handles and are
kept as handles; where only a URL is present (``linkedin_url``) the URL is used. PDL
lower-cases most values ("pune", "india"); they are passed through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracking_adapter.providers._common import (
    build,
    decimal_text,
    dig,
    domains_object,
    first_item,
    full_name,
    text,
    unwrap,
)
from tracking_adapter.schema import EnrichmentProperties, GroupEnrichmentProperties


def from_pdl(person: Any, **overrides: Any) -> EnrichmentProperties:
    """Map a PDL person (bare, or the ``{"status": 200, "data": ...}`` enrichment response)."""
    data = unwrap(person, "pdl", "data")
    given, family = text(data, "first_name"), text(data, "last_name")
    values = {
        "enrichment_city": text(data, "location_locality"),
        "enrichment_country": text(data, "location_country"),
        "enrichment_employment_domain": text(data, "job_company_website"),
        "enrichment_employment_name": text(data, "job_company_name"),
        "enrichment_employment_role": text(data, "job_title_role"),
        "enrichment_employment_seniority": first_item(data, "job_title_levels"),
        "enrichment_employment_sub_role": text(data, "job_title_sub_role"),
        "enrichment_employment_title": text(data, "job_title"),
        "enrichment_facebook_handle": text(data, "facebook_username", "facebook_url"),
        "enrichment_first_name": given,
        "enrichment_full_name": text(data, "full_name") or full_name(given, family),
        "enrichment_github_handle": text(data, "github_username", "github_url"),
        "enrichment_last_name": family,
        "enrichment_linkedin_handle": text(data, "linkedin_username", "linkedin_url"),
        "enrichment_location": text(data, "location_name"),
        "enrichment_phone": _phones(data),
        "enrichment_state": text(data, "location_region"),
        "enrichment_twitter_handle": text(data, "twitter_username", "twitter_url"),
    }
    return build("pdl", values, overrides)


def from_pdl_company(company: Any, **overrides: Any) -> GroupEnrichmentProperties:
    """Map a PDL company (the Company Enrichment response, whose record sits at the top
    beside ``status`` and ``likelihood``; a record under ``data``; or the bare record) to
    ``group_enriched``.

    - The name is ``display_name`` (the company's own capitalisation), else ``name``
      (PDL's lower-cased common name). Other values keep PDL's lower case.
    - ``website`` (a bare domain in PDL, ``"example.com"``) is the domain;
      ``alternative_domains`` becomes ``{"domains": [...]}`` (``enrichment_domain_aliases``
      is an object in ThriveStack; every domain kept in order, ``null`` when none).
    - ``size`` (``"51-200"``) is the head-count band, ``employee_count`` the head count,
      ``founded`` the year.
    - ``inferred_revenue`` is already a string band (``"$10M-$25M"``) and is kept as
      written; ``total_funding_raised`` is a number (USD) and becomes its decimal string.
    - ``industry`` (PDL's canonical industry) is the industry, else ``industry_v2``.
    - ``location``: ``name`` is the one-string location, ``locality``/``region``/
      ``country``/``postal_code`` the city, state, country and postal code, and
      ``street_address`` the street address as given (``address_line_2``, the suite, has
      no property and is not appended).
    - Social profiles are URLs in PDL's company records (``twitter_url``,
      ``facebook_url``, ``crunchbase_url``) and stay URLs; a missing ``crunchbase_url``
      falls back to the crunchbase.com entry of ``profiles``.
    - ``summary`` is the description, else ``headline``; ``tags`` and ``type`` map as they are.

    PDL gives no phone, email, logo, legal name, time zone, country or state code, market
    cap, traffic rank, technologies or GICS-style sector/group/sub-industry (its NAICS and
    SIC codes are another classification): those stay blank unless given as overrides.
    """
    data = unwrap(company, "pdl", "data")
    values = {
        "enrichment_annual_revenue": decimal_text(text(data, "inferred_revenue")),
        "enrichment_city": text(data, "location.locality"),
        "enrichment_country": text(data, "location.country"),
        "enrichment_crunchbase_handle": text(data, "crunchbase_url")
        or _profile(data, "crunchbase.com/"),
        "enrichment_description": text(data, "summary", "headline"),
        "enrichment_domain": text(data, "website"),
        "enrichment_domain_aliases": domains_object(dig(data, "alternative_domains")),
        "enrichment_employees": text(data, "employee_count"),
        "enrichment_employees_range": text(data, "size"),
        "enrichment_facebook_handle": text(data, "facebook_url"),
        "enrichment_founder_year": text(data, "founded"),
        "enrichment_industry": text(data, "industry", "industry_v2"),
        "enrichment_location": text(data, "location.name"),
        "enrichment_name": text(data, "display_name", "name"),
        "enrichment_postal_code": text(data, "location.postal_code"),
        "enrichment_raised": decimal_text(text(data, "total_funding_raised")),
        "enrichment_state": text(data, "location.region"),
        "enrichment_street_address": text(data, "location.street_address"),
        "enrichment_tags": dig(data, "tags"),
        "enrichment_twitter_handle": text(data, "twitter_url"),
        "enrichment_type": text(data, "type"),
    }
    return build("pdl", values, overrides, model=GroupEnrichmentProperties)


def _phones(data: Any) -> Any:
    numbers = data.get("phone_numbers")
    mobile = data.get("mobile_phone")
    if numbers is None:
        return mobile
    if isinstance(numbers, list) and isinstance(mobile, str) and mobile not in numbers:
        return [mobile, *numbers]
    return numbers


def _profile(data: Mapping[str, Any], site: str) -> str | None:
    """The first URL in ``profiles`` on ``site`` (``"crunchbase.com/"``), as PDL wrote it."""
    profiles = data.get("profiles")
    if not isinstance(profiles, list):
        return None
    for url in profiles:
        if isinstance(url, str) and site in url.lower():
            return url.strip()
    return None
