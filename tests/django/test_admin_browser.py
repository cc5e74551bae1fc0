"""The outbox admin as a person sees it: Debian's chromium, driven by Playwright.

Logs in, opens the outbox changelist and checks the summary's counts, the chart, the health
word and that the page fits a 1,400-pixel window; the screenshot is kept under the test's
temporary folder (``outbox.png``). Runs in the SQLite pass only (the pages are the same on
every database; tests/django/test_admin.py covers the figures on each). Without chromium
(``apt-get install chromium``; ``make test`` does it where it can) or Playwright (test group)
it skips, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import django.contrib.admin
import pytest
from django.test.utils import override_settings
from django.utils import timezone

from django_app.models import LedgerEntry, OutboxEvent, Status
from tests.conftest import DATABASE, IN_CI

CHROMIUM = os.environ.get("TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDTH, HEIGHT = 1400, 900
# The admin's own CSS and images, served by the live server (tests/settings.py has no
# staticfiles app; this is where django.contrib.admin keeps them).
ADMIN_STATIC = str(Path(django.contrib.admin.__file__).parent / "static")
CHANGELIST = "/admin/django_app/outboxevent/"

pytestmark = [
    pytest.mark.django_db(transaction=True),  # the live server's thread reads the rows
    pytest.mark.skipif(
        DATABASE != "sqlite", reason="the browser test runs in the SQLite pass only"
    ),
]


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install --group test; make test does it)"
    if not os.access(CHROMIUM, os.X_OK):
        return (
            f"no chromium at {CHROMIUM} (as root: apt-get install chromium; make test does it "
            "where it can; TEST_CHROMIUM= names another)"
        )
    return None


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Any:
    """pytest-django's ``live_server``, started with a STATIC_URL (Django's static handler
    for live servers reads it once, at the start, and fails on every request without it)."""
    reason = missing()
    if reason:
        if IN_CI:
            pytest.fail(reason + " (required under CI=true)")
        pytest.skip(reason)
    with override_settings(STATIC_URL="/static/"):
        return request.getfixturevalue("live_server")


@pytest.fixture
def static(settings: Any) -> None:
    settings.STATIC_URL = "/static/"
    settings.STATIC_ROOT = ADMIN_STATIC


def outbox_rows() -> OutboxEvent:
    """A dozen rows of every kind; returns the dead one."""
    now = timezone.now()

    def row(**fields: Any) -> OutboxEvent:
        user = f"auth0|{uuid.uuid4().hex}"
        values: dict[str, Any] = {
            "message_id": str(uuid.uuid4()),
            "user_id": user,
            "group_id": "acct_1",
            "payload": {"user_id": user, "properties": {"enrichment_city": "Pune"}},
            "sink": "thrivestack https://api.app.thrivestack.ai/api",
        }
        values.update(fields)
        return OutboxEvent.objects.create(**values)

    for minutes in (1, 2):
        row(
            status=Status.PENDING,
            next_attempt_at=now - timedelta(minutes=minutes),
            created_at=now - timedelta(minutes=40),
        )
    row(
        status=Status.PENDING,
        attempts=2,
        next_attempt_at=now + timedelta(minutes=5),
        last_error="503 from ThriveStack: Service Unavailable",
    )
    dead = row(
        status=Status.DEAD,
        attempts=8,
        last_error="gave up after 8 attempts: 400 from ThriveStack: "
        "properties.enrichment_city is not a string",
    )
    for hours_ago in (0, 0, 0, 2, 2, 5, 9, 20):
        row(
            status=Status.DELIVERED,
            attempts=1,
            delivered_at=now - timedelta(hours=hours_ago, minutes=1),
        )
    for n in range(2):
        LedgerEntry.objects.create(subject_id=f"user_{n}", content_hash="a" * 64, message_id="m")
    return dead


@pytest.mark.usefixtures("static")
def test_outbox_changelist_in_a_browser(
    server: Any, django_user_model: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    # The database first: Django refuses the ORM while Playwright's event loop runs.
    django_user_model.objects.create_superuser("ops", "ops@example.com", "a-password-1")
    dead = outbox_rows()
    host = urlsplit(server.url).netloc
    elsewhere: list[str] = []
    failed: list[str] = []
    screenshot, summary_shot = tmp_path / "outbox.png", tmp_path / "summary.png"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.set_default_timeout(10_000)
            page.on(
                "request",
                lambda r: None if urlsplit(r.url).netloc == host else elsewhere.append(r.url),
            )
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.on(
                "response",
                lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )

            page.goto(f"{server.url}/admin/login/?next={CHANGELIST}")
            page.fill("#id_username", "ops")
            page.fill("#id_password", "a-password-1")
            page.click("input[type=submit]")
            page.wait_for_url(f"**{CHANGELIST}")

            def figure(key: str) -> str:
                text: str = page.eval_on_selector(
                    f'[data-figure="{key}"]', "e => e.firstChild.textContent.trim()"
                )
                return text

            shown = {
                key: figure(key)
                for key in (
                    "pending",
                    "due",
                    "dead",
                    "delivered_last_hour",
                    "delivered_last_day",
                    "ledger_size",
                )
            }
            oldest, next_attempt = figure("oldest_pending"), figure("next_attempt")
            health = page.inner_text(".ta-health")
            chart = page.locator("#delivery-chart svg[role=img]")
            chart_visible = chart.is_visible()
            chart_box = chart.bounding_box()
            chart_label = chart.get_attribute("aria-label")
            hour_groups = chart.locator("g.hour").count()
            delivered_bars = chart.locator("rect.bar.delivered").count()
            dead_bars = chart.locator("rect.bar.dead").count()
            rows = page.locator("#result_list tbody tr").count()
            widths = page.evaluate(
                """() => {
                    const results = document.querySelector('#changelist .results');
                    return {
                        page: document.documentElement.scrollWidth,
                        results: results.scrollWidth,
                        resultsVisible: results.clientWidth,
                        styled: getComputedStyle(document.querySelector('#header'))
                            .backgroundColor,
                    };
                }"""
            )
            page.screenshot(path=str(screenshot), full_page=True)
            page.locator("#delivery-summary").screenshot(path=str(summary_shot))

            # The list shows the dead row's id shortened; its page shows every value whole.
            link = page.locator(f'#result_list a:has(span[title="{dead.message_id}"])')
            short_id = link.inner_text()
            link.click()
            page.wait_for_url("**/change/")
            full = {
                name: page.inner_text(f".field-{name} .readonly")
                for name in ("message_id", "user_id", "sink")
            }
        finally:
            browser.close()

    assert shown == {
        "pending": "3",
        "due": "2",
        "dead": "1",
        "delivered_last_hour": "3",
        "delivered_last_day": "8",
        "ledger_size": "2",
    }
    assert oldest == "40 min"
    assert next_attempt in ("in 4 min", "in 5 min")
    assert health.startswith("✗ Unhealthy")  # a word, not only a colour
    assert chart_visible
    assert chart_box is not None
    assert chart_box["width"] > 400
    assert chart_label == (
        "Delivery over the last 24 hours, per hour: 8 delivered, 1 retried, 1 dead."
    )
    assert hour_groups == 24
    assert (delivered_bars, dead_bars) == (5, 1)  # deliveries fell in 5 distinct hours
    assert rows == 12
    assert short_id == dead.message_id[:8] + "…"
    assert full == {"message_id": dead.message_id, "user_id": dead.user_id, "sink": dead.sink}
    assert widths["styled"] not in ("", "rgba(0, 0, 0, 0)")  # the admin's CSS was served
    assert widths["page"] <= WIDTH, widths  # no horizontal scroll in a 1,400-pixel window
    assert widths["results"] <= widths["resultsVisible"], widths
    assert elsewhere == []  # no CDN, nothing fetched from anywhere else
    assert failed == []
    assert screenshot.stat().st_size > 10_000
    assert summary_shot.stat().st_size > 5_000
