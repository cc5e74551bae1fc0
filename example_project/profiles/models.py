"""A SaaS product's user profile: enrichment fields, and the raw provider payload they came from."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Account(models.Model):
    """A customer account (the group of group_enriched), with what company enrichment adds."""

    external_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    # The user an account's enrichment is attributed to (ThriveStack wants one per event).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    legal_name = models.CharField(max_length=200, blank=True)
    domain = models.CharField(max_length=200, blank=True)
    industry = models.CharField(max_length=200, blank=True)
    employees = models.IntegerField(null=True, blank=True)
    employees_range = models.CharField(max_length=32, blank=True)
    founded_year = models.IntegerField(null=True, blank=True)
    city = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=100, blank=True)
    tags = models.JSONField(default=list, blank=True)
    plan = models.CharField(max_length=32, blank=True)
    enrichment_provider = models.CharField(max_length=32, blank=True)
    raw_enrichment = models.JSONField(null=True, blank=True)
    enriched_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class Profile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    account = models.ForeignKey(Account, on_delete=models.CASCADE)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    full_name = models.CharField(max_length=200, blank=True)
    avatar = models.URLField(max_length=500, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=100, blank=True)
    country_code = models.CharField(max_length=8, blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    company = models.CharField(max_length=200, blank=True)
    company_domain = models.CharField(max_length=200, blank=True)
    title = models.CharField(max_length=200, blank=True)
    seniority = models.CharField(max_length=64, blank=True)
    linkedin = models.CharField(max_length=300, blank=True)
    phones = models.JSONField(default=list, blank=True)
    enrichment_provider = models.CharField(max_length=32, blank=True)
    raw_enrichment = models.JSONField(null=True, blank=True)
    enriched_at = models.DateTimeField(null=True, blank=True)
    last_login_ip = models.GenericIPAddressField(null=True, blank=True)  # not tracked

    def __str__(self) -> str:
        return self.full_name or str(self.user)
