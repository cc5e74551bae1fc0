"""People Data Labs' Person Enrichment record → enrichment properties.

PDL returns usernames for social profiles (``linkedin_username``), which are handles and are
kept as handles; where only a URL is present (``linkedin_url``) the URL is used. PDL
lower-cases most values ("pune", "india"); they are passed through unchanged.
"""

from __future__ import annotations

from typing import Any

from tracking_adapter.providers._common import build, first_item, full_name, text, unwrap
from tracking_adapter.schema import EnrichmentProperties


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


def _phones(data: Any) -> Any:
    numbers = data.get("phone_numbers")
    mobile = data.get("mobile_phone")
    if numbers is None:
        return mobile
    if isinstance(numbers, list) and isinstance(mobile, str) and mobile not in numbers:
        return [mobile, *numbers]
    return numbers
