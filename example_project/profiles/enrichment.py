"""The product's "enrich" step, fed by offline provider fixtures instead of live APIs.

A real app would call Clearbit, Apollo or People Data Labs here; the rest of the path (the
save, the outbox, delivery) is the same.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

from django.utils import timezone

from example_project.profiles.models import Account, Profile
from tracking_adapter.providers import GROUP_PRESETS, PRESETS

PROVIDERS = ("clearbit", "apollo", "pdl")
CITIES = [
    ("Pune", "Maharashtra", "India", "IN", "Asia/Kolkata"),
    ("Berlin", "Berlin", "Germany", "DE", "Europe/Berlin"),
    ("Austin", "Texas", "United States", "US", "America/Chicago"),
    ("Lyon", "Auvergne-Rhône-Alpes", "France", "FR", "Europe/Paris"),
]


COMPANY_FIXTURES = {
    "clearbit": "clearbit_company",
    "apollo": "apollo_organization",
    "pdl": "pdl_company",
}


def fixture(provider: str, kind: str = "person") -> dict[str, Any]:
    name = f"{provider}_person" if kind == "person" else COMPANY_FIXTURES[provider]
    text = resources.files("tracking_adapter.fixtures").joinpath(f"{name}.json")
    return dict(json.loads(text.read_text(encoding="utf-8")))


def fake_lookup(provider: str, number: int) -> dict[str, Any]:
    """What the provider would have answered for person ``number`` (varied, deterministic)."""
    payload = copy.deepcopy(fixture(provider))
    city, state, country, code, zone = CITIES[number % len(CITIES)]
    first, last = f"Person{number}", ["Rao", "Klein", "Lopez", "Martin"][number % 4]
    if provider == "clearbit":
        person = payload["person"]
        person["name"] = {"givenName": first, "familyName": last, "fullName": f"{first} {last}"}
        person["geo"].update(city=city, state=state, country=country, countryCode=code)
        person["timeZone"] = zone
    elif provider == "apollo":
        person = payload["person"]
        person.update(first_name=first, last_name=last, name=f"{first} {last}", city=city)
        person.update(state=state, country=country, time_zone=zone)
    else:
        person = payload["data"]
        person.update(first_name=first.lower(), last_name=last.lower(), location_locality=city)
        person["full_name"] = f"{first} {last}".lower()
    return payload


def enrich(profile: Profile, provider: str, payload: dict[str, Any]) -> Profile:
    """Copy what the provider knows onto the profile and save it (the app tracks the change)."""
    props = PRESETS[provider](payload)
    profile.first_name = props.enrichment_first_name
    profile.last_name = props.enrichment_last_name
    profile.full_name = props.enrichment_full_name
    profile.avatar = props.enrichment_avatar
    profile.city = props.enrichment_city
    profile.state = props.enrichment_state
    profile.country = props.enrichment_country
    profile.country_code = props.enrichment_country_code
    profile.time_zone = props.enrichment_time_zone
    profile.company = props.enrichment_employment_name
    profile.company_domain = props.enrichment_employment_domain
    profile.title = props.enrichment_employment_title
    profile.seniority = props.enrichment_employment_seniority
    profile.linkedin = props.enrichment_linkedin_handle
    profile.phones = props.enrichment_phone
    profile.enrichment_provider = provider.title()
    profile.raw_enrichment = payload
    profile.enriched_at = timezone.now()
    profile.save()
    return profile


def enrich_account(account: Account, provider: str, payload: dict[str, Any]) -> Account:
    """The company-level step: the provider's company record onto the account, saved."""
    props = GROUP_PRESETS[provider](payload)
    account.legal_name = props.enrichment_legal_name
    account.domain = props.enrichment_domain
    account.industry = props.enrichment_industry
    account.employees = props.enrichment_employees
    account.employees_range = props.enrichment_employees_range
    account.founded_year = props.enrichment_founder_year
    account.city = props.enrichment_city
    account.country = props.enrichment_country
    account.tags = props.enrichment_tags
    account.enrichment_provider = provider.title()
    account.raw_enrichment = payload
    account.enriched_at = timezone.now()
    account.save()
    return account
