"""Monitoring: the django-health-check check and the Prometheus metrics, both read from the
database at request time (``delivery_status()``), with no key and no event content.

The rows are real rows of the test database, committed (``transaction=True``): the health
check runs on a thread of django-health-check's own, with a connection of its own, and a
scrape is answered by whichever process gets it. So the tests write rows through the ORM,
through a second raw connection (``other_session``), and read them from another process
(a subprocess scraping the same database): each scrape reports the rows as they are then,
which is what makes any number of processes report one truth.

Each half needs its optional extra (``tracking-adapter[health]``, ``[prometheus]``): the
tests skip with the reason without it, and fail under CI=true.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from django_app.models import LedgerEntry, OutboxEvent, Status
from tests.conftest import IN_CI
from tests.django.helpers import PASS_OF_VENDOR, REPO, other_session, pg_driver, tracking

pytestmark = pytest.mark.django_db(transaction=True)

HEALTH_URL = "/health/tracking/"
TOLERANT_URL = "/health/tracking-tolerant/"  # max_lag 2 h, max_dead 2 (tests/urls.py)
METRICS_URL = "/metrics/tracking/"
CHECK = "TrackingDelivery(alias=None)"

KEY = "sk-Distinctive-Monitoring-Key-8c41f0"
SINK = "thrivestack https://collector.example/api/track"
# A sink column that would leak the key if it were exported as it is.
LEAKY_SINK = f"thrivestack https://user:{KEY}@collector.example/api/track?api_key={KEY}"
CONTENT = ("Distinctive-City-Q7", "distinctive-user-Q7")  # in payloads and user ids

_ids = itertools.count()


def _require(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is not None:
        return
    message = (
        f"{module} is not installed: pip install 'tracking-adapter[{extra}]' "
        "(it is in the test group)"
    )
    if IN_CI:
        pytest.fail(message + " (required under CI=true)")
    pytest.skip(message)


@pytest.fixture
def health_check_installed() -> None:
    _require("health_check", "health")


@pytest.fixture
def prometheus_installed() -> None:
    _require("prometheus_client", "prometheus")


@pytest.fixture
def key_configured() -> Any:
    """A real-looking sink configuration whose key must never be shown."""
    options = {"api_key": KEY, "endpoint": "http://127.0.0.1:9/api"}
    with override_settings(TRACKING_ADAPTER=tracking(SINK="thrivestack", SINK_OPTIONS=options)):
        yield


def row(*, age: timedelta = timedelta(0), **fields: Any) -> OutboxEvent:
    """One committed outbox row created ``age`` ago (pending, never tried, by default)."""
    n = next(_ids)
    created = timezone.now() - age
    values: dict[str, Any] = {
        "message_id": f"monitoring-{os.getpid()}-{n}",
        "user_id": f"{CONTENT[1]}-{n}",
        "group_id": "acct_1",
        "payload": {"user_id": f"{CONTENT[1]}-{n}", "properties": {"city": CONTENT[0]}},
        "created_at": created,
        "next_attempt_at": created,
    }
    values.update(fields)
    return OutboxEvent.objects.create(**values)


def dead_row(**fields: Any) -> OutboxEvent:
    values: dict[str, Any] = {
        "status": Status.DEAD,
        "sink": SINK,
        "attempts": 8,
        "last_error": f"gave up after 8 attempts: 500 from {LEAKY_SINK}",
    }
    return row(**{**values, **fields})


def assert_nothing_secret(text: str) -> None:
    assert KEY not in text
    assert "user:" not in text
    for content in CONTENT:
        assert content not in text


# --- django-health-check ------------------------------------------------------------------


def health(client: Client, url: str = HEALTH_URL) -> tuple[int, str]:
    response = client.get(url, HTTP_ACCEPT="text/plain")
    body = response.content.decode()
    assert_nothing_secret(body)
    return response.status_code, body


@pytest.mark.usefixtures("health_check_installed", "key_configured")
class TestHealthCheck:
    def test_an_empty_outbox_and_fresh_pending_events_are_healthy(self, client: Client) -> None:
        assert health(client) == (200, f"{CHECK}: OK\n")
        row()  # just written: not late
        row(status=Status.DELIVERED, sink=SINK, delivered_at=timezone.now())
        assert health(client) == (200, f"{CHECK}: OK\n")

    def test_an_event_pending_longer_than_max_lag_is_unavailable_with_advice(
        self, client: Client
    ) -> None:
        row(age=timedelta(minutes=5))
        late = row(
            age=timedelta(hours=1),
            sink=LEAKY_SINK,
            attempts=3,
            last_error=f"401 Unauthorized: the api key {KEY} is not valid",
        )
        status, body = health(client)
        assert status == 500
        assert body.startswith(f"{CHECK}: Unavailable: the oldest pending event has waited ")
        waited = re.search(r"waited (\d+) s", body)
        assert waited
        assert 3590 <= int(waited[1]) <= 3700
        assert "over the 900 s allowed (2 pending, 2 due)" in body
        assert "is delivery running" in body
        assert "The collector refused the key: fix TRACKING_ADAPTER['SINK_OPTIONS']" in body
        assert "401" not in body  # advice, never the error's own text

        # Delivered since: the next request knows (nothing is remembered between requests).
        late.status, late.delivered_at = Status.DELIVERED, timezone.now()
        late.save()
        assert health(client) == (200, f"{CHECK}: OK\n")

    def test_dead_events_over_max_dead_are_a_warning_which_is_still_a_500(
        self, client: Client
    ) -> None:
        dead_row()
        status, body = health(client)
        # django-health-check 4 fails the endpoint for a ServiceWarning too.
        assert status == 500
        assert body.startswith(f"{CHECK}: Warning: 1 dead event, over the 0 allowed (Retries ")
        dead_row()
        assert "Warning: 2 dead events, over the 0 allowed" in health(client)[1]

    def test_lag_and_dead_events_together_are_unavailable_naming_both(self, client: Client) -> None:
        row(age=timedelta(hours=1))
        dead_row(last_error="")
        status, body = health(client)
        assert status == 500
        assert f"{CHECK}: Unavailable: the oldest pending event has waited" in body
        assert (
            "; 1 dead event, over the 0 allowed (fix the cause, then requeue them from the "
            "admin)" in body
        )

    def test_thresholds_are_options_of_the_check_in_the_views_checks(self, client: Client) -> None:
        row(age=timedelta(hours=1))
        dead_row()
        dead_row()
        assert health(client, TOLERANT_URL) == (200, f"{CHECK}: OK\n")
        dead_row()
        status, body = health(client, TOLERANT_URL)
        assert (status, body) == (
            500,
            f"{CHECK}: Warning: 3 dead events, over the 2 allowed (Retries ran out: once "
            "the cause is fixed, requeue them from the admin (action 'Requeue dead "
            "events').)\n",
        )
        row(age=timedelta(hours=3))
        assert "Unavailable: the oldest pending event has waited" in health(client, TOLERANT_URL)[1]

    def test_the_check_can_be_turned_off_per_half_and_reports_a_missing_alias(self) -> None:
        from health_check.exceptions import ServiceUnavailable

        from django_app.health import TrackingDelivery

        row(age=timedelta(days=1))
        dead_row()
        TrackingDelivery(max_lag=None, max_dead=None).run()  # raises nothing
        with pytest.raises(ServiceUnavailable, match="Database alias does not exist"):
            TrackingDelivery(alias="no-such-database").run()

    def test_json_and_html_formats_and_the_health_check_command(
        self, client: Client, capsys: pytest.CaptureFixture[str]
    ) -> None:
        dead_row()
        response = client.get(HEALTH_URL, {"format": "json"})
        assert response.status_code == 500
        assert json.loads(response.content) == {
            CHECK: "Warning: 1 dead event, over the 0 allowed (Retries ran out: once the "
            "cause is fixed, requeue them from the admin (action 'Requeue dead events').)"
        }
        page = client.get(HEALTH_URL, HTTP_ACCEPT="text/html")
        assert page.status_code == 500
        assert "TrackingDelivery" in page.content.decode()
        assert_nothing_secret(page.content.decode())

        # For cron and container health commands: no HTTP server needed.
        OutboxEvent.objects.all().delete()
        with pytest.raises(SystemExit) as exit_code:
            call_command("health_check", "tracking_health", "--no-http")
        assert exit_code.value.code == 0
        assert f"{CHECK}: OK" in capsys.readouterr().out


# --- Prometheus ---------------------------------------------------------------------------

STREAM_GAUGES = (
    "tracking_adapter_events_pending",
    "tracking_adapter_events_due",
    "tracking_adapter_events_dead",
    "tracking_adapter_events_delivered_last_hour",
    "tracking_adapter_events_delivered_last_day",
)


def parse(text: str, *, openmetrics: bool = False) -> dict[str, dict[tuple[str, ...], float]]:
    """``{metric name: {(event, sink) or (): value}}`` from an exposition."""
    if openmetrics:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
    else:
        from prometheus_client.parser import text_string_to_metric_families

    series: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(text):
        series.setdefault(family.name, {})
        for sample in family.samples:
            labels = tuple(
                sample.labels[name] for name in ("event", "sink") if name in sample.labels
            )
            series[sample.name][labels] = sample.value
    return series


def scrape(client: Client) -> dict[str, dict[tuple[str, ...], float]]:
    response = client.get(METRICS_URL)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert_nothing_secret(text)
    return parse(text)


def streams(series: dict[str, dict[tuple[str, ...], float]]) -> dict[tuple[str, ...], list[float]]:
    """``{(event, sink): [pending, due, dead, delivered last hour, last day]}``."""
    keys = sorted({key for name in STREAM_GAUGES for key in series[name]})
    return {key: [series[name].get(key, 0.0) for name in STREAM_GAUGES] for key in keys}


def totals(series: dict[str, dict[tuple[str, ...], float]]) -> tuple[float, float, float]:
    """(oldest pending seconds, ledger subjects, up)."""
    return (
        series["tracking_adapter_oldest_pending_seconds"][()],
        series["tracking_adapter_ledger_subjects"][()],
        series["tracking_adapter_up"][()],
    )


def some_of_everything() -> None:
    now = timezone.now()
    for _ in range(3):
        row()  # pending, never tried: sink "(not tried yet)"
    row(event="user_signed_up")
    for _ in range(2):  # retrying after a 401, not due yet, through a sink naming the key
        row(
            age=timedelta(hours=1),
            sink=LEAKY_SINK,
            attempts=2,
            next_attempt_at=now + timedelta(minutes=5),
            last_error=f"401: bad key {KEY}",
        )
    dead_row()
    for minutes in (10, 20, 180):
        row(status=Status.DELIVERED, sink=SINK, delivered_at=now - timedelta(minutes=minutes))
    for n in range(4):
        LedgerEntry.objects.create(subject_id=f"subject-{n}", content_hash="h", message_id=f"m{n}")


@pytest.mark.usefixtures("prometheus_installed", "key_configured")
class TestMetrics:
    def test_the_gauges_by_event_and_sink_with_no_key_and_no_content(self, client: Client) -> None:
        some_of_everything()
        series = scrape(client)
        assert streams(series) == {
            # The leaky sink is exported without its credentials and query, so its rows
            # are counted with the other rows of the same sink.
            ("user_enriched", SINK): [2, 0, 1, 2, 3],
            ("user_enriched", "(not tried yet)"): [3, 3, 0, 0, 0],
            ("user_signed_up", "(not tried yet)"): [1, 1, 0, 0, 0],
        }
        oldest, ledger, up = totals(series)
        assert 3590 <= oldest <= 3700
        assert (ledger, up) == (4, 1)

    def test_values_are_read_at_each_scrape_whoever_wrote_the_rows(self, client: Client) -> None:
        series = scrape(client)
        assert streams(series) == {}
        assert totals(series) == (0, 0, 1)

        rows = [row() for _ in range(3)]
        assert streams(scrape(client)) == {("user_enriched", "(not tried yet)"): [3, 3, 0, 0, 0]}

        # Another connection (another process's transaction) marks one row dead.
        with other_session() as session:
            session.execute(
                "UPDATE django_app_outboxevent SET status = 'dead', sink = "
                f"'{SINK}' WHERE id = {rows[0].pk}",
                (),
            )
            session.raw.commit()
        assert streams(scrape(client)) == {
            ("user_enriched", SINK): [0, 0, 1, 0, 0],
            ("user_enriched", "(not tried yet)"): [2, 2, 0, 0, 0],
        }

    def test_another_process_scraping_the_same_database_reports_the_same(
        self, client: Client
    ) -> None:
        some_of_everything()
        env = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="tests.settings",
            PYTHONPATH=str(REPO),
            TEST_DATABASE=PASS_OF_VENDOR[connection.vendor],
            TEST_DATABASE_NAME=str(connection.settings_dict["NAME"]),
        )
        env.pop("TRACKING_TEST_ENDPOINT", None)
        if connection.vendor == "postgresql":
            env["TEST_PG_DRIVER"] = pg_driver()
        script = (
            "import django; django.setup()\n"
            "from prometheus_client import generate_latest\n"
            "from django_app.metrics import tracking_registry\n"
            "print(generate_latest(tracking_registry).decode())\n"
        )
        other = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        theirs, ours = parse(other.stdout), scrape(client)
        assert streams(theirs) == streams(ours)
        assert streams(ours)[("user_enriched", SINK)] == [2, 0, 1, 2, 3]
        assert totals(theirs)[1:] == totals(ours)[1:] == (4, 1)
        assert abs(totals(theirs)[0] - totals(ours)[0]) < 120

    def test_openmetrics_when_the_scraper_asks_and_get_only(self, client: Client) -> None:
        some_of_everything()
        response = client.get(
            METRICS_URL, HTTP_ACCEPT="application/openmetrics-text; version=1.0.0"
        )
        assert response["Content-Type"].startswith("application/openmetrics-text")
        text = response.content.decode()
        assert text.endswith("# EOF\n")
        assert_nothing_secret(text)
        series = parse(text, openmetrics=True)
        assert series["tracking_adapter_events_pending"][("user_enriched", SINK)] == 2
        assert "no-cache" in response["Cache-Control"]
        assert client.post(METRICS_URL).status_code == 405

    def test_registering_runs_no_query_and_a_failing_database_reports_up_0(
        self, django_assert_num_queries: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

        from django_app import metrics

        registry = CollectorRegistry(auto_describe=True)
        with django_assert_num_queries(0):
            collector = metrics.register(registry)
            assert metrics.register(registry) is collector  # once per registry
        dead_row()
        assert parse(generate_latest(registry).decode())["tracking_adapter_events_dead"] == {
            ("user_enriched", SINK): 1
        }

        # prometheus_client's default registry (django-prometheus, start_http_server).
        default = metrics.register()
        try:
            assert metrics.register() is default
            text = generate_latest(REGISTRY).decode()
            assert 'tracking_adapter_events_dead{event="user_enriched",sink=' in text
        finally:
            metrics.unregister()
        assert "tracking_adapter" not in generate_latest(REGISTRY).decode()

        # A database that cannot be read fails this collector's scrape, not the registry's.
        failing = CollectorRegistry()
        failing.register(metrics.TrackingCollector(using="no-such-database"))
        series = parse(generate_latest(failing).decode())
        assert series["tracking_adapter_up"] == {(): 0}
        assert series["tracking_adapter_events_pending"] == {}
        assert "cannot read the state of delivery" in caplog.text
