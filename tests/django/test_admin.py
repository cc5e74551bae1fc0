"""The outbox admin: browsable, filterable, read-only, secrets redacted, retry and requeue."""

from __future__ import annotations

import copy
import itertools
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_app.models import LedgerEntry, OutboxEvent, Status
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
    html = changelist(admin_client)
    assert "400 from ThriveStack: " in html
    assert "x" * 100 not in html


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
