"""``manage.py forget_group_enriched GROUP_ID [GROUP_ID ...]``: erase what this app keeps
about accounts.

Deletes the accounts' ``group_enriched`` outbox rows (pending, delivered and dead) and their
ledger entries. Their users' ``user_enriched`` rows stay (``forget_user_enriched`` erases a
user). What was already delivered lives on at the analytics platform too; erase it there.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_app.store import get_store
from tracking_adapter import GROUP_EVENT_NAME


class Command(BaseCommand):
    help = (
        "Delete the group_enriched outbox rows and ledger entries of the given account ids "
        "(erasure requests)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("group_ids", nargs="+", metavar="GROUP_ID", help="as sent in group_id")
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        group_ids = [group_id.strip() for group_id in options["group_ids"]]
        if not all(group_ids):
            raise CommandError("GROUP_ID must not be empty")
        store = get_store()
        if options["dry_run"]:
            outbox = store.outbox().filter(event=GROUP_EVENT_NAME, group_id__in=group_ids)
            ledger = store.ledger(GROUP_EVENT_NAME).filter(subject_id__in=group_ids)
            entries = ledger.count()
            self.stdout.write(
                f"would delete {outbox.count()} outbox row(s) and {entries} ledger "
                f"entr{'y' if entries == 1 else 'ies'} for {len(group_ids)} account(s)"
            )
            return
        rows, entries = store.forget_subjects(GROUP_EVENT_NAME, group_ids)
        self.stdout.write(
            self.style.SUCCESS(
                f"deleted {rows} outbox row(s) and {entries} ledger entr"
                f"{'y' if entries == 1 else 'ies'} for {len(group_ids)} account(s). Events "
                "already delivered also live at the analytics platform: erase them there too."
            )
        )
