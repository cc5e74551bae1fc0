"""``manage.py prune_events --older-than 7d [--dry-run]``: delete old delivered outbox rows.

Dead rows stay until a person requeues or deletes them; pending rows are never pruned.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from django_app.models import Status
from django_app.store import get_store

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text or "")
    if not match:
        raise CommandError(
            f"--older-than {text!r}: use a number and a unit, like 90s, 30m, 12h, 7d or 2w"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class Command(BaseCommand):
    help = "Delete delivered user_enriched outbox rows older than a given age."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", default="7d", help="age like 7d, 12h (default 7d)")
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
        parser.add_argument("--batch-size", type=int, default=5000)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        cutoff = timezone.now() - parse_age(options["older_than"])
        store = get_store()
        if options["dry_run"]:
            count = store.outbox().filter(status=Status.DELIVERED, delivered_at__lt=cutoff).count()
            self.stdout.write(
                f"would delete {count} delivered event(s) older than {cutoff:%Y-%m-%d %H:%M %Z}"
            )
            return
        deleted = store.prune_delivered(cutoff, batch_size=options["batch_size"])
        self.stdout.write(
            self.style.SUCCESS(
                f"deleted {deleted} delivered event(s) older than {cutoff:%Y-%m-%d %H:%M %Z}"
            )
        )
