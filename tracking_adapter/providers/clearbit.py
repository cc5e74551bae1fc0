"""Clearbit's Person object (the Enrichment API's ``person``) → enrichment properties.

The spec's property names are Clearbit's Person schema flattened to snake_case, so this
preset is nearly one-to-one. ``emailProvider`` is a boolean in Clearbit (true when the
address is at a free mail provider such as gmail.com); the property is a string, so a true
value becomes the email's domain and false becomes ``""``.
"""

from __future__ import annotations

from typing import Any

from tracking_adapter.providers._common import build, full_name, text, unwrap
from tracking_adapter.schema import EnrichmentProperties


def from_clearbit(person: Any, **overrides: Any) -> EnrichmentProperties:
    """Map a Clearbit Person (bare, or a combined ``{"person": ..., "company": ...}`` response).

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
        "enrichment_email_provider": _email_provider(data),
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


def _email_provider(data: Any) -> Any:
    flag = data.get("emailProvider")
    if flag is None or flag is False:
        return None
    if flag is True:
        email = data.get("email")
        if isinstance(email, str) and "@" in email:
            return email.rsplit("@", 1)[1].lower()
        return None
    return flag  # a string from a newer or custom payload passes through; others fail validation
