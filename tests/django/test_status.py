"""What an operator sees: ``manage.py tracking_status``, what ``deliver_events`` says when it
starts and after ``--once``, and the retry lines of the log; against the loopback receiver,
on the suite's database (SQLite, or PostgreSQL in its pass)."""

from __future__ import annotations

import io
import json
import logging
import re
import selectors
import signal
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_app import dispatch
from django_app.models import LedgerEntry, OutboxEvent, Status
from tests.django.helpers import (
    REPO,
    make_profile,
    pending_rows,
    thrivestack_to,
    worker_env,
)
from tracking_adapter import UserEnrichedEvent
from tracking_adapter.receiver import Scripted
from tracking_adapter.sinks import Outcome, SendResult, Sink

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "tk_live_Zq8vX3status"  # distinctive: it must appear in no output, no log line


def with_key(receiver: Any, **overrides: Any) -> dict[str, Any]:
    config = thrivestack_to(receiver, **overrides)
    config["SINK_OPTIONS"] = {**config["SINK_OPTIONS"], "api_key": KEY}
    return config


def run(command: str, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def status_exit(*args: str) -> tuple[int, str, str]:
    """``tracking_status`` through call_command: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("tracking_status", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return int(exit_.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def utc(moment: datetime, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    return moment.astimezone(UTC).strftime(fmt)


def texts_of(records: list[logging.LogRecord]) -> list[str]:
    return [record.getMessage() for record in records]


@pytest.fixture
def refused(settings: Any, receiver: Any, caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    """Four pending events after a 401 whose message quotes the key back, as the issue saw
    it: ``deliver_events --once`` ran once and the events wait about five minutes."""
    settings.TRACKING_ADAPTER = with_key(receiver)
    caplog.set_level(logging.DEBUG)
    receiver.script(
        Scripted(401, {"success": False, "message": f"Unauthorized: x-api-key {KEY} unknown"})
    )
    pending_rows(4)
    out, err = run("deliver_events", "--once")
    return {"out": out, "err": err, "records": list(caplog.records)}  # the setup's records


def next_attempts() -> list[datetime]:
    return sorted(OutboxEvent.objects.values_list("next_attempt_at", flat=True))


# A time of day in a log line; the date comes first when it is another day than now.
CLOCK = r"((?:\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d UTC)"


def clock(moment: datetime) -> str:
    return utc(moment, "%H:%M:%S UTC")


def about_five_minutes(text: str) -> bool:
    """``(in 4m 59s)``: the sink's 300 s config_retry_delay, less the time since."""
    found = re.search(r"\(in (\d+)m (\d+)s\)", text)
    return found is not None and 240 <= int(found[1]) * 60 + int(found[2]) <= 300


# -- tracking_status after a 401 -----------------------------------------------------------


def test_after_a_401_status_says_not_healthy_why_and_what_to_do(refused, caplog):
    code, out, err = status_exit()

    assert code == 0  # no threshold given: a report, not a verdict
    lines = out.splitlines()
    assert lines[0].startswith(
        "tracking: NOT HEALTHY: 4 pending event(s) failing: ThriveStack refused the "
        "credentials (HTTP 401: Unauthorized: x-api-key [redacted] unknown)"
    ), lines[0]
    assert lines[1].startswith("what to do: The collector refused the key: fix TRACKING_ADAPTER")
    facts = dict(
        re.findall(r"^  (pending|oldest pending|next attempt|dead|ledger)\s+(.*)$", out, re.M)
    )
    assert facts["pending"] == "4 (0 due now)"
    assert re.fullmatch(r"\d+\.\ds old", facts["oldest pending"])
    first = next_attempts()[0]
    assert facts["next attempt"].startswith(f"{utc(first)} (in ")
    assert about_five_minutes(facts["next attempt"]), facts["next attempt"]
    assert facts["dead"] == "0"
    assert facts["ledger"].startswith("0 subject(s)")
    [stream] = [line for line in lines if line.startswith("  user_enriched ")]
    assert re.search(r"thrivestack http://127\.0\.0\.1:\d+/api/track\s+4\s+0\s+0\s+0\s+0$", stream)
    assert "  - 4 pending, last " in out
    assert "    what to do: The collector refused the key" in out
    assert "[redacted]" in out
    logs = texts_of(refused["records"] + caplog.records)
    assert any("HTTP 401" in text for text in logs)  # the logs were captured, and say it
    assert KEY not in out + err + refused["out"] + refused["err"] + "".join(logs)


def test_status_as_json_has_the_figures_and_the_redacted_error(refused):
    code, out, err = status_exit("--json")

    assert code == 0
    assert err == ""
    data = json.loads(out)  # one JSON object, nothing else on stdout
    assert {"pending", "due", "dead", "delivered", "oldest_pending_seconds"} <= set(data)
    assert (data["pending"], data["due"], data["dead"]) == (4, 0, 0)
    assert data["delivered"] == {"last_hour": 0, "last_day": 0}
    assert 0 <= data["oldest_pending_seconds"] < 60
    assert datetime.fromisoformat(data["next_attempt_at"]) == next_attempts()[0]
    assert data["healthy"] is False
    assert data["problems"][0].startswith("4 pending event(s) failing: ThriveStack refused")
    [error] = data["last_errors"]
    assert (error["status"], error["count"]) == ("pending", 4)
    assert "HTTP 401" in error["error"]
    assert "[redacted]" in error["error"]
    assert error["advice"].startswith("The collector refused the key")
    [stream] = data["streams"]
    assert (stream["event"], stream["pending"], stream["due"]) == ("user_enriched", 4, 0)
    assert KEY not in out


def test_status_of_a_healthy_outbox_and_the_ledger_size(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    code, out, _ = status_exit("--json")
    empty = json.loads(out)
    assert (code, empty["pending"], empty["oldest_pending_seconds"]) == (0, 0, None)
    assert empty["next_attempt_at"] is None
    assert empty["healthy"] is True

    for city in ("Pune", "Oslo", "Lima"):
        make_profile(city=city)  # recorded through the ledger, as live saves are
    pending_rows(2)
    run("deliver_events", "--once")

    code, out, _ = status_exit()
    assert code == 0
    assert out.splitlines()[0] == (
        "tracking: healthy: 0 pending (0 due now), 0 dead, 5 delivered in the last hour"
    )
    assert "what to do" not in out
    assert re.search(r"^  ledger\s+3 subject\(s\) recorded", out, re.M)
    data = json.loads(status_exit("--json")[1])
    assert data["delivered"] == {"last_hour": 5, "last_day": 5}
    assert data["ledger_size"] == LedgerEntry.objects.count() == 3
    assert data["oldest_pending_seconds"] is None
    code, named, _ = status_exit("--database", "default")  # the alias, named
    assert (code, named.splitlines()[0]) == (0, out.splitlines()[0])


# -- thresholds ----------------------------------------------------------------------------


def test_max_lag_exits_1_only_when_the_oldest_pending_event_is_older(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    pending_rows(3)
    OutboxEvent.objects.update(created_at=timezone.now() - timedelta(seconds=600))

    code, out, _ = status_exit("--max-lag", "300")
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith("tracking: NOT HEALTHY: the oldest pending event is 10m 0s old")
    assert first.endswith("over --max-lag 300s")
    assert "check that a worker runs" in out.splitlines()[1]  # no error: nobody sends them

    assert status_exit("--max-lag", "900")[0] == 0
    code, out, err = status_exit("--max-lag", "60", "--json")
    assert code == 1
    assert json.loads(out)["healthy"] is False  # stdout stays one JSON object
    assert err.startswith("threshold crossed: the oldest pending event is 10m")


def test_max_dead_exits_1_when_more_are_dead(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    pending_rows(3)
    assert status_exit("--max-dead", "0")[0] == 0  # nothing dead yet
    OutboxEvent.objects.filter(user_id__in=["u0", "u1"]).update(
        status=Status.DEAD, last_error="ThriveStack answered HTTP 400: event 0: bad city"
    )

    code, out, _ = status_exit("--max-dead", "1")
    assert code == 1
    assert "2 event(s) are dead, over --max-dead 1" in out.splitlines()[0]
    assert "2 dead event(s)" in out.splitlines()[0]
    assert status_exit("--max-dead", "2")[0] == 0
    assert status_exit("--max-dead", "2", "--max-lag", "3600")[0] == 0
    code, out, _ = status_exit("--max-dead", "2")
    assert out.startswith("tracking: NOT HEALTHY: 2 dead event(s)")  # said, though exit 0


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--max-lag", "-1"], "--max-lag"),
        (["--max-lag", "soon"], "--max-lag"),
        (["--max-lag", "nan"], "--max-lag"),
        (["--max-lag", "inf"], "--max-lag"),
        (["--max-dead", "-1"], "--max-dead"),
        (["--max-dead", "1.5"], "--max-dead"),
        (["--max-dead", "many"], "--max-dead"),
        (["--database", "nowhere"], "--database"),
    ],
)
def test_bad_status_flags_are_a_command_error_naming_the_flag(args, flag):
    with pytest.raises(CommandError, match=re.escape(flag)) as refused:
        call_command("tracking_status", *args, stdout=io.StringIO())
    assert refused.value.returncode == 2


def test_exit_codes_through_manage_py(receiver):
    pending_rows(2)
    OutboxEvent.objects.filter(user_id="u0").update(status=Status.DEAD, last_error="gave up")

    def status(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "django", "tracking_status", *args],
            env=worker_env(receiver),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    crossed = status("--max-dead", "0")
    assert crossed.returncode == 1, crossed.stderr
    assert "1 event(s) are dead, over --max-dead 0" in crossed.stdout
    assert status("--max-dead", "1").returncode == 0
    bad = status("--max-lag", "-5")
    assert bad.returncode == 2
    assert "--max-lag" in bad.stderr


# -- deliver_events ------------------------------------------------------------------------


def test_once_says_what_waits_and_when_it_is_tried_next(refused, receiver):
    assert refused["out"].splitlines()[0] == "delivered 0, to retry 4, dead 0 (1 batch(es))"
    first = next_attempts()[0]
    said = refused["out"].splitlines()[1]
    assert said.startswith(f"nothing due: 4 pending, next attempt at {utc(first)} (in ")
    assert about_five_minutes(said), said
    assert "; last error: ThriveStack refused the credentials (HTTP 401" in said
    assert said.endswith("see manage.py tracking_status")

    out, _ = run("deliver_events", "--once")  # the run the issue quotes
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0] == "delivered 0, to retry 0, dead 0 (0 batch(es))"
    assert lines[1].startswith(f"nothing due: 4 pending, next attempt at {utc(first)} (in ")
    assert about_five_minutes(lines[1]), lines[1]
    assert "; last error: ThriveStack refused the credentials (HTTP 401" in lines[1]
    assert receiver.request_count == 1  # nothing was due, nothing was sent
    assert KEY not in refused["out"] + refused["err"] + out


def test_once_says_nothing_more_when_nothing_waits(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    pending_rows(2)
    out, _ = run("deliver_events", "--once")
    assert out.splitlines() == ["delivered 2, to retry 0, dead 0 (1 batch(es))"]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "-3"], "--batch-size"),
        (["--batch-size", "1.5"], "--batch-size"),
        (["--batch-size", "lots"], "--batch-size"),
        (["--batch-size", "99999999999999999999"], "--batch-size"),
        (["--poll-interval", "0"], "--poll-interval"),
        (["--poll-interval", "-1"], "--poll-interval"),
        (["--poll-interval", "nan"], "--poll-interval"),
        (["--poll-interval", "inf"], "--poll-interval"),
        (["--poll-interval", "1e300"], "--poll-interval"),
        (["--poll-interval", "often"], "--poll-interval"),
    ],
)
def test_bad_worker_flags_are_refused_before_anything_is_claimed(settings, receiver, args, flag):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver)
    pending_rows(2)
    with pytest.raises(CommandError, match=re.escape(flag)) as refused:
        call_command("deliver_events", "--once", *args, stdout=io.StringIO())
    assert refused.value.returncode == 2
    assert args[1] in str(refused.value)  # says what it got
    assert receiver.request_count == 0
    assert set(OutboxEvent.objects.values_list("status", "attempts")) == {(Status.PENDING, 0)}


def test_bad_settings_are_refused_too_naming_the_setting(settings, receiver):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver, POLL_INTERVAL=0)
    with pytest.raises(CommandError, match=re.escape("TRACKING_ADAPTER['POLL_INTERVAL']")):
        call_command("deliver_events", "--once", stdout=io.StringIO())
    settings.TRACKING_ADAPTER = thrivestack_to(receiver, BATCH_SIZE=0)
    with pytest.raises(CommandError, match=re.escape("TRACKING_ADAPTER['BATCH_SIZE']")):
        call_command("deliver_events", "--once", stdout=io.StringIO())


def test_the_worker_logs_its_configuration_at_start(settings, receiver, caplog):
    settings.TRACKING_ADAPTER = with_key(receiver, LEASE_SECONDS=90)
    with caplog.at_level(logging.INFO, logger="django_app.dispatch"):
        out, _ = run(
            "deliver_events", "--once", "-v", "2", "--batch-size", "7", "--poll-interval", "0.5"
        )
    [line] = [
        r
        for r in caplog.records
        if r.name == "django_app.dispatch" and "deliver_events starting" in r.getMessage()
    ]
    assert line.levelno == logging.INFO
    message = line.getMessage()
    assert re.search(r"sink thrivestack http://127\.0\.0\.1:\d+/api/track, ", message), message
    assert "dispatch worker, batch size 7, lease 90s, poll interval 0.5s" in message
    assert "store " in message
    assert "on 'default'" in message
    assert KEY not in message
    assert "deliver_events starting" not in out  # the log shows it: not said twice

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="django_app.dispatch"):  # INFO not shown
        out, _ = run("deliver_events", "--once", "-v", "2", "--batch-size", "7")
    assert out.splitlines()[0].startswith("deliver_events starting (--once): sink thrivestack")
    assert KEY not in out


def test_a_worker_says_what_it_runs_with_on_stdout_when_no_log_shows_it(receiver):
    env = worker_env(receiver)
    env.pop("PYTHONUNBUFFERED", None)  # stdout a pipe, block-buffered, as under systemd
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "django",
            "deliver_events",
            "--poll-interval",
            "0.3",
            "--batch-size",
            "50",
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        with selectors.DefaultSelector() as ready:
            ready.register(worker.stdout, selectors.EVENT_READ)
            assert ready.select(timeout=30), "the worker said nothing when it started"
        first = worker.stdout.readline()
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    assert first.startswith("deliver_events starting: sink thrivestack http://127.0.0.1:")
    assert "batch size 50, lease 120s, poll interval 0.3s" in first
    assert "test-api-key" not in first + out + err  # the settings' key for subprocesses
    assert out.splitlines()[-1] == "delivered 0, to retry 0, dead 0 (0 batch(es))"


# -- the retry lines of the log ------------------------------------------------------------


def test_each_retry_is_logged_with_its_attempt_and_next_time(settings, receiver, caplog):
    settings.TRACKING_ADAPTER = with_key(receiver, RETRY={"MAX_ATTEMPTS": 5})
    [row] = pending_rows(1)
    caplog.set_level(logging.DEBUG)

    for attempt in (1, 2):
        caplog.clear()
        receiver.script(Scripted(500, {"message": f"collector on fire (key {KEY})"}))
        OutboxEvent.objects.update(next_attempt_at=timezone.now())
        before = timezone.now()
        assert dispatch.drain().retried == 1
        row.refresh_from_db()
        [record] = [r for r in caplog.records if "will be retried" in r.getMessage()]
        assert (record.name, record.levelno) == ("django_app.dispatch", logging.WARNING)
        said = re.fullmatch(
            r"1 user_enriched event\(s\) will be retried: attempt (\d) of 5 failed, "
            rf"next at {CLOCK} \(in (\d+\.\d)s\): (.*)",
            record.getMessage(),
        )
        assert said is not None, record.getMessage()
        assert int(said.group(1)) == attempt == row.attempts
        assert said.group(2).endswith(clock(row.next_attempt_at))
        ceiling = 2.0 * 2 ** (attempt - 1)  # the policy's jitter range for this attempt
        assert float(said.group(3)) <= ceiling + 0.05
        assert row.next_attempt_at <= before + timedelta(seconds=ceiling + 1)
        assert said.group(4) == "ThriveStack answered HTTP 500: collector on fire (key [redacted])"
        assert not any(KEY in text for text in texts_of(caplog.records))


def test_a_batch_of_retries_is_one_line_with_the_range_of_next_times(settings, receiver, caplog):
    settings.TRACKING_ADAPTER = thrivestack_to(receiver, RETRY={"BASE_DELAY": 60})
    pending_rows(6)
    receiver.script(Scripted(503, {"message": "maintenance"}))
    with caplog.at_level(logging.WARNING, logger="django_app.dispatch"):
        run("deliver_events", "--once")
    [message] = [m for m in texts_of(caplog.records) if "will be retried" in m]
    times = sorted(OutboxEvent.objects.values_list("next_attempt_at", flat=True))
    assert message.startswith("6 user_enriched event(s) will be retried: attempt 1 of 25 failed, ")
    said = re.search(rf"next from {CLOCK} to {CLOCK} \(in (\d+\.\d)s to ", message)
    assert said is not None, message  # six draws over 60 s differ
    assert said[1].endswith(clock(times[0]))
    assert said[2].endswith(clock(times[-1]))
    assert float(said[3]) <= 60
    assert message.endswith(": ThriveStack answered HTTP 503: maintenance")


class PerEventReasonsSink(Sink):
    """A host's own sink (SINK by dotted path) that fails each event for its own reason."""

    def send(self, events: Sequence[UserEnrichedEvent]) -> SendResult:
        return SendResult([Outcome.retry(f"{e.user_id}: shard timed out") for e in events])

    def describe(self) -> str:
        return "per-event reasons"


def test_a_batch_failing_for_many_reasons_logs_a_few_lines_not_one_per_event(settings, caplog):
    settings.TRACKING_ADAPTER = {
        **settings.TRACKING_ADAPTER,
        "SINK": "tests.django.test_status.PerEventReasonsSink",
    }
    pending_rows(8)
    with caplog.at_level(logging.WARNING, logger="django_app.dispatch"):
        assert dispatch.drain().retried == 8
    lines = [m for m in texts_of(caplog.records) if "will be retried" in m]
    assert len(lines) == 6
    for line in lines[:5]:
        assert re.fullmatch(
            r"1 user_enriched event\(s\) will be retried: attempt 1 of 25 failed, next at "
            rf"{CLOCK} \(in \d\.\ds\): u\d: shard timed out",
            line,
        ), line
    assert lines[5].startswith(
        "3 more user_enriched event(s) of this batch will be retried for 3 other reason(s), next "
    )


def test_a_configuration_error_is_logged_with_the_next_attempt(refused):
    [message] = [
        r.getMessage()
        for r in refused["records"]
        if r.name == "django_app.dispatch" and r.levelno == logging.ERROR
    ]
    first = next_attempts()[0]
    # The sink's config_retry_delay, 300 s, counted from the moment the batch was settled.
    said = re.match(
        r"4 user_enriched event\(s\) kept pending because of a configuration error \(not "
        rf"counted as attempts; next at {CLOCK} \(in 5m 0s\)\): ThriveStack refused",
        message,
    )
    assert said is not None, message
    assert said[1].endswith(clock(first))
    assert "SINK_OPTIONS" in message
    assert "[redacted]" in message
    assert KEY not in message
