"""Settings of the example project: SQLite, offline data, a local receiver or the console.

``TRACKING_ENDPOINT`` (set by ``make demo`` to the loopback receiver it starts) sends events
to a ThriveStack-shaped ``/track``; without it they are printed by the console sink.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-project-not-secret")
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_app",
    "example_project.profiles",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "example_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB", str(BASE_DIR / "example.sqlite3")),
        # The web app and a deliver_events worker write concurrently: wait, don't fail.
        "OPTIONS": {"transaction_mode": "IMMEDIATE"},
    }
}

_endpoint = os.environ.get("TRACKING_ENDPOINT")
TRACKING_ADAPTER = {
    "SINK": "thrivestack" if _endpoint else "console",
    "SINK_OPTIONS": (
        {"api_key": os.environ.get("THRIVESTACK_API_KEY", ""), "endpoint": _endpoint}
        if _endpoint
        else {}
    ),
    "DISPATCH": os.environ.get("TRACKING_DISPATCH", "worker"),
    "SOURCE": {
        "MODEL": "profiles.Profile",
        "USER_ID": "user.username",
        "GROUP_ID": "account.external_id",
        "TIMESTAMP": "enriched_at",
        "PROPERTIES": {
            "enrichment_first_name": "first_name",
            "enrichment_last_name": "last_name",
            "enrichment_full_name": "full_name",
            "enrichment_avatar": "avatar",
            "enrichment_city": "city",
            "enrichment_state": "state",
            "enrichment_country": "country",
            "enrichment_country_code": "country_code",
            "enrichment_time_zone": "time_zone",
            "enrichment_employment_name": "company",
            "enrichment_employment_domain": "company_domain",
            "enrichment_employment_title": "title",
            "enrichment_employment_seniority": "seniority",
            "enrichment_linkedin_handle": "linkedin",
            "enrichment_phone": "phones",
            # Which vendor enriched the profile: an extra property of our own. (Not
            # enrichment_email_provider: that is the user's email provider, like gmail.com.)
            "enrichment_vendor": "enrichment_provider",
        },
        "EXTRA_PROPERTIES": ["enrichment_vendor"],
    },
    # group_enriched, the account-level sibling: the same path, keyed on the account.
    "SOURCES": {
        "group_enriched": {
            "MODEL": "profiles.Account",
            "GROUP_ID": "external_id",
            "USER_ID": "owner.username",
            "TIMESTAMP": "enriched_at",
            "PROPERTIES": {
                "name": "name",
                "planName": "plan",
                "enrichment_name": "name",
                "enrichment_legal_name": "legal_name",
                "enrichment_domain": "domain",
                "enrichment_industry": "industry",
                "enrichment_employees": "employees",
                "enrichment_employees_range": "employees_range",
                "enrichment_founder_year": "founded_year",
                "enrichment_city": "city",
                "enrichment_country": "country",
                "enrichment_tags": "tags",
                "enrichment_vendor": "enrichment_provider",
            },
            "EXTRA_PROPERTIES": ["enrichment_vendor"],
        },
    },
}
