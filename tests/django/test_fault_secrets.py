"""Secrets and privacy under fire: keys never leak, endpoints are safe, excluded data stays home.

The faults of test_faults.py run again with real keys configured, a receiver that echoes
them back in its error bodies, and every logger at DEBUG; then every log record (message
and traceback), every outbox row (every column) and every admin page is searched for the
API key, the Segment write key and the Basic credentials made from it.

Already proven elsewhere: the sinks alone never leak (tests/core/test_security.py::
test_no_secret_reaches_logs_reasons_reprs_or_errors), the admin redacts a key stored in a
row (test_admin.py::test_no_secret_on_the_changelist and ..._change_page), ``manage.py
check`` reports an http endpoint off loopback as E006 and accepts it with ``allow_http``
(test_checks.py::test_http_endpoint_off_loopback, ..._fine_when_explicitly_allowed).
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import ssl
import subprocess
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.urls import reverse
from django.utils import timezone

from django_app import dispatch
from django_app.models import OutboxEvent, Status
from django_app.runtime import get_sink
from django_app.signals import user_enriched
from tests.django.helpers import make_profile, pending_rows, tracking
from tests.testapp.models import Profile
from tracking_adapter import ConfigurationError, UserEnrichedEvent
from tracking_adapter.receiver import LoopbackReceiver, Scripted
from tracking_adapter.sinks import SendResult, Sink, ThriveStackSink

pytestmark = pytest.mark.django_db(transaction=True)

API_KEY = "ts-live-4f0c2b7e9a1d"
WRITE_KEY = "seg-write-8e3a61c0d5"
BASIC = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
SECRETS = (API_KEY, WRITE_KEY, BASIC)


# -- finding leaks -------------------------------------------------------------------------


@pytest.fixture
def debug_everything(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("", "django", "django_app", "tracking_adapter", "segment", "urllib3", "requests"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def log_texts(records: Sequence[logging.LogRecord]) -> list[str]:
    texts = []
    for record in records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append("".join(traceback.format_exception(*record.exc_info)))
        if record.exc_text:
            texts.append(record.exc_text)
        if record.stack_info:
            texts.append(record.stack_info)
    return texts


def row_texts() -> list[str]:
    texts = []
    for row in OutboxEvent.objects.values():
        texts.append(json.dumps(row, default=str, ensure_ascii=False))
    return texts


def admin_texts(client: Any) -> list[str]:
    changelist = reverse("admin:django_app_outboxevent_changelist")
    pages = [client.get(changelist + query) for query in ("", "?status__exact=dead", "?q=u1")]
    pages += [
        client.get(reverse("admin:django_app_outboxevent_change", args=[pk]))
        for pk in OutboxEvent.objects.values_list("pk", flat=True)
    ]
    assert all(page.status_code == 200 for page in pages)
    return [page.content.decode() for page in pages]


def assert_no_secret(texts: list[str], where: str, secrets: Sequence[str]) -> None:
    leaks = [(secret, text[:300]) for text in texts for secret in secrets if secret in text]
    assert not leaks, f"secret in {where}: {leaks[:3]}"


def assert_nothing_leaked(
    caplog: pytest.LogCaptureFixture, admin_client: Any, secrets: Sequence[str]
) -> None:
    """None of the configured ``secrets`` in any log record, outbox row or admin page."""
    assert caplog.records, "nothing was logged: the check would prove nothing"
    assert_no_secret(log_texts(caplog.records), "a log record", secrets)
    assert_no_secret(row_texts(), "an outbox row", secrets)
    assert_no_secret(admin_texts(admin_client), "an admin page", secrets)


@pytest.fixture
def hostile() -> Iterator[LoopbackReceiver]:
    """A receiver holding the real keys, refusing one user with an error quoting the key
    (and, for Segment, the Basic credentials) that the request came with."""

    def reject(item: dict[str, Any]) -> str | None:
        if item.get("user_id") == "u1":
            return f"user u1 refused for x-api-key {API_KEY}"
        if item.get("userId") == "u1":
            return f"user u1 refused for write key {WRITE_KEY} (Basic {BASIC})"
        return None

    with LoopbackReceiver(api_key=API_KEY, write_key=WRITE_KEY, reject=reject) as server:
        yield server


def drain_after(*answers: Scripted, receiver: LoopbackReceiver) -> None:
    receiver.script(*answers)
    OutboxEvent.objects.filter(status=Status.PENDING).update(next_attempt_at=timezone.now())
    dispatch.drain()


# -- secrets through every fault -----------------------------------------------------------


def test_no_key_leaks_through_thrivestack_faults(
    settings: Any, hostile: LoopbackReceiver, debug_everything: Any, admin_client: Any
) -> None:
    settings.TRACKING_ADAPTER = tracking(
        SINK="thrivestack",
        SINK_OPTIONS={"api_key": API_KEY, "endpoint": hostile.thrivestack_endpoint, "timeout": 0.3},
    )
    make_profile(city="Pune")
    pending_rows(4)
    echo = f"x-api-key: {API_KEY}"
    drain_after(Scripted(500, {"message": f"upstream failed, {echo}"}), receiver=hostile)
    drain_after(
        Scripted(429, {"error": f"rate limited {echo}"}, {"Retry-After": "0"}), receiver=hostile
    )
    drain_after(Scripted(401, {"message": f"bad key {API_KEY}"}), receiver=hostile)
    drain_after(Scripted(403, f"forbidden {echo}".encode()), receiver=hostile)
    drain_after(Scripted(delay=0.8), receiver=hostile)  # read timeout
    drain_after(Scripted(reset=True), receiver=hostile)
    drain_after(receiver=hostile)  # real answers: the 400 quoting both keys for u1, bisected
    hostile.api_key = "rotated-on-the-server"
    pending_rows(2, prefix="late")
    drain_after(receiver=hostile)  # a real 401

    assert OutboxEvent.objects.get(user_id="u1").status == Status.DEAD
    assert "[redacted]" in OutboxEvent.objects.get(user_id="u1").last_error
    assert OutboxEvent.objects.filter(status=Status.DELIVERED).count() == 4
    assert (
        OutboxEvent.objects.filter(status=Status.PENDING, user_id__startswith="late").count() == 2
    )
    assert any(r.headers.get("x-api-key") == API_KEY for r in hostile.requests)  # it was in use
    assert_nothing_leaked(debug_everything, admin_client, [API_KEY])


def test_no_key_leaks_through_segment_faults(
    settings: Any, hostile: LoopbackReceiver, debug_everything: Any, admin_client: Any
) -> None:
    settings.TRACKING_ADAPTER = tracking(
        SINK="segment",
        SINK_OPTIONS={"write_key": WRITE_KEY, "host": hostile.url, "timeout": 0.3},
    )
    make_profile(city="Pune")
    pending_rows(4)
    drain_after(
        Scripted(500, f"writeKey={WRITE_KEY} auth=Basic {BASIC}".encode()), receiver=hostile
    )
    drain_after(Scripted(429, {"message": f"slow {BASIC}"}, {"Retry-After": "0"}), receiver=hostile)
    drain_after(Scripted(401, {"code": "unauthorized", "message": WRITE_KEY}), receiver=hostile)
    drain_after(Scripted(delay=0.8), receiver=hostile)
    drain_after(Scripted(reset=True), receiver=hostile)
    drain_after(receiver=hostile)  # real answers, the 400 for u1 quoting the keys
    hostile.write_key = "rotated-on-the-server"
    pending_rows(2, prefix="late")
    drain_after(receiver=hostile)  # a real 401

    assert OutboxEvent.objects.get(user_id="u1").status == Status.DEAD
    assert OutboxEvent.objects.filter(status=Status.DELIVERED).count() == 4
    assert any(r.headers.get("authorization") == f"Basic {BASIC}" for r in hostile.requests)
    assert "[redacted]" in OutboxEvent.objects.get(user_id="u1").last_error
    assert_nothing_leaked(debug_everything, admin_client, [WRITE_KEY, BASIC])


class NaiveSink(Sink):
    """A host app's own sink, written the quick way: the key in the query string, no
    exception handling. requests puts the URL, key included, in its error message."""

    def __init__(self, api_key: str, url: str) -> None:
        self.api_key = api_key
        self.url = url

    def send(self, events: Sequence[UserEnrichedEvent]) -> SendResult:
        requests.post(f"{self.url}?key={self.api_key}", json=[], timeout=0.5)
        raise AssertionError("unreachable: nothing listens there")

    def describe(self) -> str:
        return "NaiveSink"


def closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_no_key_leaks_when_a_custom_sink_raises_with_the_key_in_its_error(
    settings: Any, debug_everything: Any, admin_client: Any
) -> None:
    settings.TRACKING_ADAPTER = tracking(
        SINK="tests.django.test_fault_secrets.NaiveSink",
        SINK_OPTIONS={"api_key": API_KEY, "url": f"http://127.0.0.1:{closed_port()}/track"},
    )
    pending_rows(2)

    stats = dispatch.drain()

    assert stats.retried == 2
    row = OutboxEvent.objects.first()
    assert row is not None
    assert "ConnectionError" in row.last_error
    assert "[redacted]" in row.last_error  # the URL is kept, the key is not
    errors = [r for r in debug_everything.records if r.levelno >= logging.ERROR]
    assert any("NaiveSink raised" in r.getMessage() for r in errors)
    assert any("Traceback" in text for text in log_texts(errors))  # still debuggable
    assert_nothing_leaked(debug_everything, admin_client, [API_KEY])


# -- endpoints -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sink", "options"),
    [
        ("thrivestack", {"api_key": API_KEY, "endpoint": "http://api.example.com/api"}),
        ("segment", {"write_key": WRITE_KEY, "host": "http://collector.example.com"}),
    ],
)
def test_http_off_loopback_is_refused_by_the_worker_and_the_sink_unless_allowed(
    settings: Any, sink: str, options: dict[str, Any]
) -> None:
    settings.TRACKING_ADAPTER = tracking(SINK=sink, SINK_OPTIONS=options)
    pending_rows(1)
    with pytest.raises(SystemCheckError, match="E006") as refused:
        call_command("deliver_events", "--once", skip_checks=False)  # as manage.py runs it
    assert not any(secret in str(refused.value) for secret in SECRETS)
    with pytest.raises(ConfigurationError, match="allow_http"):
        get_sink()
    assert OutboxEvent.objects.get().status == Status.PENDING  # nothing sent in clear, kept

    settings.TRACKING_ADAPTER = tracking(SINK=sink, SINK_OPTIONS={**options, "allow_http": True})
    call_command("check")
    assert get_sink().describe().startswith(f"{sink} http://")


def test_tls_verification_is_on_by_default_and_takes_a_ca_bundle(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    settings.TRACKING_ADAPTER = tracking(SINK="thrivestack", SINK_OPTIONS={"api_key": API_KEY})
    sink = get_sink()
    assert isinstance(sink, ThriveStackSink)
    assert sink._session.verify is True
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/machine-ca.pem")  # as requests takes it
    settings.TRACKING_ADAPTER = tracking(SINK="thrivestack", SINK_OPTIONS={"api_key": API_KEY})
    assert get_sink()._session.verify == "/etc/machine-ca.pem"  # type: ignore[attr-defined]
    settings.TRACKING_ADAPTER = tracking(
        SINK="thrivestack", SINK_OPTIONS={"api_key": API_KEY, "verify": "/etc/company-ca.pem"}
    )
    assert get_sink()._session.verify == "/etc/company-ca.pem"  # type: ignore[attr-defined]


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[LoopbackReceiver, str, Path]]:
    """The loopback receiver behind TLS with a self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    receiver = LoopbackReceiver(api_key=API_KEY, write_key=WRITE_KEY)
    receiver._server.socket = context.wrap_socket(receiver._server.socket, server_side=True)
    with receiver:
        yield receiver, receiver.url.replace("http://", "https://"), cert


def test_a_certificate_nobody_vouches_for_is_refused_and_events_stay_pending(
    settings: Any, tls_receiver: tuple[LoopbackReceiver, str, Path]
) -> None:
    receiver, url, cert = tls_receiver
    for sink, options in (
        ("thrivestack", {"api_key": API_KEY, "endpoint": f"{url}/api"}),
        ("segment", {"write_key": WRITE_KEY, "host": url}),
    ):
        OutboxEvent.objects.all().delete()
        settings.TRACKING_ADAPTER = tracking(SINK=sink, SINK_OPTIONS=options)
        pending_rows(2)
        stats = dispatch.drain()
        assert (stats.delivered, stats.retried) == (0, 2), sink
        assert receiver.item_count == 0

    OutboxEvent.objects.all().delete()
    settings.TRACKING_ADAPTER = tracking(
        SINK="thrivestack",
        SINK_OPTIONS={"api_key": API_KEY, "endpoint": f"{url}/api", "verify": str(cert)},
    )
    pending_rows(2)
    assert dispatch.drain().delivered == 2  # trusted explicitly: delivered over TLS
    assert receiver.item_count == 2


# -- privacy: EXCLUDE_PROPERTIES ------------------------------------------------------------

PRIVATE = {"city": "Hidden Valley 4711", "phone": "+91 98450 00000"}


@pytest.fixture(params=["ledger", "snapshot"])
def excluding(request: pytest.FixtureRequest, settings: Any, receiver: LoopbackReceiver) -> Any:
    source = dict(settings.TRACKING_ADAPTER["SOURCE"])
    if request.param == "snapshot":
        source["USER_ID"] = "user_id"  # paths on fields only: the snapshot decides first
    settings.TRACKING_ADAPTER = tracking(
        SINK="thrivestack",
        SINK_OPTIONS={"api_key": "test-api-key", "endpoint": receiver.thrivestack_endpoint},
        SOURCE=source,
        EXCLUDE_PROPERTIES=["enrichment_city", "enrichment_phone", "internal_score"],
    )
    return receiver


def assert_private_data_nowhere(receiver: LoopbackReceiver) -> None:
    stored = " ".join(row_texts())
    sent = b" ".join(request.body for request in receiver.requests).decode()
    for value in (*PRIVATE.values(), "9845000000", "internal_score"):
        assert value not in stored, f"{value!r} kept in the outbox"
        assert value not in sent, f"{value!r} sent to the receiver"


def test_excluded_properties_never_reach_the_outbox_nor_the_receiver(
    excluding: LoopbackReceiver,
) -> None:
    profile = make_profile(country="India", **PRIVATE)
    profile.title = "CTO"
    profile.save()  # a change of a kept field: a second event, still without the private ones
    profile.city = "Another Secret Town"
    profile.save()  # a change of an excluded field only: nothing to record
    user_enriched.send(
        sender=None,
        user_id="u_9",
        group_id="acct_9",
        properties={"enrichment_city": PRIVATE["city"], "internal_score": 97, "plan": "pro"},
    )
    assert OutboxEvent.objects.count() == 3

    stats = dispatch.drain()

    assert stats.delivered == 3
    assert excluding.item_count == 3
    assert [item["properties"]["enrichment_employment_title"] for item in excluding.items[:2]] == [
        "",
        "CTO",
    ]
    assert_private_data_nowhere(excluding)
    assert "Another Secret Town" not in " ".join(row_texts())


def test_an_excluded_property_holding_bad_data_neither_leaks_nor_blocks_the_event(
    excluding: LoopbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    # The excluded values are wrong (a number where text belongs, a dict for phones): they
    # are dropped before anyone looks at them, so the event goes, and no error text quotes them.
    profile = make_profile(country="India")
    profile.city = 4711_000_000  # type: ignore[assignment]
    profile.phone = {"home": 9845000000}  # type: ignore[assignment]
    profile.save()
    user_enriched.send(
        sender=None,
        user_id="u_9",
        group_id="acct_9",
        properties={"enrichment_city": {"street": 4711_000_000}, "internal_score": {1, 2}},
    )

    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {Status.PENDING}
    assert dispatch.drain().delivered == 2
    texts = [*row_texts(), *log_texts(caplog.records)]
    assert not any("4711000000" in text or "9845000000" in text for text in texts)
    assert Profile.objects.get(pk=profile.pk).city == "4711000000"  # the host's data is its own


def test_a_key_that_cannot_be_sent_keeps_every_event_pending_never_dead(settings, receiver):
    from django.core.management.base import CommandError

    settings.TRACKING_ADAPTER = tracking(
        SINK="thrivestack",
        SINK_OPTIONS={"api_key": "test-api-key\n", "endpoint": receiver.thrivestack_endpoint},
    )
    pending_rows(5)
    for _ in range(3):  # as often as a worker would try
        with pytest.raises(CommandError, match="api_key"):
            call_command("deliver_events", "--once")
    assert set(OutboxEvent.objects.values_list("status", "attempts")) == {(Status.PENDING, 0)}
    assert receiver.request_count == 0
