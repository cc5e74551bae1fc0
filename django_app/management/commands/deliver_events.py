"""``manage.py deliver_events``: the outbox worker (DISPATCH "worker").

Runs until SIGTERM/SIGINT (stopping at the next request of the batch in hand; what it
did not send stays pending), or with ``--once`` drains what is
due and exits. Several can run at once, on any hosts: claims never overlap.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, close_old_connections, connections

from django_app.conf import app_settings
from django_app.dispatch import DrainStats, drain
from tracking_adapter import ConfigurationError

logger = logging.getLogger("django_app.dispatch")


class Command(BaseCommand):
    help = "Deliver pending user_enriched events from the outbox."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="drain what is due, then exit")
        parser.add_argument("--batch-size", type=int, default=None, help="events per claim")
        parser.add_argument(
            "--poll-interval",
            type=float,
            default=None,
            help="longest sleep between polls when nothing is due (default: POLL_INTERVAL)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"] or app_settings.BATCH_SIZE
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        poll = options["poll_interval"] or app_settings.POLL_INTERVAL
        stop = threading.Event()
        if not options["once"]:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
        total = DrainStats()
        failures = 0
        while not stop.is_set():
            try:
                stats = drain(batch_size=batch_size, stop=stop)
                failures = 0
            except ConfigurationError as exc:
                # The sink cannot be built (a key that cannot be sent, say): nothing was
                # claimed, so every event stays pending; say what to fix, then look again.
                if options["once"]:
                    raise CommandError(f"cannot send: {exc}. Events stay pending.") from None
                failures += 1
                if failures == 1:
                    logger.error(
                        "deliver_events cannot send: %s. Events stay pending; fix the setting "
                        "(manage.py check reports it too) and they go out by themselves.",
                        exc,
                    )
                stop.wait(max(poll, 5.0))
                continue
            except DatabaseError as exc:
                # The database went away (restart, failover, killed backend): reconnect on
                # the next round instead of dying; nothing is lost, leases expire.
                failures += 1
                for connection in connections.all():
                    connection.close()
                wait = min(poll, 0.5 * 2**failures)
                self.stderr.write(f"database error, retrying in {wait:.1f}s: {exc}")
                stop.wait(wait)
                continue
            total.add(stats)
            if stats.claimed and options["verbosity"] >= 2:
                self.stdout.write(
                    f"{stats.delivered} delivered, {stats.retried} to retry, {stats.dead} dead"
                )
            if options["once"]:
                break
            if not stats.claimed:
                close_old_connections()
                stop.wait(poll)
            else:
                time.sleep(0)
        if options["verbosity"] >= 1:
            self.stdout.write(
                self.style.SUCCESS(
                    f"delivered {total.delivered}, to retry {total.retried}, dead {total.dead} "
                    f"({total.batches} batch(es))"
                )
            )
