"""Admin: the state of delivery at a glance, read-only, with retry and requeue actions."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Any
from urllib.parse import urlsplit

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from django_app.chart import delivery_chart
from django_app.models import LedgerEntry, OutboxEvent, Status
from django_app.runtime import secrets
from django_app.status import DeliveryStatus, delivery_status
from django_app.store import get_store
from tracking_adapter.security import redact

ID_CHARS = 8  # of a message id (a UUID's first group) in the lists
USER_ID_CHARS = 8
SINK_CHARS = 60


def shorten(value: str, chars: int) -> str:
    """``value`` cut to ``chars`` characters and an ellipsis (when that saves any)."""
    return value if len(value) <= chars + 1 else value[:chars] + "\u2026"


def shorten_sink(sink: str) -> str:
    """A sink's name as the lists show it: its kind and, for a URL, scheme and host only
    (``thrivestack https://api.example.com``); for a file, its name."""
    kind, _, where = sink.partition(" ")
    if where:
        parts = urlsplit(where)
        host = parts.netloc.rpartition("@")[2]  # never credentials in a URL
        if parts.scheme and host:
            sink = f"{kind} {parts.scheme}://{host}"
        elif where.startswith(("/", ".")) or "\\" in where:
            sink = f"{kind} \u2026/{PurePath(where).name}"
    return shorten(sink, SINK_CHARS)


def abbreviated(value: str, short: str, *, breaks: bool = False) -> SafeString:
    """``short`` on the page, ``value`` in full on hover (its ``title``). With ``breaks``,
    a narrow column may wrap ``short`` after ``://`` and dots (a host name)."""
    text = escape(short)
    if breaks:
        text = mark_safe(text.replace("://", "://<wbr>").replace(".", ".<wbr>"))
    if short == value:
        return text
    return format_html('<span title="{}">{}</span>', value, text)


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def clock(moment: datetime) -> str:
    return str(timezone.localtime(moment).strftime("%Y-%m-%d %H:%M"))


@dataclass
class Figure:
    key: str  # data-figure on the page, for tests and scripts
    label: str
    value: str
    note: str = ""
    alert: bool = False  # a figure that makes delivery unhealthy


def summary_context(status: DeliveryStatus) -> dict[str, Any]:
    """What the outbox changelist's summary shows: every figure from ``status``."""
    oldest = status.oldest_pending_seconds
    next_at = status.next_attempt_at
    figures = [
        Figure("pending", "Pending", f"{status.pending:,}"),
        Figure("due", "Due now", f"{status.due:,}", "pending, waiting for a worker"),
        Figure("dead", "Dead", f"{status.dead:,}", "given up on", alert=status.dead > 0),
        Figure(
            "oldest_pending",
            "Oldest pending",
            "\u2013" if oldest is None else duration(oldest),
            "" if oldest is None else "since it was written",
        ),
        Figure("delivered_last_hour", "Delivered, last hour", f"{status.delivered_last_hour:,}"),
        Figure("delivered_last_day", "Delivered, last 24 h", f"{status.delivered_last_day:,}"),
        Figure(
            "next_attempt",
            "Next attempt",
            "\u2013"
            if next_at is None
            else "in " + duration(max(0.0, (next_at - status.now).total_seconds())),
            "" if next_at is None else clock(next_at),
        ),
        Figure("ledger_size", "Ledger", f"{status.ledger_size:,}", "subjects recorded"),
    ]
    reasons = []
    if status.dead:
        reasons.append(f"{status.dead:,} dead event(s)")
    if status.last_errors_pending:
        reasons.append("pending events are failing (see the last errors)")
    streams = [
        {"stream": stream, "sink": abbreviated(stream.sink, shorten_sink(stream.sink))}
        for stream in status.streams
    ]
    return {
        "delivery": status,
        "delivery_figures": figures,
        "delivery_reasons": reasons,
        "delivery_streams": streams,
        "delivery_chart": delivery_chart(status.hourly),
        "delivery_as_of": clock(status.now),
        "delivery_zone": timezone.get_current_timezone_name(),
    }


class SinkFilter(admin.SimpleListFilter):
    """The sinks of the rows, by their short names (the full name is the value filtered on)."""

    title = "sink"
    parameter_name = "sink"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        sinks = (
            model_admin.get_queryset(request)
            .order_by("sink")
            .values_list("sink", flat=True)
            .distinct()
        )
        return [(sink, shorten_sink(sink) if sink else "(not tried yet)") for sink in sinks]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset if value is None else queryset.filter(sink=value)


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "short_message_id",
        "kind",
        "short_user_id",
        "status",
        "tries",
        "next_try",
        "short_sink",
        "short_error",
        "age",
    )
    list_filter = ("status", "event", SinkFilter)
    search_fields = ("=user_id", "=message_id", "=group_id")
    search_help_text = "An exact user id, message id or group id."
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

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        # The summary is read only for the page that shows it: not for an action's redirect
        # or the delete confirmation, which answer through this view too.
        if (
            isinstance(response, TemplateResponse)
            and response.context_data is not None
            and "cl" in response.context_data
        ):
            response.context_data.update(summary_context(delivery_status()))
        return response

    @admin.display(description="message id", ordering="message_id")
    def short_message_id(self, obj: OutboxEvent) -> SafeString:
        return abbreviated(obj.message_id, shorten(obj.message_id, ID_CHARS))

    @admin.display(description="user id", ordering="user_id")
    def short_user_id(self, obj: OutboxEvent) -> SafeString:
        return abbreviated(obj.user_id, shorten(obj.user_id, USER_ID_CHARS))

    @admin.display(description="sink", ordering="sink")
    def short_sink(self, obj: OutboxEvent) -> SafeString:
        return abbreviated(obj.sink, shorten_sink(obj.sink), breaks=True)

    @admin.display(description="event", ordering="event")
    def kind(self, obj: OutboxEvent) -> SafeString:
        return mark_safe(escape(obj.event).replace("_", "_<wbr>"))  # may wrap: user_ enriched

    @admin.display(description="tries", ordering="attempts")
    def tries(self, obj: OutboxEvent) -> int:
        return obj.attempts

    @admin.display(description="next try", ordering="next_attempt_at")
    def next_try(self, obj: OutboxEvent) -> SafeString:
        # Only a pending row has a next try; the stamp is in full on hover.
        if obj.status != Status.PENDING:
            return format_html("{}", "\u2013")
        now = timezone.now()
        if obj.lease_expires_at is not None and obj.lease_expires_at > now:
            until = clock(obj.lease_expires_at)
            return format_html('<span title="claimed by a worker until {}">sending</span>', until)
        wait = (obj.next_attempt_at - now).total_seconds()
        when = "due" if wait <= 0 else "in " + duration(wait)
        return format_html('<span title="{}">{}</span>', clock(obj.next_attempt_at), when)

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: OutboxEvent) -> SafeString:
        # How long ago the row was written; the stamp is in full on hover.
        seconds = max(0.0, (timezone.now() - obj.created_at).total_seconds())
        return format_html('<span title="{}">{}</span>', clock(obj.created_at), duration(seconds))

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
        count = get_store(queryset.db).retry_now(queryset)
        self.message_user(request, f"{count} pending event(s) are due now.", messages.SUCCESS)

    @admin.action(
        description="Requeue dead events (back to pending, attempts reset)",
        permissions=["deliver"],
    )
    def requeue_dead(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        count, skipped = get_store(queryset.db).requeue_dead(queryset)
        note = (
            f" {skipped} invalid-data record(s) were left dead: fix the profile and save it again."
            if skipped
            else ""
        )
        self.message_user(request, f"{count} dead event(s) requeued.{note}", messages.SUCCESS)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("subject_id", "event", "short_message_id", "recorded_at")
    list_filter = ("event",)
    search_fields = ("=subject_id",)
    search_help_text = (
        "An exact subject id: the user id for user_enriched, the account id for group_enriched."
    )
    show_full_result_count = False  # a search does not count the whole ledger again
    readonly_fields = ("event", "subject_id", "content_hash", "message_id", "recorded_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="message id", ordering="message_id")
    def short_message_id(self, obj: LedgerEntry) -> SafeString:
        return abbreviated(obj.message_id, shorten(obj.message_id, ID_CHARS))
