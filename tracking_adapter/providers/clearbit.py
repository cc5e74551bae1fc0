"""Clearbit's Person and Company objects → enrichment properties.

The spec's property names are Clearbit's schemas flattened to snake_case (``user_enriched``
from the Person, ``group_enriched`` from the Company), so these presets are nearly
one-to-one. ``emailProvider`` is a boolean in Clearbit; the property is a string, so a true
value becomes the mail domain it is about and false becomes ``""`` (see each preset).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracking_adapter.providers._common import (
    build,
    decimal_text,
    dig,
    domains_object,
    full_name,
    joined,
    text,
    unwrap,
)
from tracking_adapter.schema import EnrichmentProperties, GroupEnrichmentProperties


def from_clearbit(person: Any, **overrides: Any) -> EnrichmentProperties:
    """Map a Clearbit Person (bare, or a combined ``{"person": ..., "company": ...}`` response).

    ``emailProvider`` (true when the address is at a free mail provider such as gmail.com)
    becomes the email's domain when true, ``""`` when false.

    Keyword arguments override or add properties (``enrichment_email_provider="Clearbit"``).
    """
    data = unwrap(person, "clearbit", "person")
    given, family = text(data, "name.givenName"), text(data, "name.familyName")
    values = {
        "enrichment_active_at": text(data, "activeAt"),
        "enrichment_avatar": text(data, "avatar"),
        "enrichment_city": text(data, "geo.city"),
        "enrichment_country": text(data, "geo.country"),
        "enrichment_country_code": text(data, "geo.countryCode"),
        "enrichment_email_provider": _email_provider(data, data.get("email"), email=True),
        "enrichment_employment_domain": text(data, "employment.domain"),
        "enrichment_employment_name": text(data, "employment.name"),
        "enrichment_employment_role": text(data, "employment.role"),
        "enrichment_employment_seniority": text(data, "employment.seniority"),
        "enrichment_employment_sub_role": text(data, "employment.subRole"),
        "enrichment_employment_title": text(data, "employment.title"),
        "enrichment_facebook_handle": text(data, "facebook.handle"),
        "enrichment_first_name": given,
        "enrichment_full_name": text(data, "name.fullName") or full_name(given, family),
        "enrichment_github_handle": text(data, "github.handle"),
        "enrichment_inactive_at": text(data, "inactiveAt"),
        "enrichment_last_name": family,
        "enrichment_linkedin_handle": text(data, "linkedin.handle"),
        "enrichment_location": text(data, "location"),
        "enrichment_phone": text(data, "phone"),
        "enrichment_state": text(data, "geo.state"),
        "enrichment_state_code": text(data, "geo.stateCode"),
        "enrichment_time_zone": text(data, "timeZone"),
        "enrichment_twitter_handle": text(data, "twitter.handle"),
    }
    return build("clearbit", values, overrides)


def from_clearbit_company(company: Any, **overrides: Any) -> GroupEnrichmentProperties:
    """Map a Clearbit Company (bare, as the Company API returns it, or the ``company`` of a
    combined ``{"person": ..., "company": ...}`` or Reveal response) to ``group_enriched``.

    Where Clearbit's type differs from the spec's:

    - ``metrics.annualRevenue``, ``metrics.marketCap``, ``metrics.raised`` and
      ``metrics.alexaGlobalRank`` are numbers (USD, a rank); the properties are strings, so
      each becomes its decimal string (``12500000`` → ``"12500000"``), never rounded or
      abbreviated. A missing ``annualRevenue`` falls back to Clearbit's own band
      ``metrics.estimatedAnnualRevenue`` (``"$10M-$50M"``), and a missing
      ``alexaGlobalRank`` (Alexa closed in 2022) to the band ``metrics.trafficRank``
      (``"high"``), each as Clearbit wrote it.
    - ``tech`` is an array; ``enrichment_tech`` is one string, so the entries are joined
      with ``", "`` in Clearbit's order. ``techCategories`` stays an array.
    - ``domainAliases`` is an array; ``enrichment_domain_aliases`` is an object (ThriveStack's
      sample sends ``null``), so the list becomes ``{"domains": [...]}``, every domain kept
      in order, and ``null`` when Clearbit lists none.
    - ``emailProvider`` is true when the company's domain is a free mail provider's
      (gmail.com's company); it then becomes that domain (``"gmail.com"``, the same value
      the person preset gives for an address there), and ``""`` when false.
    - Clearbit's ``geo`` gives the street address in parts (``streetNumber``,
      ``streetName``, ``subPremise``). ``enrichment_street_address`` uses a single
      ``geo.streetAddress`` when a payload has one, and is otherwise built as
      ``"<streetNumber> <streetName>, <subPremise>"`` from the parts present; the parts
      also fill ``enrichment_street_number`` and ``enrichment_street_name``.

    Handles stay handles (``twitter.handle``, ``facebook.handle``, ``crunchbase.handle``).
    ``phone`` is the headquarters number; ``site.phoneNumbers`` (those found on the
    website) fills ``enrichment_phone_numbers`` as it is. ``group_type``, ``name``,
    ``planId`` and ``planName`` describe the group in the product, not the company, and
    are left to the keyword overrides (``from_clearbit_company(company, planName="Pro")``).
    """
    data = unwrap(company, "clearbit", "company")
    street_number, street_name = text(data, "geo.streetNumber"), text(data, "geo.streetName")
    values = {
        "enrichment_annual_revenue": decimal_text(
            text(data, "metrics.annualRevenue", "metrics.estimatedAnnualRevenue")
        ),
        "enrichment_city": text(data, "geo.city"),
        "enrichment_country": text(data, "geo.country"),
        "enrichment_country_code": text(data, "geo.countryCode"),
        "enrichment_crunchbase_handle": text(data, "crunchbase.handle"),
        "enrichment_description": text(data, "description"),
        "enrichment_domain": text(data, "domain"),
        "enrichment_domain_aliases": domains_object(dig(data, "domainAliases")),
        "enrichment_email_addresses": dig(data, "site.emailAddresses"),
        "enrichment_email_provider": _email_provider(data, data.get("domain"), email=False),
        "enrichment_employees": text(data, "metrics.employees"),
        "enrichment_employees_range": text(data, "metrics.employeesRange"),
        "enrichment_facebook_handle": text(data, "facebook.handle"),
        "enrichment_founder_year": text(data, "foundedYear"),
        "enrichment_industry": text(data, "category.industry"),
        "enrichment_industry_group": text(data, "category.industryGroup"),
        "enrichment_legal_name": text(data, "legalName"),
        "enrichment_location": text(data, "location"),
        "enrichment_logo": text(data, "logo"),
        "enrichment_market_cap": decimal_text(text(data, "metrics.marketCap")),
        "enrichment_name": text(data, "name"),
        "enrichment_phone": text(data, "phone"),
        "enrichment_phone_numbers": dig(data, "site.phoneNumbers"),
        "enrichment_postal_code": text(data, "geo.postalCode"),
        "enrichment_raised": decimal_text(text(data, "metrics.raised")),
        "enrichment_sector": text(data, "category.sector"),
        "enrichment_state": text(data, "geo.state"),
        "enrichment_state_code": text(data, "geo.stateCode"),
        "enrichment_street_address": text(data, "geo.streetAddress")
        or _street_address(street_number, street_name, text(data, "geo.subPremise")),
        "enrichment_street_name": street_name,
        "enrichment_street_number": street_number,
        "enrichment_sub_industry": text(data, "category.subIndustry"),
        "enrichment_tags": dig(data, "tags"),
        "enrichment_tech": joined(dig(data, "tech")),
        "enrichment_tech_categories": dig(data, "techCategories"),
        "enrichment_time_zone": text(data, "timeZone"),
        "enrichment_traffic_rank": decimal_text(
            text(data, "metrics.alexaGlobalRank", "metrics.trafficRank")
        ),
        "enrichment_twitter_handle": text(data, "twitter.handle"),
        "enrichment_type": text(data, "type"),
    }
    return build("clearbit", values, overrides, model=GroupEnrichmentProperties)


def _email_provider(data: Mapping[str, Any], address: Any, *, email: bool) -> Any:
    """``emailProvider`` as a string: the mail domain when true, nothing when false.

    ``address`` is the person's email (``email=True``) or the company's domain.
    """
    flag = data.get("emailProvider")
    if flag is None or flag is False:
        return None
    if flag is True:
        if not isinstance(address, str):
            return None
        if email:
            return address.rsplit("@", 1)[1].lower() if "@" in address else None
        return address.strip().lower() or None
    return flag  # a string from a newer or custom payload passes through; others fail validation


def _street_address(number: Any, name: Any, sub_premise: Any) -> Any:
    """``"90 Main Street, Suite 400"`` from the parts present.

    A number or name that is not a string is reported under its own property, so the
    address is then left out; a ``subPremise`` that is not a string (it has no property of
    its own) is returned for the schema to refuse under ``enrichment_street_address``.
    """
    if any(part is not None and not isinstance(part, str) for part in (number, name)):
        return None
    if sub_premise is not None and not isinstance(sub_premise, str):
        return sub_premise
    street = " ".join(part for part in (number, name) if part)
    return ", ".join(part for part in (street, sub_premise) if part) or None
