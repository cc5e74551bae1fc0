"""Secrets never leak (logs, reasons, reprs, errors); cleartext endpoints refused off loopback."""

from __future__ import annotations

import base64
import copy
import json
import logging
import traceback
from pathlib import Path

import pytest

from tracking_adapter import ConfigurationError, UserEnrichedEvent
from tracking_adapter.receiver import LoopbackReceiver, Scripted
from tracking_adapter.security import (
    REDACTED,
    RedactingFilter,
    check_endpoint,
    is_loopback_host,
    redact,
    redact_logger,
)
from tracking_adapter.sinks import SegmentSink, ThriveStackSink, create_sink

DATA = Path(__file__).resolve().parent / "data"
SAMPLE = json.loads((DATA / "spec_sample_1.json").read_text(encoding="utf-8"))
API_KEY = "ts-secret-api-key-5f1e9c"
WRITE_KEY = "seg-secret-write-key-7a2b"
BASIC = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
SECRETS = (API_KEY, WRITE_KEY, BASIC)


def make_events(count: int) -> list[UserEnrichedEvent]:
    events = []
    for number in range(count):
        data = copy.deepcopy(SAMPLE)
        data["user_id"] = f"user_{number}"
        events.append(UserEnrichedEvent.model_validate(data))
    return events


# -- redact ----------------------------------------------------------------------------


def test_redact_replaces_every_occurrence():
    assert redact("key=abcd1234 and again abcd1234", ["abcd1234"]) == (
        f"key={REDACTED} and again {REDACTED}"
    )


def test_redact_longest_secret_first():
    text = "token abcd1234efgh"
    assert redact(text, ["abcd1234", "abcd1234efgh"]) == f"token {REDACTED}"


def test_redact_ignores_empty_and_tiny_secrets():
    assert redact("a cat sat", ["", "a", "cat"]) == "a cat sat"
    assert redact("nothing here", []) == "nothing here"


# -- endpoints -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST", "127.0.0.1", "127.0.0.5", "::1", "[::1]", "app.localhost"],
)
def test_loopback_hosts(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    [None, "", "example.com", "10.0.0.1", "192.168.1.1", "localhost.evil.com", "127.0.0.1.nip.io"],
)
def test_non_loopback_hosts(host):
    assert not is_loopback_host(host)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.app.thrivestack.ai/api", "https://api.app.thrivestack.ai/api"),
        ("https://api.app.thrivestack.ai/api/", "https://api.app.thrivestack.ai/api"),
        ("http://localhost:8000/api/", "http://localhost:8000/api"),
        ("http://127.0.0.5:9/x", "http://127.0.0.5:9/x"),
        ("http://[::1]:8080/api/", "http://[::1]:8080/api"),
        ("https://10.0.0.1", "https://10.0.0.1"),
    ],
)
def test_check_endpoint_accepts(url, expected):
    assert check_endpoint(url, option="endpoint") == expected


@pytest.mark.parametrize(
    "url", ["http://api.app.thrivestack.ai/api", "http://10.0.0.1:80", "http://localhost.evil.com"]
)
def test_check_endpoint_refuses_http_off_loopback(url):
    with pytest.raises(ConfigurationError, match="endpoint") as caught:
        check_endpoint(url, option="endpoint")
    assert "https" in str(caught.value)
    assert check_endpoint(url, option="endpoint", allow_http=True) == url.rstrip("/")


@pytest.mark.parametrize(
    "url", ["https://user:hunter2pass@api.example.com/api", "http://token@localhost/api"]
)
def test_check_endpoint_refuses_credentials_in_the_url(url):
    with pytest.raises(ConfigurationError, match="credentials") as caught:
        check_endpoint(url, option="host")
    assert "hunter2pass" not in str(caught.value)
    assert "host" in str(caught.value)


@pytest.mark.parametrize("url", ["", None, "ftp://example.com", "api.example.com", "https://"])
def test_check_endpoint_refuses_non_urls(url):
    with pytest.raises(ConfigurationError, match="my_option"):
        check_endpoint(url, option="my_option")


def test_configuration_error_is_a_value_error():
    with pytest.raises(ValueError, match="endpoint"):
        check_endpoint("http://example.com", option="endpoint")


# -- the logging filter ----------------------------------------------------------------


def test_redacting_filter_rewrites_messages_and_args():
    log_filter = RedactingFilter()
    log_filter.secrets.add("s3cr3t-value")
    record = logging.LogRecord(
        "x", logging.DEBUG, __file__, 1, "body: %s", ("{'k': 's3cr3t-value'}",), None
    )
    assert log_filter.filter(record) is True
    assert "s3cr3t-value" not in record.getMessage()
    assert REDACTED in record.getMessage()


def test_redacting_filter_leaves_clean_records_alone():
    log_filter = RedactingFilter()
    log_filter.secrets.add("s3cr3t-value")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "count %d", (3,), None)
    log_filter.filter(record)
    assert record.args == (3,)
    assert record.getMessage() == "count 3"


def test_redact_logger_filters_a_named_logger(caplog):
    caplog.set_level(logging.DEBUG)
    redact_logger("tests.core.security.probe", ["probe-secret-123"])
    redact_logger("tests.core.security.probe", ["second-secret-456"])  # one filter, more secrets
    logger = logging.getLogger("tests.core.security.probe")
    assert sum(isinstance(f, RedactingFilter) for f in logger.filters) == 1
    logger.debug("first %s then %s", "probe-secret-123", "second-secret-456")
    (record,) = [r for r in caplog.records if r.name == "tests.core.security.probe"]
    assert record.getMessage() == f"first {REDACTED} then {REDACTED}"


# -- end to end: real sends, every log record and every text checked --------------------


def leaked(texts: list[str]) -> list[str]:
    return [text for text in texts if any(secret in text for secret in SECRETS)]


def record_texts(records: list[logging.LogRecord]) -> list[str]:
    texts = []
    for record in records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append("".join(traceback.format_exception(*record.exc_info)))
        if record.exc_text:
            texts.append(record.exc_text)
    return texts


@pytest.fixture
def debug_everything(caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("segment", "urllib3", "tracking_adapter", "requests"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def test_no_secret_reaches_logs_reasons_reprs_or_errors(debug_everything):
    caplog = debug_everything
    texts: list[str] = []
    # Real answers (200, a 400 for one event, and a 401 once the receiver wants another
    # key), then scripted answers that echo the secrets back in their bodies.
    with LoopbackReceiver(
        api_key=API_KEY,
        write_key=WRITE_KEY,
        reject=lambda item: (
            "poisoned"
            if item.get("user_id") == "user_1" or item.get("userId") == "user_1"
            else None
        ),
    ) as receiver:
        with ThriveStackSink(API_KEY, receiver.thrivestack_endpoint, timeout=5) as thrivestack:
            results = [
                thrivestack.send(make_events(4)),  # 400 for user_1, bisected
                _after(receiver, Scripted(401, {"message": f"bad key {API_KEY}"}), thrivestack),
                _after(
                    receiver,
                    Scripted(400, {"message": f"refused x-api-key: {API_KEY}"}),
                    thrivestack,
                    1,
                ),
                _after(
                    receiver, Scripted(429, {"error": API_KEY}, {"Retry-After": "1"}), thrivestack
                ),
                _after(
                    receiver, Scripted(500, f"trace: x-api-key={API_KEY}".encode()), thrivestack
                ),
            ]
            texts += [repr(thrivestack), str(thrivestack), thrivestack.describe()]
        receiver.api_key = "the-server-wants-another"
        with ThriveStackSink(API_KEY, receiver.thrivestack_endpoint, timeout=5) as refused:
            results.append(refused.send(make_events(2)))  # a real 401 from the receiver

        with SegmentSink(WRITE_KEY, receiver.url, timeout=5) as segment:
            results += [
                segment.send(make_events(4)),  # 400 for user_1, bisected
                _after(
                    receiver,
                    Scripted(
                        401, {"code": "unauthorized", "message": f"key {WRITE_KEY} / {BASIC}"}
                    ),
                    segment,
                ),
                _after(
                    receiver,
                    Scripted(400, {"code": "bad", "message": f"Basic {BASIC}"}),
                    segment,
                    1,
                ),
                _after(receiver, Scripted(500, f"writeKey={WRITE_KEY}".encode()), segment),
            ]
            texts += [repr(segment), str(segment), segment.describe()]
        with SegmentSink(WRITE_KEY, receiver.url, gzip=False, timeout=5) as plain:
            results.append(plain.send(make_events(2)))
        receiver.write_key = "the-collector-wants-another"
        with SegmentSink(WRITE_KEY, receiver.url, timeout=5) as refused_segment:
            results.append(refused_segment.send(make_events(2)))  # a real 401

    # Errors raised while configuring sinks with the secrets in hand.
    attempts = [
        lambda: ThriveStackSink(API_KEY, "http://api.example.com/api"),
        lambda: SegmentSink(WRITE_KEY, "ftp://collector"),
        lambda: SegmentSink(WRITE_KEY, f"https://{WRITE_KEY}@collector.example"),
        lambda: create_sink(
            "thrivestack", {"api_key": API_KEY, "endpoint": "https://x.io", "nope": 1}
        ),
        lambda: create_sink("segment", {"write_key": WRITE_KEY, "max_events": 0}),
        lambda: create_sink("thrivestack", {"api_key": API_KEY, "max_request_bytes": -1}),
    ]
    for attempt in attempts:
        with pytest.raises(ConfigurationError) as caught:
            attempt()
        texts += [
            str(caught.value),
            repr(caught.value),
            "".join(traceback.format_exception(caught.value)),
        ]

    # The sends produced what they should have, so the texts below are the real ones.
    statuses = {o.status.value for result in results for o in result.outcomes}
    assert statuses == {"delivered", "retry", "rejected"}
    assert any(o.config_error for result in results for o in result.outcomes)
    reasons = [o.reason for result in results for o in result.outcomes]
    assert any("poisoned" in reason for reason in reasons)
    assert any(REDACTED in reason for reason in reasons)  # echoed secrets were caught

    messages = record_texts(caplog.records)
    assert any(r.name.startswith("urllib3") for r in caplog.records)
    assert any(r.name.startswith("tracking_adapter") for r in caplog.records)

    # No secret survived anywhere.
    assert leaked(messages) == []
    assert leaked(reasons) == []
    assert leaked(texts) == []
    assert leaked(caplog.text.splitlines()) == []


def _after(receiver, answer, sink, count=2):
    receiver.script(answer)
    return sink.send(make_events(count))
