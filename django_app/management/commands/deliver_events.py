"""``manage.py deliver_events``: the outbox worker (DISPATCH "worker").

Runs until SIGTERM/SIGINT (stopping at the next request of the batch in hand; what it
did not send stays pending), or with ``--once`` drains what is
due and exits. Several can run at once, on any hosts: claims never overlap.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, close_old_connections, connections

from django_app.conf import SETTING_NAME, app_settings
from django_app.dispatch import DrainStats, drain
from django_app.management.commands.tracking_status import duration, first_line_error, moment
from django_app.models import Status
from django_app.runtime import get_sink, secrets
from django_app.status import delivery_status
from django_app.store import get_store
from tracking_adapter import ConfigurationError
from tracking_adapter.security import redact

logger = logging.getLogger("django_app.dispatch")

USAGE_ERROR = 2  # exit code of a bad flag, as argparse's
MAX_BATCH_SIZE = 1_000_000
MAX_POLL_INTERVAL = 86_400.0  # a day; threading's waits overflow far beyond


def _problem(source: str, wanted: str, value: Any) -> CommandError:
    return CommandError(f"{source} must be {wanted}; got {value!r}", returncode=USAGE_ERROR)


def batch_size_of(value: Any, source: str) -> int:
    """A whole number from 1 to MAX_BATCH_SIZE (from the command line or call_command)."""
    wanted = f"a whole number from 1 to {MAX_BATCH_SIZE:,}"
    if isinstance(value, str):
        try:
            parsed = int(value.strip())
        except ValueError:
            raise _problem(source, wanted, value) from None
    elif isinstance(value, int) and not isinstance(value, bool):
        parsed = value
    elif isinstance(value, float) and value.is_integer():  # BATCH_SIZE = 500.0
        parsed = int(value)
    else:
        raise _problem(source, wanted, value)
    if not 1 <= parsed <= MAX_BATCH_SIZE:
        raise _problem(source, wanted, value)
    return parsed


def poll_interval_of(value: Any, source: str) -> float:
    """Seconds, more than 0 and at most a day: 0 or less would poll in a busy loop."""
    wanted = f"a number of seconds over 0 and at most {MAX_POLL_INTERVAL:g}"
    try:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError
        parsed = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise _problem(source, wanted, value) from None
    if not math.isfinite(parsed) or not 0 < parsed <= MAX_POLL_INTERVAL:
        raise _problem(source, wanted, value)
    return parsed


class Command(BaseCommand):
    help = "Deliver pending events (user_enriched, group_enriched) from the outbox."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="drain what is due, then exit")
        parser.add_argument(
            "--batch-size", default=None, help="events per claim (default: BATCH_SIZE)"
        )
        parser.add_argument(
            "--poll-interval",
            default=None,
            help="longest sleep between polls when nothing is due (default: POLL_INTERVAL)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] is None:
            batch_size = batch_size_of(app_settings.BATCH_SIZE, f"{SETTING_NAME}['BATCH_SIZE']")
        else:
            batch_size = batch_size_of(options["batch_size"], "--batch-size")
        if options["poll_interval"] is None:
            poll = poll_interval_of(app_settings.POLL_INTERVAL, f"{SETTING_NAME}['POLL_INTERVAL']")
        else:
            poll = poll_interval_of(options["poll_interval"], "--poll-interval")
        stop = threading.Event()
        if not options["once"]:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
        self.announce(batch_size, poll, options)
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
            if options["once"]:
                self.what_waits()

    def announce(self, batch_size: int, poll: float, options: dict[str, Any]) -> None:
        """Say how this worker is configured: to the log (INFO), and to stdout as well when
        the log would not show it (no handler takes django_app.dispatch at INFO)."""
        try:
            sink = get_sink().describe()
        except ConfigurationError:
            sink = f"{app_settings.SINK!r} (cannot be built: see the error that follows)"
        except Exception as exc:  # a sink class that fails to build: the loop reports it
            sink = f"{app_settings.SINK!r} (cannot be built: {type(exc).__name__})"
        line = (
            f"deliver_events starting{' (--once)' if options['once'] else ''}: "
            f"sink {redact(sink, secrets())}, dispatch {app_settings.DISPATCH}, "
            f"batch size {batch_size}, lease {float(app_settings.LEASE_SECONDS):g}s, "
            f"poll interval {poll:g}s, store {get_store().describe()}"
        )
        logger.info("%s", line)
        shown = logger.isEnabledFor(logging.INFO) and logger.hasHandlers()
        if not shown and options["verbosity"] >= (2 if options["once"] else 1):
            self.stdout.write(line)
            self.stdout.flush()  # now, not when the worker exits (stdout a pipe, a journal)

    def what_waits(self) -> None:
        """After ``--once``: what is still pending, when it is tried next, and why the last
        attempts failed (from ``delivery_status``, as ``manage.py tracking_status``)."""
        try:
            status = delivery_status()
        except DatabaseError:
            return  # the drain's own report stands; tracking_status says more when it can
        failing = [e for e in status.last_errors if e.status == Status.PENDING]
        why = f"; last error: {first_line_error(failing[0].error)}" if failing else ""
        dead = f"; {status.dead} dead in the outbox" if status.dead else ""
        if status.pending and not status.due:
            if status.next_attempt_at is None:
                when = ""
            else:
                wait = (status.next_attempt_at - status.now).total_seconds()
                when = f", next attempt at {moment(status.next_attempt_at)} (in {duration(wait)})"
            text = f"nothing due: {status.pending} pending{when}{why}{dead}"
        elif status.pending:
            text = (
                f"{status.due} of {status.pending} pending are due again (retried by the next "
                f"run){why}{dead}"
            )
        elif status.dead:
            text = f"nothing pending{dead}"
        else:
            return
        if why or dead:
            text += "; see manage.py tracking_status"
        self.stdout.write(self.style.WARNING(text) if why or dead else text)
