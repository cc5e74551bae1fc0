"""The outbox (events waiting for, or done with, delivery) and the ledger of what was recorded."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from tracking_adapter import EVENT_NAME


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    DEAD = "dead", "Dead"


class OutboxEvent(models.Model):
    """One event (``event`` names its kind), written in the same transaction as the change
    it reports.

    A worker claims due pending rows by moving ``next_attempt_at`` to the end of a lease
    and stamping ``claim_token``; a row whose lease expired (the worker died) is due again.
    """

    event = models.CharField(max_length=64, default=EVENT_NAME)
    message_id = models.CharField(max_length=100)
    user_id = models.CharField(max_length=255)
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
        # Every index is paid for on the save path, so each one earns its place: constraints
        # and indexes are declared here rather than with unique=/db_index=, which on
        # PostgreSQL add a second, LIKE-only index per text column. The partial indexes
        # (due pending rows for claims, delivered rows by age for prune_events, dead rows
        # for the admin) are migration 0004's, not declared here: PostgreSQL and SQLite
        # have them as partial indexes, MySQL and MariaDB as composite ones led by status.
        constraints = [
            models.UniqueConstraint(fields=["message_id"], name="django_app_outbox_message_id"),
        ]
        indexes = [
            models.Index(fields=["user_id"], name="django_app_outbox_user"),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.message_id} for {self.user_id} ({self.status})"


class LedgerEntry(models.Model):
    """What was last recorded per event kind and subject (the user of ``user_enriched``),
    so each change of content is sent once.

    The automatic source, the signal and the backfill all consult it.
    """

    event = models.CharField(max_length=64, default=EVENT_NAME)
    subject_id = models.CharField(max_length=255)
    content_hash = models.CharField(max_length=64)
    message_id = models.CharField(max_length=100)
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(
                fields=["event", "subject_id"], name="django_app_ledger_subject"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.subject_id}: {self.content_hash[:12]}"
