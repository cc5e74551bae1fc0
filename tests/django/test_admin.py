"""The outbox admin: browsable, filterable, read-only, secrets redacted, retry and requeue."""

from __future__ import annotations

import copy
import itertools
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings as django_settings
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_app import admin as outbox_admin
from django_app.chart import PLOT_HEIGHT, delivery_chart
from django_app.models import LedgerEntry, OutboxEvent, Status
from django_app.status import HourlyDelivery
from tracking_adapter.receiver import LoopbackReceiver

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:django_app_outboxevent_changelist"
SECRET = "sk-secret-123456"

_ids = itertools.count()


def row(**fields: Any) -> OutboxEvent:
    n = next(_ids)
    values: dict[str, Any] = {
        "message_id": f"msg-{n:04d}",
        "user_id": f"user_{n}",
        "group_id": "acct_1",
        "payload": {"user_id": f"user_{n}", "properties": {"enrichment_city": "Pune"}},
    }
    values.update(fields)
    return OutboxEvent.objects.create(**values)


def changelist(client: Client, query: str = "") -> str:
    response = client.get(reverse(CHANGELIST) + query)
    assert response.status_code == 200
    return response.content.decode()


def result_list(html: str) -> str:
    """The changelist's table of rows, without the summary above it."""
    start = html.index('id="result_list"')
    return html[start : html.index("</table>", start)]


def summary(html: str) -> str:
    start = html.index('id="delivery-summary"')
    return html[start : html.index("</section>", start)]


def figures(html: str) -> dict[str, str]:
    """The summary's figures by key (data-figure), their notes left out."""
    return dict(re.findall(r'<dd data-figure="(\w+)">([^<]*)', summary(html)))


def change_page(client: Client, event: OutboxEvent) -> str:
    response = client.get(reverse("admin:django_app_outboxevent_change", args=[event.pk]))
    assert response.status_code == 200
    return response.content.decode()


def run_action(client: Client, action: str, rows: list[OutboxEvent]) -> Any:
    response = client.post(
        reverse(CHANGELIST),
        {"action": action, ACTION_CHECKBOX_NAME: [r.pk for r in rows], "index": "0"},
    )
    assert response.status_code == 302, response.content[:500]
    return response


@pytest.fixture
def secret_sink(settings: Any, receiver: LoopbackReceiver) -> None:
    value = copy.deepcopy(django_settings.TRACKING_ADAPTER)
    value["SINK"] = "thrivestack"
    value["SINK_OPTIONS"] = {"api_key": SECRET, "endpoint": receiver.thrivestack_endpoint}
    settings.TRACKING_ADAPTER = value


# -- browsing -------------------------------------------------------------------------------


def test_changelist_lists_rows(admin_client: Client) -> None:
    rows = [row(), row(status=Status.DELIVERED), row(status=Status.DEAD)]
    html = changelist(admin_client)
    for event in rows:
        assert event.message_id in html


def test_changelist_with_no_rows(admin_client: Client) -> None:
    assert "0 outbox events" in changelist(admin_client)


def test_filter_by_status(admin_client: Client) -> None:
    dead = row(status=Status.DEAD, last_error="400: enrichment_city is too long")
    pending = row(status=Status.PENDING)
    delivered = row(status=Status.DELIVERED)
    html = changelist(admin_client, "?status__exact=dead")
    assert dead.message_id in html
    assert pending.message_id not in html
    assert delivered.message_id not in html


def test_filter_by_sink(admin_client: Client) -> None:
    memory = row(sink="memory")
    other = row(sink="thrivestack http://127.0.0.1:9/api")
    html = changelist(admin_client, "?sink=memory")
    assert memory.message_id in html
    assert other.message_id not in html


def test_search_by_user_id(admin_client: Client) -> None:
    wanted = row(user_id="user_5")
    similar = row(user_id="user_55")
    other = row(user_id="user_6")
    html = changelist(admin_client, "?q=user_5")
    assert wanted.message_id in html
    assert similar.message_id not in html  # exact match on user ids
    assert other.message_id not in html


def test_search_by_message_id(admin_client: Client) -> None:
    wanted, other = row(), row()
    html = changelist(admin_client, f"?q={wanted.message_id}")
    assert wanted.message_id in html
    assert other.message_id not in html


def test_changelist_shows_a_short_last_error(admin_client: Client) -> None:
    row(status=Status.DEAD, last_error="400 from ThriveStack: " + "x" * 200)
    rows = result_list(changelist(admin_client))
    assert "400 from ThriveStack: " in rows
    assert "x" * 100 not in rows  # the summary above shows more of it (status.ERROR_TEXT)


def test_change_page_shows_last_error_and_pretty_payload(admin_client: Client) -> None:
    event = row(
        status=Status.DEAD,
        last_error="400 from ThriveStack: properties.enrichment_city is not a string",
        payload={"user_id": "user_77", "properties": {"enrichment_city": "Pune"}},
    )
    html = change_page(admin_client, event)
    assert "properties.enrichment_city is not a string" in html
    assert "<pre>" in html
    assert "&quot;enrichment_city&quot;: &quot;Pune&quot;" in html  # indented JSON, escaped
    assert "\n  &quot;user_id&quot;: &quot;user_77&quot;" in html


def test_payload_html_is_escaped(admin_client: Client) -> None:
    event = row(payload={"properties": {"enrichment_city": "<script>alert(1)</script>"}})
    html = change_page(admin_client, event)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


def test_change_page_is_read_only(admin_client: Client) -> None:
    event = row()
    original_user = event.user_id
    html = change_page(admin_client, event)
    assert 'name="_save"' not in html
    response = admin_client.post(
        reverse("admin:django_app_outboxevent_change", args=[event.pk]),
        {"status": Status.DELIVERED, "user_id": "someone_else"},
    )
    assert response.status_code == 403
    event.refresh_from_db()
    assert (event.status, event.user_id) == (Status.PENDING, original_user)


def test_add_page_is_forbidden(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:django_app_outboxevent_add"))
    assert response.status_code == 403


def test_anonymous_user_is_sent_to_login(client: Client) -> None:
    row()
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 302
    assert "/login/" in response["Location"]


# -- secrets --------------------------------------------------------------------------------


@pytest.mark.usefixtures("secret_sink")
def test_no_secret_on_the_changelist(admin_client: Client) -> None:
    event = row(
        status=Status.DEAD,
        last_error=f"401 from ThriveStack: key {SECRET} is not valid",
    )
    html = changelist(admin_client)
    assert event.message_id in html
    assert SECRET not in html
    assert "[redacted]" in html


@pytest.mark.usefixtures("secret_sink")
def test_no_secret_on_the_change_page(admin_client: Client) -> None:
    event = row(
        status=Status.DEAD,
        last_error=f"401 from ThriveStack: key {SECRET} is not valid",
        payload={"user_id": "user_1", "context": {"debug": f"x-api-key: {SECRET}"}},
    )
    html = change_page(admin_client, event)
    assert SECRET not in html
    assert "401 from ThriveStack: key [redacted] is not valid" in html


@pytest.mark.usefixtures("secret_sink")
def test_no_secret_when_it_is_past_the_cut_of_the_short_error(admin_client: Client) -> None:
    row(status=Status.DEAD, last_error="e" * 70 + SECRET + " trailing text")
    html = changelist(admin_client)
    assert SECRET not in html
    assert SECRET[:8] not in html


# -- actions --------------------------------------------------------------------------------


def test_retry_now_makes_pending_rows_due(admin_client: Client) -> None:
    later = timezone.now() + timedelta(hours=3)
    pending = row(status=Status.PENDING, next_attempt_at=later, lease_expires_at=later)
    dead = row(status=Status.DEAD, next_attempt_at=later)
    untouched = row(status=Status.PENDING, next_attempt_at=later)
    run_action(admin_client, "retry_now", [pending, dead])
    now = timezone.now()
    pending.refresh_from_db()
    dead.refresh_from_db()
    untouched.refresh_from_db()
    assert pending.next_attempt_at <= now
    assert pending.lease_expires_at is None
    assert pending.status == Status.PENDING
    assert dead.next_attempt_at == later  # not pending: left alone
    assert dead.status == Status.DEAD
    assert untouched.next_attempt_at == later  # not selected


def test_retry_now_reports_how_many(admin_client: Client) -> None:
    later = timezone.now() + timedelta(hours=3)
    rows = [row(status=Status.PENDING, next_attempt_at=later) for _ in range(2)]
    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "retry_now", ACTION_CHECKBOX_NAME: [r.pk for r in rows], "index": "0"},
        follow=True,
    )
    assert "2 pending event(s) are due now." in response.content.decode()


def test_requeue_dead_turns_dead_rows_back_to_pending(admin_client: Client) -> None:
    later = timezone.now() + timedelta(hours=3)
    dead = row(status=Status.DEAD, attempts=8, next_attempt_at=later, last_error="gave up")
    invalid = row(message_id="invalid-1234", status=Status.DEAD, last_error="invalid data")
    delivered = row(status=Status.DELIVERED, attempts=1)
    response = admin_client.post(
        reverse(CHANGELIST),
        {
            "action": "requeue_dead",
            ACTION_CHECKBOX_NAME: [dead.pk, invalid.pk, delivered.pk],
            "index": "0",
        },
        follow=True,
    )
    text = response.content.decode()
    assert "1 dead event(s) requeued." in text
    assert "1 invalid-data record(s) were left dead" in text
    dead.refresh_from_db()
    invalid.refresh_from_db()
    delivered.refresh_from_db()
    assert dead.status == Status.PENDING
    assert dead.attempts == 0
    assert dead.next_attempt_at <= timezone.now()
    assert invalid.status == Status.DEAD
    assert delivered.status == Status.DELIVERED
    assert delivered.attempts == 1


def test_requeued_rows_are_claimed_by_the_next_delivery(admin_client: Client) -> None:
    from django_app import dispatch
    from tracking_adapter.sinks import MemorySink

    event = row(
        status=Status.DEAD,
        attempts=8,
        payload={
            "user_id": "user_1",
            "group_id": "acct_1",
            "properties": {"enrichment_city": "Pune"},
            "timestamp": "2024-01-02T03:04:05.000Z",
        },
    )
    run_action(admin_client, "requeue_dead", [event])
    store: list[Any] = []
    stats = dispatch.drain(sink=MemorySink(store))
    assert stats.delivered == 1
    assert [e.properties.enrichment_city for e in store] == ["Pune"]
    event.refresh_from_db()
    assert event.status == Status.DELIVERED


def staff_client(*codenames: str) -> Client:
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user(f"staff{next(_ids)}", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_app", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("action", ["retry_now", "requeue_dead"])
def test_staff_who_may_only_view_cannot_run_the_actions(action: str) -> None:
    client = staff_client("view_outboxevent")
    later = timezone.now() + timedelta(hours=3)
    pending = row(status=Status.PENDING, next_attempt_at=later)
    dead = row(status=Status.DEAD, attempts=8, next_attempt_at=later)

    html = changelist(client)
    assert 'value="retry_now"' not in html
    assert 'value="requeue_dead"' not in html
    client.post(
        reverse(CHANGELIST),
        {"action": action, ACTION_CHECKBOX_NAME: [pending.pk, dead.pk], "index": "0"},
    )
    pending.refresh_from_db()
    dead.refresh_from_db()
    assert pending.next_attempt_at == later
    assert (dead.status, dead.attempts) == (Status.DEAD, 8)


def test_staff_with_the_change_permission_can_run_the_actions_but_not_edit_rows() -> None:
    client = staff_client("view_outboxevent", "change_outboxevent")
    dead = row(status=Status.DEAD, attempts=8)
    assert 'value="requeue_dead"' in changelist(client)
    run_action(client, "requeue_dead", [dead])
    dead.refresh_from_db()
    assert (dead.status, dead.attempts) == (Status.PENDING, 0)
    assert 'name="_save"' not in change_page(client, dead)
    response = client.post(
        reverse("admin:django_app_outboxevent_change", args=[dead.pk]),
        {"status": Status.DELIVERED},
    )
    assert response.status_code == 403


def test_dead_rows_can_be_deleted_by_hand(admin_client: Client) -> None:
    # The stock delete action stays available for clearing dead rows by hand.
    event = row(status=Status.DEAD)
    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: [event.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not OutboxEvent.objects.filter(pk=event.pk).exists()


# -- ledger ---------------------------------------------------------------------------------


def test_ledger_changelist_loads(admin_client: Client) -> None:
    LedgerEntry.objects.create(subject_id="user_42", content_hash="a" * 64, message_id="m-42")
    response = admin_client.get(reverse("admin:django_app_ledgerentry_changelist"))
    assert response.status_code == 200
    assert "user_42" in response.content.decode()


def test_ledger_add_is_forbidden(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:django_app_ledgerentry_add"))
    assert response.status_code == 403


def test_ledger_is_searchable_by_user_id(admin_client: Client) -> None:
    def entry(subject_id: str, event: str = "user_enriched") -> LedgerEntry:
        n = next(_ids)
        return LedgerEntry.objects.create(
            event=event, subject_id=subject_id, content_hash="a" * 64, message_id=f"m-{n}"
        )

    wanted = entry("user_5")
    other_kind = entry("user_5", event="account_enriched")  # the same subject, another kind
    similar, other = entry("user_55"), entry("user_6")
    response = admin_client.get(reverse("admin:django_app_ledgerentry_changelist") + "?q=user_5")
    assert response.status_code == 200
    html = response.content.decode()
    rows = result_list(html)
    assert wanted.message_id in rows
    assert other_kind.message_id in rows
    assert similar.message_id not in rows  # exact match, as on the outbox
    assert other.message_id not in rows
    assert "2 results" in html
    # The search box says what it takes.
    assert "the user id for user_enriched, the account id for group_enriched" in html


# -- the summary ----------------------------------------------------------------------------


def test_changelist_opens_with_the_delivery_summary(admin_client: Client) -> None:
    now = timezone.now()
    row(
        status=Status.PENDING,
        next_attempt_at=now - timedelta(minutes=1),
        created_at=now - timedelta(hours=2, seconds=30),
    )
    row(status=Status.PENDING, next_attempt_at=now + timedelta(minutes=10), attempts=1)
    row(status=Status.DEAD, attempts=8, last_error="gave up after 8 attempts: 503 from ThriveStack")
    row(status=Status.DELIVERED, delivered_at=now - timedelta(minutes=10))
    row(status=Status.DELIVERED, delivered_at=now - timedelta(hours=5))
    for n in range(3):
        LedgerEntry.objects.create(
            subject_id=f"user_{n}", content_hash="a" * 64, message_id=f"l-{n}"
        )

    html = changelist(admin_client)
    shown = figures(html)
    assert {key: shown[key] for key in ("pending", "due", "dead", "ledger_size")} == {
        "pending": "2",
        "due": "1",
        "dead": "1",
        "ledger_size": "3",
    }
    assert (shown["delivered_last_hour"], shown["delivered_last_day"]) == ("1", "2")
    assert shown["oldest_pending"] == "2 h"
    assert shown["next_attempt"] in ("in 9 min", "in 10 min")
    text = summary(html)
    assert 'data-health="unhealthy"' in text
    assert "<strong>Unhealthy</strong>: 1 dead event(s)." in text
    assert "gave up after 8 attempts: 503 from ThriveStack" in text  # the last errors
    assert "Retries ran out: once the cause is fixed, requeue them" in text  # with advice
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in text
    assert html.index('id="delivery-summary"') < html.index('id="result_list"')


def test_summary_of_an_empty_outbox_is_healthy(admin_client: Client) -> None:
    html = changelist(admin_client)
    shown = figures(html)
    assert shown["pending"] == shown["dead"] == shown["delivered_last_day"] == "0"
    assert shown["oldest_pending"] == shown["next_attempt"] == "\u2013"
    text = summary(html)
    assert 'data-health="healthy"' in text
    assert "<strong>Healthy</strong>" in text
    assert "Nothing delivered, retried or dead in these hours" in text


def test_summary_is_unhealthy_while_pending_events_fail(admin_client: Client) -> None:
    row(status=Status.PENDING, attempts=2, last_error="timed out after 10 s")
    text = summary(changelist(admin_client))
    assert "<strong>Unhealthy</strong>: pending events are failing" in text
    assert "The collector is slow or unreachable" in text


@pytest.mark.usefixtures("secret_sink")
def test_no_secret_in_the_summary(admin_client: Client) -> None:
    row(status=Status.PENDING, attempts=1, last_error=f"401 from ThriveStack: key {SECRET} refused")
    text = summary(changelist(admin_client))
    assert SECRET not in text
    assert "401 from ThriveStack: key [redacted] refused" in text
    assert "The collector refused the key" in text


def test_error_text_in_the_summary_is_escaped(admin_client: Client) -> None:
    row(status=Status.DEAD, last_error="500 from collector: <script>alert(1)</script>")
    text = summary(changelist(admin_client))
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_summary_is_read_only_for_the_page_that_shows_it(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = outbox_admin.delivery_status

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(outbox_admin, "delivery_status", counted)
    event = row(status=Status.PENDING)
    run_action(admin_client, "retry_now", [event])  # a redirect: no summary
    confirm = admin_client.post(
        reverse(CHANGELIST),
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: [event.pk], "index": "0"},
    )
    assert confirm.status_code == 200  # "Are you sure?": no summary either
    assert 'id="delivery-summary"' not in confirm.content.decode()
    assert calls == []
    changelist(admin_client)
    assert calls == [1]


def test_view_only_staff_see_the_summary() -> None:
    row(status=Status.DEAD)
    assert figures(changelist(staff_client("view_outboxevent")))["dead"] == "1"


# -- short ids and sink names in the list, full values on the change page -------------------

UUID = "3f1c2a9e-7b4d-5e6f-8a9b-0c1d2e3f4a5b"
LONG_USER = "auth0|6412abcdef0123456789"
LONG_SINK = "thrivestack https://collector.example.com/api/v1/track?source=admin"


def test_rows_show_short_ids_and_sink_names_with_the_full_value_on_hover(
    admin_client: Client,
) -> None:
    event = row(message_id=UUID, user_id=LONG_USER, sink=LONG_SINK)
    rows = result_list(changelist(admin_client))
    assert f'<span title="{UUID}">3f1c2a9e\u2026</span>' in rows
    assert f'<span title="{LONG_USER}">auth0|64\u2026</span>' in rows
    # The host may wrap after :// and its dots in a narrow column.
    wrapped = "thrivestack https://<wbr>collector.<wbr>example.<wbr>com"
    assert f'<span title="{LONG_SINK}">{wrapped}</span>' in rows
    assert f">{UUID}<" not in rows
    assert "/api/v1/track" not in rows.replace(f'title="{LONG_SINK}"', "")
    page = change_page(admin_client, event)
    for value in (UUID, LONG_USER, LONG_SINK):
        assert f'<div class="readonly">{value}</div>' in page


def test_short_values_are_left_whole(admin_client: Client) -> None:
    row(message_id="msg-abc", user_id="user_1", sink="memory")
    rows = result_list(changelist(admin_client))
    assert ">msg-abc</a>" in rows
    assert '<td class="field-short_user_id">user_1</td>' in rows
    assert '<td class="field-short_sink">memory</td>' in rows


def test_rows_show_the_next_try_of_pending_rows_and_their_age(admin_client: Client) -> None:
    now = timezone.now()
    row(status=Status.PENDING, next_attempt_at=now + timedelta(minutes=30, seconds=30))
    row(status=Status.PENDING, next_attempt_at=now - timedelta(seconds=5))
    row(status=Status.DELIVERED, created_at=now - timedelta(days=2, hours=3, minutes=1))
    lease = now + timedelta(minutes=2)
    row(status=Status.PENDING, next_attempt_at=lease, lease_expires_at=lease)  # being sent
    rows = result_list(changelist(admin_client))
    next_tries = re.findall(r'<td class="field-next_try">(?:<span[^>]*>)?([^<]*)', rows)
    assert next_tries == ["sending", "\u2013", "due", "in 30 min"]  # newest row first
    assert ">2 d 3 h</span>" in rows


@pytest.mark.parametrize(
    ("sink", "short"),
    [
        ("memory", "memory"),
        ("", ""),
        ("console", "console"),
        ("thrivestack http://127.0.0.1:9/api", "thrivestack http://127.0.0.1:9"),
        ("segment https://user:pw@api.segment.io/v1/batch", "segment https://api.segment.io"),
        ("file /var/log/tracking/events.jsonl", "file \u2026/events.jsonl"),
        (
            "thrivestack https://" + "a-very-long-collector-host-name." * 2 + "example.com/track",
            "thrivestack https://a-very-long-collector-host-name.a-very-l\u2026",
        ),
    ],
)
def test_shorten_sink(sink: str, short: str) -> None:
    assert outbox_admin.shorten_sink(sink) == short


def test_sink_filter_shows_short_names_and_filters_on_the_full_one(admin_client: Client) -> None:
    wanted, other = row(sink=LONG_SINK), row(sink="memory")
    query = "?" + urlencode({"sink": LONG_SINK})
    html = changelist(admin_client)
    assert f'<a href="{query}">thrivestack https://collector.example.com</a>' in html
    rows = result_list(changelist(admin_client, query))
    assert wanted.message_id in rows
    assert other.message_id not in rows


# -- the chart ------------------------------------------------------------------------------

SVG = "{http://www.w3.org/2000/svg}"
START = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)


def hours(**counts: tuple[int, int, int]) -> list[HourlyDelivery]:
    """24 hours; ``h3=(delivered, retried, dead)`` sets hour 3's counts."""
    result = [HourlyDelivery(START + timedelta(hours=h)) for h in range(24)]
    for key, (delivered, retried, dead) in counts.items():
        hour = result[int(key[1:])]
        hour.delivered, hour.retried, hour.dead = delivered, retried, dead
    return result


def bars(svg: ET.Element, kind: str) -> dict[int, float]:
    """Hour index -> height of its ``kind`` bar."""
    found = {}
    for index, group in enumerate(hour_groups(svg)):
        for rect in group.iter(f"{SVG}rect"):
            if rect.get("class") == f"bar {kind}":
                found[index] = float(rect.get("height", "0"))
    return found


def parsed(markup: str) -> ET.Element:
    return ET.fromstring(markup)  # well-formed XML, or this raises


def hour_groups(svg: ET.Element) -> list[ET.Element]:
    return [g for g in svg.iter(f"{SVG}g") if g.get("class") == "hour"]


def test_chart_is_accessible_inline_svg_with_24_hours() -> None:
    svg = parsed(delivery_chart(hours(h0=(3, 1, 0), h23=(7, 0, 2))))
    assert svg.get("role") == "img"
    assert svg.get("aria-label") == (
        "Delivery over the last 24 hours, per hour: 10 delivered, 1 retried, 2 dead."
    )
    assert len(hour_groups(svg)) == 24
    for group in hour_groups(svg):  # hover text for every hour, bars or not
        title = group.find(f"{SVG}title")
        assert title is not None
        assert re.fullmatch(
            r"\d\d:00\u2013\d\d:00 UTC: \d+ delivered, \d+ retried, \d+ dead", title.text or ""
        )
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    for word in ("delivered", "retried", "dead"):  # the legend
        assert word in texts
    assert "hour starting (UTC)" in texts  # axis labels
    assert "events per hour" in texts
    assert START.strftime("%H:%M") in texts
    last = hour_groups(svg)[23]
    dead_bar = next(r for r in last.iter(f"{SVG}rect") if r.get("class") == "bar dead")
    assert dead_bar.get("data-count") == "2"
    title = dead_bar.find(f"{SVG}title")
    assert title is not None
    assert (title.text or "").endswith(": 2 dead")


def test_chart_bar_heights_follow_the_counts() -> None:
    svg = parsed(delivery_chart(hours(h0=(10, 0, 0), h1=(5, 2, 0), h5=(0, 0, 1))))
    delivered = bars(svg, "delivered")
    assert delivered == {0: PLOT_HEIGHT, 1: PLOT_HEIGHT / 2}  # the scale tops at 10
    assert bars(svg, "retried") == {1: PLOT_HEIGHT / 5}
    assert bars(svg, "dead") == {5: PLOT_HEIGHT / 10}
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "y-label"]
    assert labels == ["0", "5", "10"]


def test_chart_keeps_small_counts_visible() -> None:
    svg = parsed(delivery_chart(hours(h0=(10_000, 0, 1))))
    assert 0 < bars(svg, "dead")[0] < 2
    assert bars(svg, "delivered")[0] == PLOT_HEIGHT


def test_chart_of_nothing_is_empty_and_does_not_divide_by_zero() -> None:
    svg = parsed(delivery_chart(hours()))
    assert len(hour_groups(svg)) == 24
    assert not [r for r in svg.iter(f"{SVG}rect") if (r.get("class") or "").startswith("bar")]
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "Nothing delivered, retried or dead in these hours" in texts
    assert [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "y-label"] == ["0"]
    assert parsed(delivery_chart([])).get("role") == "img"  # not even hours


def test_chart_has_no_script_and_fetches_nothing() -> None:
    markup = str(delivery_chart(hours(h2=(1, 1, 1))))
    assert "<script" not in markup
    assert "href" not in markup
    assert "http://" not in markup.replace('xmlns="http://www.w3.org/2000/svg"', "")
