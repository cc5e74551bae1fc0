"""``manage.py reconcile_user_enriched``: record ``user_enriched`` for every user of the source
model whose current content the ledger does not hold.

A committed change whose event was not recorded (the save path's statement failed for a
reason that is not the data: a statement or lock timeout, a missing function or table; the
log says "not recorded") shows up here as a user out of step with the ledger. Reconcile
records their events in the outbox, for the normal delivery path (DISPATCH), like a live
save would have. It is the backfill's walk (``django_app.backfill.Backfill``: keyset
batches, the same mapping, rows and ledger read in one snapshot, a compare-and-set on
write-down) with the automatic source's rule for users never recorded: blank content is
not news. Meant to be scheduled every few minutes; when nothing differs it only reads.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_app.backfill import Backfill, BackfillOptions
from django_app.management.commands.backfill_user_enriched import configured_source
from django_app.source import source_configs
from tracking_adapter import EVENT_TYPES, MappingError, event_type


class Command(BaseCommand):
    help = (
        "Record user_enriched (and group_enriched, and every event with a source), for the "
        "outbox to deliver, for every subject of its source whose current content differs "
        "from what was last recorded (a change whose recording failed). Cheap when nothing "
        "differs: schedule it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=1000, help="rows per batch (1000)")
        parser.add_argument(
            "--event",
            action="append",
            choices=sorted(EVENT_TYPES),
            help="only this event's source (repeatable; default: every configured source)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="print how many subjects, and which ids, would be recorded; write nothing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        events = options["event"] or list(source_configs())
        if not events:
            raise CommandError(
                "no source is configured: set TRACKING_ADAPTER['SOURCE'] (or SOURCES)"
            )
        for event in events:
            self._reconcile(event, options)

    def _reconcile(self, event: str, options: dict[str, Any]) -> None:
        dry_run = options["dry_run"]
        verbosity = options["verbosity"]
        subject = event_type(event).SUBJECT_FIELD
        out_of_date: list[str] = []

        def note(item: dict[str, Any]) -> None:
            ids = {"user_id": item["user_id"], "group_id": item["context"]["group_id"]}
            out_of_date.append(str(ids[subject]))

        source = configured_source(event=event)
        run = Backfill(
            source,
            BackfillOptions(
                batch_size=options["batch_size"],
                deliver=False,  # into the outbox, for DISPATCH to deliver
                dry_run=dry_run,
                skip_empty=True,
                request_delivery=True,
            ),
            emit=note,
        )
        started = time.monotonic()
        try:
            for _stats in run.run():
                if dry_run:
                    for subject_id in out_of_date:
                        self.stdout.write(subject_id)
                    out_of_date.clear()
        except MappingError as exc:
            raise CommandError(f"{exc} (fix {source.setting})") from None
        stats = run.stats
        if verbosity < 1:
            return
        recorded = 0 if dry_run else stats.recorded - stats.superseded
        line = (
            f"reconcile {event} {'dry run ' if dry_run else ''}finished in "
            f"{time.monotonic() - started:.2f}s: {stats.read:,} checked, "
            f"{stats.recorded:,} out of date, {recorded:,} recorded"
        )
        notes = []
        if dry_run:
            notes.append("dry run: nothing written")
        if stats.superseded:
            notes.append(f"{stats.superseded:,} recorded meanwhile by live saves")
        if stats.invalid:
            notes.append(f"{stats.invalid:,} rows invalid, not recorded")
        self.stdout.write(line + (f" ({'; '.join(notes)})" if notes else ""))
        if verbosity >= 2:
            for row in stats.invalid_rows:
                self.stdout.write(f"  invalid row {row}")
