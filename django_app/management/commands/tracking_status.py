"""``manage.py tracking_status``: is tracking healthy, and if not, what to do.

Everything it shows comes from ``django_app.status.delivery_status()``, the figures the
admin and the health check show too. The first line says healthy or not and why; the
next, what to do. ``--json`` prints the same as one JSON object. ``--max-lag`` and
``--max-dead`` make it exit 1 when crossed, for cron and health probes; bad flags exit 2.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections

from django_app.models import Status
from django_app.status import DeliveryStatus, ErrorSummary, delivery_status

USAGE_ERROR = 2  # exit code of a bad flag, as argparse's; 1 is a crossed threshold
FIRST_LINE_ERROR = 100  # characters of an error quoted in the first line
NO_WORKER_ADVICE = (
    "Events wait without errors: check that a worker runs (manage.py deliver_events, or "
    "Celery beat's django_app.deliver_outbox sweep) and can reach the database."
)


def duration(seconds: float) -> str:
    """``4.0s``, ``42s``, ``4m 10s``, ``3h 5m``, ``2d 4h``."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60}m"
    return f"{whole // 86400}d {whole % 86400 // 3600}h"


def moment(value: datetime) -> str:
    """``2026-12-02 14:05:00 UTC``."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def next_attempt(status: DeliveryStatus) -> str:
    """``2026-12-02 14:05:00 UTC (in 4m 10s)``, or ``-``."""
    if status.next_attempt_at is None:
        return "-"
    wait = (status.next_attempt_at - status.now).total_seconds()
    return f"{moment(status.next_attempt_at)} (in {duration(wait)})"


def first_line_error(error: str) -> str:
    """An error shortened for the first line: up to its first clause."""
    head = error.split("; ", 1)[0]
    if len(head) > FIRST_LINE_ERROR:
        head = head[: FIRST_LINE_ERROR - 3].rstrip() + "..."
    return head


def number(flag: str, value: Any, *, integer: bool) -> float | int | None:
    """A flag's value: a finite number, 0 or more (a whole one if ``integer``)."""
    if value is None:
        return None
    kind = "a whole number" if integer else "a number of seconds"
    problem = CommandError(
        f"{flag} must be {kind}, 0 or more; got {value!r}", returncode=USAGE_ERROR
    )
    if isinstance(value, bool):
        raise problem
    parsed: float | int
    try:
        if isinstance(value, str):
            parsed = int(value.strip()) if integer else float(value.strip())
        elif integer and isinstance(value, int):
            parsed = value
        elif not integer and isinstance(value, int | float):
            parsed = float(value)
        else:
            raise problem
    except (ValueError, OverflowError):
        raise problem from None
    if not math.isfinite(parsed) or parsed < 0:
        raise problem
    return parsed


class Command(BaseCommand):
    help = (
        "Show the state of event delivery: what waits, since when, the next attempt, what "
        "is dead, recent errors and what to do. Exits 1 past --max-lag or --max-dead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument(
            "--max-lag",
            metavar="SECONDS",
            default=None,
            help="exit 1 when the oldest pending event is older than this",
        )
        parser.add_argument(
            "--max-dead",
            metavar="N",
            default=None,
            help="exit 1 when more than N events are dead",
        )
        parser.add_argument(
            "--database",
            metavar="ALIAS",
            default=None,
            help="the database alias of the outbox (default: where the router writes it)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        max_lag = number("--max-lag", options["max_lag"], integer=False)
        max_dead = number("--max-dead", options["max_dead"], integer=True)
        using = options["database"]
        if using is not None and using not in connections.databases:
            raise CommandError(
                f"--database {using!r} is not in DATABASES "
                f"(there: {', '.join(sorted(connections.databases))})",
                returncode=USAGE_ERROR,
            )
        try:
            status = delivery_status(using)
        except DatabaseError as exc:
            raise CommandError(f"cannot read the outbox: {exc}") from None

        crossed = []
        lag = status.oldest_pending_seconds
        if max_lag is not None and lag is not None and lag > max_lag:
            crossed.append(
                f"the oldest pending event is {duration(lag)} old, over --max-lag {max_lag:g}s"
            )
        if max_dead is not None and status.dead > max_dead:
            crossed.append(f"{status.dead} event(s) are dead, over --max-dead {max_dead}")

        if options["json"]:
            data = status.as_json()
            data["healthy"] = status.healthy and not crossed
            data["problems"] = problems(status) + crossed
            self.stdout.write(json.dumps(data))
            for line in crossed:
                self.stderr.write(f"threshold crossed: {line}")
        else:
            self.stdout.write("\n".join(report(status, crossed)))
        if crossed:
            sys.exit(1)


def problems(status: DeliveryStatus) -> list[str]:
    """Why delivery is not healthy, most urgent first (empty when it is)."""
    found = []
    failing = [e for e in status.last_errors if e.status == Status.PENDING]
    if failing:
        count = sum(e.count for e in failing)
        found.append(f"{count} pending event(s) failing: {first_line_error(failing[0].error)}")
    if status.dead:
        found.append(f"{status.dead} dead event(s)")
    return found


def advice(status: DeliveryStatus, crossed: list[str]) -> str | None:
    """What to do first, for the most urgent problem."""
    for wanted in (Status.PENDING, Status.DEAD):
        for error in status.last_errors:
            if error.status == wanted:
                return error.advice
    if status.dead:
        return "Requeue the dead events from the admin (action 'Requeue dead events')."
    if crossed and status.pending:
        return NO_WORKER_ADVICE
    return None


def report(status: DeliveryStatus, crossed: list[str]) -> list[str]:
    found = problems(status) + crossed
    if found:
        lines = ["tracking: NOT HEALTHY: " + "; ".join(found)]
    else:
        lines = [
            f"tracking: healthy: {status.pending} pending ({status.due} due now), "
            f"{status.dead} dead, {status.delivered_last_hour} delivered in the last hour"
        ]
    todo = advice(status, crossed)
    if todo:
        lines.append(f"what to do: {todo}")
    lag = status.oldest_pending_seconds
    oldest = "-" if lag is None else f"{duration(lag)} old"
    facts = [
        ("pending", f"{status.pending} ({status.due} due now)"),
        ("oldest pending", oldest),
        ("next attempt", next_attempt(status)),
        ("dead", str(status.dead)),
        (
            "delivered",
            f"{status.delivered_last_hour} in the last hour, "
            f"{status.delivered_last_day} in the last day",
        ),
        ("ledger", f"{status.ledger_size} subject(s) recorded (backfills included)"),
    ]
    width = max(len(name) for name, _ in facts)
    lines += [""] + [f"  {name:<{width}}  {value}" for name, value in facts]
    lines += ["", *streams_table(status)]
    if status.last_errors:
        lines += ["", "  last errors (redacted):"]
        lines += [line for error in status.last_errors for line in error_lines(error)]
    lines.append(f"\n  as of {moment(status.now)}")
    return lines


def streams_table(status: DeliveryStatus) -> list[str]:
    if not status.streams:
        return ["  no events pending, dead, or delivered in the last day"]
    header = ("event", "sink", "pending", "due", "dead", "deliv. 1h", "deliv. 24h")
    rows = [
        (
            s.event,
            s.sink,
            str(s.pending),
            str(s.due),
            str(s.dead),
            str(s.delivered_last_hour),
            str(s.delivered_last_day),
        )
        for s in status.streams
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        text = [f"{row[i]:<{widths[i]}}" for i in (0, 1)]
        text += [f"{row[i]:>{widths[i]}}" for i in range(2, len(row))]
        return "  " + "  ".join(text)

    return [line(header)] + [line(row) for row in rows]


def error_lines(error: ErrorSummary) -> list[str]:
    seen = f", last {moment(error.last_seen)}" if error.last_seen else ""
    return [
        f"  - {error.count} {error.status}{seen}: {error.error}",
        f"    what to do: {error.advice}",
    ]
