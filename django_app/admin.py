"""Admin: the state of delivery at a glance, read-only, with retry and requeue actions."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from django_app.models import LedgerEntry, OutboxEvent, Status
from django_app.runtime import secrets
from tracking_adapter.security import redact


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "message_id",
        "event",
        "user_id",
        "status",
        "attempts",
        "next_attempt_at",
        "sink",
        "short_error",
        "created_at",
    )
    list_filter = ("status", "event", "sink")
    search_fields = ("=user_id", "=message_id", "=group_id")
    date_hierarchy = "created_at"
    actions = ("retry_now", "requeue_dead")
    show_full_result_count = False  # counting millions of delivered rows is slow
    fields = (
        "event",
        "message_id",
        "user_id",
        "group_id",
        "status",
        "attempts",
        "next_attempt_at",
        "lease_expires_at",
        "sink",
        "error",
        "pretty_payload",
        "content_hash",
        "created_at",
        "delivered_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="last error")
    def short_error(self, obj: OutboxEvent) -> str:
        text = redact(obj.last_error, secrets())
        return text if len(text) <= 80 else text[:77] + "..."

    @admin.display(description="last error")
    def error(self, obj: OutboxEvent) -> str:
        return redact(obj.last_error, secrets()) or "-"

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboxEvent]:
        # The payload is only read, as text, by the page that shows it: the list never loads
        # a page of JSON it does not display, and a payload the JSON reader refuses (see
        # dispatch.Unreadable) cannot turn the pages that should show its row into errors.
        return super().get_queryset(request).defer("payload")

    @admin.display(description="payload")
    def pretty_payload(self, obj: OutboxEvent) -> str:
        raw = (
            OutboxEvent.objects.using(obj._state.db)
            .filter(pk=obj.pk)
            .values_list(Cast("payload", TextField()), flat=True)
            .first()
        ) or ""
        with contextlib.suppress(ValueError, RecursionError):  # else shown as stored
            raw = json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
        return format_html("<pre>{}</pre>", redact(raw, secrets()))

    def has_deliver_permission(self, request: HttpRequest) -> bool:
        # The pages stay read-only for everyone (has_change_permission is False), but the
        # actions change rows: they need the model's change permission, not just view.
        opts = self.opts
        codename = get_permission_codename("change", opts)
        return bool(request.user.has_perm(f"{opts.app_label}.{codename}"))

    @admin.action(
        description="Retry now (pending events become due immediately)", permissions=["deliver"]
    )
    def retry_now(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        count = queryset.filter(status=Status.PENDING).update(
            next_attempt_at=timezone.now(), lease_expires_at=None
        )
        self.message_user(request, f"{count} pending event(s) are due now.", messages.SUCCESS)

    @admin.action(
        description="Requeue dead events (back to pending, attempts reset)",
        permissions=["deliver"],
    )
    def requeue_dead(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        count = (
            queryset.filter(status=Status.DEAD)
            .exclude(message_id__startswith="invalid-")
            .update(
                status=Status.PENDING,
                attempts=0,
                next_attempt_at=timezone.now(),
                lease_expires_at=None,
            )
        )
        skipped = queryset.filter(status=Status.DEAD, message_id__startswith="invalid-").count()
        note = (
            f" {skipped} invalid-data record(s) were left dead: fix the profile and save it again."
            if skipped
            else ""
        )
        self.message_user(request, f"{count} dead event(s) requeued.{note}", messages.SUCCESS)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("subject_id", "event", "message_id", "recorded_at")
    list_filter = ("event",)
    search_fields = ("=subject_id",)
    readonly_fields = ("event", "subject_id", "content_hash", "message_id", "recorded_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
