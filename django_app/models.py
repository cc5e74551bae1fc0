"""The outbox (events waiting for, or done with, delivery) and the ledger of what was recorded."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    DEAD = "dead", "Dead"


class OutboxEvent(models.Model):
    """One ``user_enriched`` event, written in the same transaction as the change it reports.

    A worker claims due pending rows by moving ``next_attempt_at`` to the end of a lease
    and stamping ``claim_token``; a row whose lease expired (the worker died) is due again.
    """

    message_id = models.CharField(max_length=100, unique=True)
    user_id = models.CharField(max_length=255, db_index=True)
    group_id = models.CharField(max_length=255, blank=True)
    content_hash = models.CharField(max_length=64, blank=True)
    payload = models.JSONField(help_text="The validated event, as the sink will receive it.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    sink = models.CharField(max_length=200, blank=True, help_text="The sink of the last attempt.")
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "outbox event"
        ordering = ("-id",)
        indexes = [
            # Claiming reads only due pending rows; a partial index stays small however
            # many delivered rows the table keeps.
            models.Index(
                fields=["next_attempt_at", "id"],
                condition=Q(status="pending"),
                name="django_app_outbox_due",
            ),
            models.Index(fields=["status", "created_at"], name="django_app_outbox_status"),
        ]

    def __str__(self) -> str:
        return f"user_enriched {self.message_id} for {self.user_id} ({self.status})"


class LedgerEntry(models.Model):
    """What was last recorded for each user, so each change of content is sent once.

    The automatic source, the signal and the backfill all consult it.
    """

    user_id = models.CharField(max_length=255, unique=True)
    content_hash = models.CharField(max_length=64)
    message_id = models.CharField(max_length=100)
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger entries"

    def __str__(self) -> str:
        return f"{self.user_id}: {self.content_hash[:12]}"
