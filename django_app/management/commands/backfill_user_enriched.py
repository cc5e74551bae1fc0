"""``manage.py backfill_user_enriched``: send ``user_enriched`` for existing users, once each.

Safe to interrupt (Ctrl-C stops after the current batch) and to re-run: users whose current
content was already recorded are skipped, so a second run sends only what is missing.
``backfill_group_enriched`` is this command for accounts (``Command.event``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import datetime
from datetime import time as dt_time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, connections
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from django_app.backfill import Backfill, BackfillOptions, BackfillStats, run_parallel
from django_app.conf import SETTING_NAME
from django_app.recording import is_capturing
from django_app.runtime import get_sink, get_source
from django_app.source import Source, build_source, source_configs, source_setting
from tracking_adapter import EVENT_NAME, ConfigurationError, MappingError, event_type
from tracking_adapter.sinks import Sink


def parse_moment(text: str, option: str) -> datetime:
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            raise CommandError(f"{option} {text!r}: use a date (2024-01-31) or an ISO date-time")
        moment = datetime.combine(day, dt_time())
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_current_timezone())
    return moment


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


AUTO = "auto"
MAX_AUTO_WORKERS = 4
AUTO_WORKERS_MIN_BATCHES = 20


def workers_option(text: str) -> int | str:
    if text == AUTO:
        return AUTO
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use a number of processes (1 or more) or 'auto'"
        )
    return count


def single_process_reason(sink: Sink | None = None) -> str | None:
    """Why this run cannot be split across processes here, if it cannot."""
    if any(alias.in_atomic_block for alias in connections.all(initialized_only=True)):
        # Worker processes need connections of their own, and this transaction's work would
        # be invisible to them (and closing its connection to fork would roll it back).
        return "the command is called inside transaction.atomic(); call it outside"
    if is_capturing():
        return "events are being captured by capture_events(), in this process"
    if sink is not None and sink.process_local:
        return f"{SETTING_NAME}['SINK'] ({sink.describe()}) delivers into this process's memory"
    return None


def auto_workers(rows: int, options: BackfillOptions, vendor: str, sink: Sink | None = None) -> int:
    """What ``--workers auto`` means for this run.

    Reading, validating and encoding events is Python work, bound by one core per process,
    while the database and the sink have capacity to spare; so a large run on PostgreSQL
    gets one process per CPU. Small runs, SQLite (one writer at a time), ``--limit`` and
    ``--dry-run`` (whose output is one ordered stream) keep to one process.
    """
    if vendor == "sqlite" or options.limit or options.dry_run or single_process_reason(sink):
        return 1
    if rows < AUTO_WORKERS_MIN_BATCHES * options.batch_size:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))  # what this process may use (containers, taskset)
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_AUTO_WORKERS))


def configured_source(model: str | None = None, event: str = EVENT_NAME) -> Source:
    """The source of ``event`` (with ``--model`` instead of its MODEL), or a CommandError."""
    config = source_configs().get(event)
    if not config:
        raise CommandError(
            f"{source_setting(event)} is not set: it says which model holds enrichment data "
            "and how its fields map to the event (see the README)"
        )
    source: Source | None
    try:
        if model:
            source = build_source({**config, "MODEL": model}, event, model_setting="--model")
        else:
            source = get_source(event)
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from None
    if source is None:  # pragma: no cover - configured, so get_source() builds it
        raise CommandError(f"{source_setting(event)} is not set")
    return source


class Command(BaseCommand):
    event = EVENT_NAME  # what this command backfills; its source, subject and words follow
    help = (
        "Send user_enriched for existing users of TRACKING_ADAPTER['SOURCE'] (or --model), "
        "skipping users whose current content was already sent."
    )

    @property
    def _subject(self) -> str:
        """``user`` or ``group``: the id the event is about, as options and texts say it."""
        return event_type(self.event).SUBJECT_FIELD.removesuffix("_id")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", help="app_label.Model to read instead of the source's MODEL")
        parser.add_argument("--batch-size", type=int, default=1000, help="rows per batch (1000)")
        parser.add_argument("--since", help="only rows whose SOURCE TIMESTAMP is at or after this")
        parser.add_argument("--until", help="only rows whose SOURCE TIMESTAMP is before this")
        parser.add_argument("--limit", type=int, help="stop after reading this many rows")
        parser.add_argument(
            f"--{self._subject}-id",
            action="append",
            default=[],
            dest="subject_ids",
            help=f"only this {self._subject} id (as sent in {self._subject}_id); repeatable",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="print the /track items it would send as JSON lines; record and send nothing",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="send even what was already sent with the same content",
        )
        parser.add_argument(
            "--workers",
            type=workers_option,
            default=AUTO,
            help="processes sharing the work by primary-key range: a number, or 'auto' "
            f"(default): one per CPU, at most {MAX_AUTO_WORKERS}, on PostgreSQL for runs "
            f"of {AUTO_WORKERS_MIN_BATCHES} batches or more; otherwise 1",
        )
        parser.add_argument(
            "--deliver",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="send each batch straight to the sink (default); --no-deliver records every "
            "event in the outbox for the workers to send",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        workers = options["workers"]
        if workers != AUTO and workers > 1:
            if options["limit"] or options["dry_run"]:
                raise CommandError("--workers works without --limit and --dry-run")
            if connection.vendor == "sqlite":
                raise CommandError(
                    "--workers needs a database with concurrent writers (PostgreSQL)"
                )
            if reason := single_process_reason(self._sink(options)):
                raise CommandError(f"--workers {workers}: {reason}")
        source = self._source(options["model"])
        run_options = BackfillOptions(
            batch_size=options["batch_size"],
            since=parse_moment(options["since"], "--since") if options["since"] else None,
            until=parse_moment(options["until"], "--until") if options["until"] else None,
            limit=options["limit"],
            subject_ids=options["subject_ids"],
            force=options["force"],
            deliver=options["deliver"],
            dry_run=options["dry_run"],
        )
        out = self.stdout
        backfill = Backfill(
            source, run_options, emit=lambda item: out.write(json.dumps(item, ensure_ascii=False))
        )
        backfill.source_label = options["model"]
        verbosity = options["verbosity"]
        # With --dry-run, stdout carries the JSON lines; the summary goes to stderr.
        report = self.stderr if run_options.dry_run else self.stdout
        progress = verbosity >= 1 and sys.stderr.isatty()
        try:
            total = backfill.count()
        except MappingError as exc:
            raise CommandError(str(exc)) from None
        if workers == AUTO:
            workers = auto_workers(total, run_options, connection.vendor, self._sink(options))
        backfill.workers = workers

        previous = signal.getsignal(signal.SIGINT)

        def stop(signum: int, frame: FrameType | None) -> None:
            # Worker processes get the same Ctrl-C from the terminal and stop on their own.
            if backfill.stopping:  # a second Ctrl-C: stop now
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            backfill.stopping = True
            sys.stderr.write("\nstopping after the current batch (Ctrl-C again to abort)\n")

        signal.signal(signal.SIGINT, stop)
        started = time.monotonic()
        try:
            progress_source = (
                run_parallel(backfill, workers, options["model"]) if workers > 1 else backfill.run()
            )
            for stats in progress_source:
                if progress:
                    self._progress(stats, total, time.monotonic() - started)
        except MappingError as exc:
            raise CommandError(f"{exc} (fix {source.setting})") from None
        finally:
            signal.signal(signal.SIGINT, previous)
        if progress:
            sys.stderr.write("\n")
        if verbosity >= 1 or backfill.stats.invalid or backfill.stats.rejected:
            self._summary(report, backfill, time.monotonic() - started)

    def _sink(self, options: dict[str, Any]) -> Sink | None:
        """The sink this run delivers to (None when it delivers nothing itself)."""
        if options["dry_run"] or not options["deliver"]:
            return None
        try:
            return get_sink()
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from None

    def _source(self, model: str | None) -> Source:
        return configured_source(model, self.event)

    def _progress(self, stats: BackfillStats, total: int, elapsed: float) -> None:
        rate = stats.read / elapsed if elapsed > 0 else 0.0
        eta = duration((total - stats.read) / rate) if rate and total >= stats.read else "-"
        width = 24
        done = int(width * stats.read / total) if total else width
        bar = "#" * done + "-" * (width - done)
        sys.stderr.write(
            f"\r[{bar}] {stats.read:,}/{total:,} read, {stats.sent:,} sent, "
            f"{stats.unchanged:,} unchanged, {rate:,.0f} rows/s, ETA {eta}   "
        )
        sys.stderr.flush()

    def _summary(self, out: Any, backfill: Backfill, elapsed: float) -> None:
        stats = backfill.stats
        rate = stats.read / elapsed if elapsed > 0 else 0.0
        verb = "would record" if backfill.options.dry_run else "recorded"
        counts = [("read", f"{stats.read:,}"), (verb, f"{stats.recorded:,}")]
        if not backfill.options.dry_run:
            counts.append(("sent", f"{stats.sent:,}"))
        counts += [
            ("unchanged", f"{stats.unchanged:,} (already sent with the same content)"),
            ("invalid", f"{stats.invalid:,}"),
            ("rejected", f"{stats.rejected:,}"),
        ]
        if stats.superseded:
            counts.append(
                (
                    "superseded",
                    f"{stats.superseded:,} (a live save recorded newer content meanwhile; "
                    "its event stands)",
                )
            )
        if stats.to_retry:
            counts.append(
                (
                    "to retry",
                    f"{stats.to_retry:,} (kept pending: manage.py deliver_events sends them)",
                )
            )
        lines = [
            f"backfill {'stopped' if backfill.stopping else 'finished'} in {elapsed:.1f}s "
            f"({rate:,.0f} rows/s"
            + (f", {backfill.workers} processes)" if backfill.workers > 1 else ")"),
            *(f"  {label + ':':<13} {value}" for label, value in counts),
        ]
        if backfill.options.deliver is False and not backfill.options.dry_run:
            lines.append("  (--no-deliver: the outbox workers send what was recorded)")
        for row in stats.invalid_rows:
            lines.append(f"  invalid row {row}")
        if stats.invalid > len(stats.invalid_rows):
            lines.append(f"  ... and {stats.invalid - len(stats.invalid_rows)} more invalid rows")
        for reason, count in stats.rejected_reasons.items():
            lines.append(f"  rejected x{count}: {reason}")
        if stats.rejected:
            lines.append(
                "  rejected events are kept as dead rows: admin > Outbox events > status dead"
            )
        if backfill.stopping:
            lines.append(
                "interrupted: run the same command again to resume; what was already sent is "
                "skipped"
            )
        out.write("\n".join(lines) + "\n")
