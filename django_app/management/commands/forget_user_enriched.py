"""``manage.py forget_user_enriched USER_ID [USER_ID ...]``: erase what this app keeps about users.

For erasure requests: deletes every outbox row naming the users (pending, delivered and
dead; their ``user_enriched`` events and the ``group_enriched`` events attributed to them)
and their ledger entries. Accounts are erased with ``forget_group_enriched``. What was already delivered lives on at the analytics platform too;
erase it there with the platform's own tools.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_app.store import get_store
from tracking_adapter import EVENT_NAME


class Command(BaseCommand):
    help = "Delete the outbox rows and ledger entries of the given user ids (erasure requests)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user_ids", nargs="+", metavar="USER_ID", help="as sent in user_id")
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        user_ids = [user_id.strip() for user_id in options["user_ids"]]
        if not all(user_ids):
            raise CommandError("USER_ID must not be empty")
        store = get_store()
        if options["dry_run"]:
            outbox = store.outbox().filter(user_id__in=user_ids)
            ledger = store.ledger(EVENT_NAME).filter(subject_id__in=user_ids)
            self.stdout.write(
                f"would delete {outbox.count()} outbox row(s) and {ledger.count()} ledger "
                f"entr{'y' if ledger.count() == 1 else 'ies'} for {len(user_ids)} user(s)"
            )
            return
        rows, entries = store.forget_users(user_ids)
        self.stdout.write(
            self.style.SUCCESS(
                f"deleted {rows} outbox row(s) and {entries} ledger entr"
                f"{'y' if entries == 1 else 'ies'} for {len(user_ids)} user(s). Events already "
                "delivered also live at the analytics platform: erase them there too."
            )
        )
