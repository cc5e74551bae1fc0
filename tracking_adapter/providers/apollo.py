"""Apollo's People Enrichment (``people/match``) person → enrichment properties.

Apollo gives profile URLs where Clearbit gives handles; they are kept as URLs (see the
package docstring for the rule). ``departments``/``subdepartments`` are lists: the first
entry becomes the role/sub-role, an approximation the vocabulary table documents.
"""

from __future__ import annotations

from typing import Any

from tracking_adapter.providers._common import build, first_item, full_name, text, unwrap
from tracking_adapter.schema import EnrichmentProperties


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
