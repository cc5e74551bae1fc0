"""A host app's models, as a user of the package would have them."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Account(models.Model):
    external_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True)
    # What a company enrichment fills in (the group_enriched source of the tests).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    domain = models.CharField(max_length=200, blank=True)
    industry = models.CharField(max_length=200, blank=True)
    employees = models.IntegerField(null=True, blank=True)
    tags = models.JSONField(null=True, blank=True)
    clearbit = models.JSONField(null=True, blank=True)
    enriched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "testapp"

    def __str__(self) -> str:
        return self.external_id

    @property
    def owner_tracking_id(self) -> str | None:
        """The owner as Profile.tracking_user_id names users (None without an owner)."""
        return f"user_{self.owner_id}" if self.owner_id is not None else None


class Profile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.SET_NULL)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    city = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=100, blank=True)
    company = models.CharField(max_length=200, blank=True)
    title = models.CharField(max_length=200, blank=True)
    phone = models.CharField(max_length=50, blank=True)
    visits = models.IntegerField(default=0)  # not mapped: changing it emits nothing
    clearbit = models.JSONField(null=True, blank=True)
    enriched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "testapp"

    def __str__(self) -> str:
        return f"profile of {self.user_id}"

    @property
    def tracking_user_id(self) -> str:
        return f"user_{self.user_id}"
