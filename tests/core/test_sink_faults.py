"""Both HTTP sinks against the faults production meets, on real loopback servers.

What counts as delivered, redirects, request-level 400s, decimal size limits, the overall
request deadline, redaction before truncation, keys that cannot go in a header, absurd
Retry-After headers, the keep-alive callback, and answers no well-behaved server gives.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.core.raw_http import answer_with, raw_server, read_request, trickle
from tracking_adapter import ConfigurationError, UserEnrichedEvent
from tracking_adapter.receiver import LoopbackReceiver, ReceivedRequest, Scripted
from tracking_adapter.security import header_value_problem
from tracking_adapter.sinks import SegmentSink, Status, ThriveStackSink
from tracking_adapter.sinks._http import Answer
from tracking_adapter.sinks.base import keeping_alive
from tracking_adapter.sinks.segment import segment_delivered
from tracking_adapter.sinks.thrivestack import thrivestack_delivered

DATA = Path(__file__).resolve().parent / "data"
SAMPLE = json.loads((DATA / "spec_sample_1.json").read_text(encoding="utf-8"))
API_KEY = "ts-live-fault-0123456789abcdef"
WRITE_KEY = "seg-wk-fault-0123456789abcdef"
BASIC = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
KINDS = ["thrivestack", "segment"]


def make_events(count: int, *, start: int = 0, **extra_properties) -> list[UserEnrichedEvent]:
    events = []
    for number in range(start, start + count):
        data = copy.deepcopy(SAMPLE)
        data["user_id"] = f"user_{number}"
        data["properties"].update(extra_properties)
        events.append(UserEnrichedEvent.model_validate(data))
    return events


def make_sink(kind: str, url: str, **options):
    options.setdefault("timeout", 5)
    if kind == "thrivestack":
        return ThriveStackSink(options.pop("key", API_KEY), f"{url}/api", **options)
    return SegmentSink(options.pop("key", WRITE_KEY), url, **options)


def secrets_of(kind: str) -> list[str]:
    return [API_KEY] if kind == "thrivestack" else [WRITE_KEY, BASIC]


def setting_of(kind: str) -> str:
    return "endpoint" if kind == "thrivestack" else "host"


def decoded(request: ReceivedRequest) -> bytes:
    if request.headers.get("content-encoding") == "gzip":
        return gzip.decompress(request.body)
    return request.body


class ConnectionCountingReceiver(LoopbackReceiver):
    """Notes the server thread (one per TCP connection) that handled each request."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.connections: list[str] = []

    def handle(self, path, headers, raw):
        self.connections.append(threading.current_thread().name)
        return super().handle(path, headers, raw)


@pytest.fixture(scope="module")
def _running():
    with ConnectionCountingReceiver(api_key=API_KEY, write_key=WRITE_KEY) as running:
        yield running


def _reset(receiver):
    receiver.reject = receiver.always = receiver.refuse_gzip = None
    receiver.connections.clear()
    receiver.clear()


@pytest.fixture
def receiver(_running):
    _reset(_running)
    yield _running
    _reset(_running)


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


@pytest.fixture
def sink(kind, receiver):
    with make_sink(kind, receiver.url) as made:
        yield made


def assert_config_error_for_all(result, *words: str) -> None:
    for outcome in result.outcomes:
        assert outcome.status is Status.RETRY
        assert outcome.config_error is True
        assert outcome.delay == 300.0
        for word in words:
            assert word in outcome.reason
    assert result.rejected == 0


# -- 4: a 2xx is delivery only when the answer says so ---------------------------------

HTML_PAGE = b"<!doctype html><html><body><h1>Sign in to the guest Wi-Fi</h1></body></html>"


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (HTML_PAGE, {"Content-Type": "text/html"}),
        (HTML_PAGE, {}),  # an HTML page labelled as JSON
        ({"success": False}, {}),
        ({"success": False, "message": "quota exhausted"}, {}),
        ({"success": "false"}, {}),
        (b"[]", {}),
        (b"Service Unavailable", {"Content-Type": "text/plain"}),
    ],
    ids=[
        "html",
        "html-as-json",
        "success-false",
        "success-false-message",
        "success-string",
        "json-array",
        "text",
    ],
)
def test_a_2xx_that_does_not_say_delivered_keeps_the_events_pending(
    kind, receiver, sink, body, headers
):
    receiver.script(Scripted(200, body, headers))
    result = sink.send(make_events(30))
    assert_config_error_for_all(result, setting_of(kind), "HTTP 200")
    assert "nothing says the events were taken" in result.outcomes[0].reason
    assert result.requests == 1  # the rest were not sent into the same answer
    if body == {"success": False, "message": "quota exhausted"}:
        assert "quota exhausted" in result.outcomes[0].reason


@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [(200, b"", {}), (204, b"", {}), (200, b"OK", {"Content-Type": "text/plain"}), (200, {}, {})],
    ids=["empty-200", "204", "text-ok", "empty-object"],
)
def test_thrivestack_needs_success_true_where_segment_takes_these(receiver, status, body, headers):
    receiver.script(Scripted(status, body, headers))
    with make_sink("thrivestack", receiver.url) as thrivestack:
        refused = thrivestack.send(make_events(2))
    assert_config_error_for_all(refused, "endpoint")
    receiver.script(Scripted(status, body, headers))
    with make_sink("segment", receiver.url) as segment:
        assert segment.send(make_events(2)).all_delivered


def test_the_real_answers_are_delivery(kind, receiver, sink):
    # The receiver answers what the services do: {"success": true, "eventId": ...} on
    # /track, {"success": true} on /v1/batch.
    assert sink.send(make_events(3)).all_delivered


def answer(body: bytes, content_type: str = "application/json", complete: bool = True):
    headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
    return Answer(200, headers, body, complete)


def test_an_empty_segment_answer_counts_only_when_declared_empty():
    assert segment_delivered(Answer(204, {}, b"", True)) is None
    assert segment_delivered(Answer(200, {"Content-Length": "0"}, b"", True)) is None
    assert segment_delivered(Answer(200, {}, b"", True)) is not None  # cut short, maybe


@pytest.mark.parametrize(
    ("body", "taken"),
    [
        (b'{"success": true, "eventId": "evt_1"}', True),
        (b'{"success":true}', True),
        (b'{"success": false}', False),
        (b'{"success": 1}', False),
        (b"{}", False),
        (b"", False),
        (b"OK", False),
        (b"true", False),
        (b"<html></html>", False),
        (b"\xff\xfe", False),
    ],
)
def test_what_thrivestack_answers_count_as_delivery(body, taken):
    assert (thrivestack_delivered(answer(body)) is None) is taken


@pytest.mark.parametrize(
    ("body", "taken"),
    [
        (b'{"success": true}', True),
        (b"{}", True),
        (b'{"ok": true}', True),
        (b"", True),
        (b"  \r\n", True),
        (b"OK", True),
        (b"ok\n", True),
        (b'{"success": false}', False),
        (b'{"success": null}', False),
        (b'{"error": "invalid write key"}', False),
        (b'{"errors": ["bad"]}', False),
        (b'"OK"', False),
        (b"[]", False),
        (b"accepted", False),
        (b"<html><body>portal</body></html>", False),
        (b"\xff\xfe", False),
    ],
)
def test_what_segment_compatible_answers_count_as_delivery(body, taken):
    assert (segment_delivered(answer(body)) is None) is taken


def test_an_endless_2xx_body_is_not_delivery(kind, receiver, sink):
    receiver.script(Scripted(200, b'{"success": true, "pad": "' + b"x" * 200_000 + b'"}'))
    result = sink.send(make_events(2))
    assert_config_error_for_all(result)
    assert sink.send(make_events(2)).all_delivered  # the half-read connection was not reused


# -- 5: redirects are never followed ---------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed(kind, receiver, status):
    with LoopbackReceiver(api_key=API_KEY, write_key=WRITE_KEY) as elsewhere:
        target = (
            f"{elsewhere.url}/api/track" if kind == "thrivestack" else f"{elsewhere.url}/v1/batch"
        )
        receiver.script(Scripted(status, b"", {"Location": target}))
        with make_sink(kind, receiver.url) as sink:
            result = sink.send(make_events(3))
        assert elsewhere.request_count == 0  # neither the events nor the key went there
    assert receiver.request_count == 1
    assert_config_error_for_all(result, f"HTTP {status}", target, setting_of(kind))
    assert "never followed" in result.outcomes[0].reason


def test_a_redirect_location_is_redacted_and_cut(kind, receiver, sink):
    location = f"https://other.example/collect?key={secrets_of(kind)[0]}&pad=" + "p" * 5000
    receiver.script(Scripted(307, b"", {"Location": location}))
    result = sink.send(make_events(1))
    reason = result.outcomes[0].reason
    assert "other.example" in reason
    assert "[redacted]" in reason
    assert not any(secret in reason for secret in secrets_of(kind))
    assert len(reason) < 1000


# -- 6: a 400 for the request itself is a configuration error --------------------------


def test_a_collector_that_cannot_read_gzip_is_a_config_error_at_once(receiver):
    receiver.refuse_gzip = "invalid character '\\x1f' looking for beginning of value"
    with make_sink("segment", receiver.url) as sink:
        result = sink.send(make_events(1000))
    assert receiver.request_count == 1  # not 1,999
    assert_config_error_for_all(result, "gzip option", "False")
    # Without gzip the same collector takes everything.
    receiver.clear()
    with make_sink("segment", receiver.url, gzip=False) as plain:
        assert plain.send(make_events(1000)).all_delivered


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"success": False, "message": "invalid JSON"}, {}),
        ({"code": "invalid_request", "message": "could not decode the request body"}, {}),
        ({"message": "Unexpected token \u001f in JSON at position 0"}, {}),
        ({"message": "Expecting value: line 1 column 1 (char 0)"}, {}),
        (
            b"<html><head><title>400 Bad Request</title></head></html>",
            {"Content-Type": "text/html"},
        ),
    ],
    ids=["invalid-json", "cannot-decode", "node", "python", "nginx-html"],
)
def test_a_400_saying_the_request_is_unreadable_is_a_config_error_at_once(
    kind, receiver, body, headers
):
    receiver.always = Scripted(400, body, headers)
    with make_sink(kind, receiver.url) as sink:
        result = sink.send(make_events(1000))
    assert receiver.request_count == 1
    assert_config_error_for_all(result, "refused the request itself")


def test_a_collector_refusing_every_request_stops_after_a_few_requests(kind, receiver):
    receiver.always = Scripted(400, {"code": "invalid_request", "message": "Bad Request"})
    with make_sink(kind, receiver.url) as sink:
        result = sink.send(make_events(1000))
    # ThriveStack: 1000 -> 500 -> ... -> 1 is 10 requests, then three more lone events and
    # the pairs between them: 16. Segment's first batch holds 404 of these events (475,000
    # bytes): 14. The old bisection sent 1,999 and dead-lettered all 1,000.
    expected = {"thrivestack": 16, "segment": 14}[kind]
    assert receiver.request_count == expected
    assert result.requests == expected
    assert_config_error_for_all(result, "refuses the requests themselves", setting_of(kind))


def test_one_bad_event_first_in_a_batch_of_1000_is_still_found(kind, receiver, sink):
    field = "user_id" if kind == "thrivestack" else "userId"
    receiver.reject = lambda item: "bad" if item.get(field) == "user_0" else None
    result = sink.send(make_events(1000))
    assert result.outcomes[0].status is Status.REJECTED
    assert result.delivered == 999
    assert receiver.item_count == 999


def test_four_bad_events_first_with_their_own_messages_are_rejected(kind, receiver, sink):
    field = "user_id" if kind == "thrivestack" else "userId"
    bad = {f"user_{n}" for n in range(4)}
    receiver.reject = lambda item: f"{item[field]} is bad" if item.get(field) in bad else None
    result = sink.send(make_events(100))
    assert [o.status for o in result.outcomes[:4]] == [Status.REJECTED] * 4
    assert result.delivered == 96


def test_four_bad_events_first_with_one_generic_message_stay_pending(kind, receiver, sink):
    # The documented trade-off: indistinguishable from a collector refusing every request,
    # so kept pending as a configuration error, never dead-lettered for it.
    field = "user_id" if kind == "thrivestack" else "userId"
    bad = {f"user_{n}" for n in range(4)}
    receiver.reject = lambda item: "invalid" if item.get(field) in bad else None
    # The receiver prefixes the event's index in the request; a lone event is always index
    # 0, so every lone refusal reads the same.
    result = sink.send(make_events(100))
    assert result.rejected == 0
    assert result.delivered == 0
    assert all(o.config_error for o in result.outcomes)


# -- 7: size limits in decimal units ---------------------------------------------------


def test_no_thrivestack_request_is_over_2_000_000_bytes(receiver):
    # 20 events of ~100,300 bytes fit in 2,097,152 but not in 2,000,000.
    events = make_events(60, blob="x" * 100_000)
    with make_sink("thrivestack", receiver.url) as sink:
        result = sink.send(events)
    assert result.all_delivered
    assert max(len(r.body) for r in receiver.requests) <= 2_000_000
    assert result.requests == 4


def test_no_segment_batch_is_over_its_limit_nor_an_event_over_32_000_bytes(receiver):
    base = len(json.dumps(make_events(1, blob="")[0].to_segment()).encode())
    events = make_events(60, blob="y" * (31_999 - base))  # just under 32,000 each
    events[7] = make_events(1, start=7, blob="z" * (32_500 - base))[0]  # under 32,768
    with make_sink("segment", receiver.url) as sink:
        result = sink.send(events)
    assert result.outcomes[7].status is Status.REJECTED
    assert "32,000" in result.outcomes[7].reason
    assert result.delivered == 59
    bodies = [decoded(r) for r in receiver.requests]
    assert max(len(body) for body in bodies) <= 475_000
    for batch in (json.loads(body)["batch"] for body in bodies):
        assert max(len(json.dumps(m).encode()) for m in batch) <= 32_000
    with make_sink("segment", receiver.url, max_request_bytes=500_000) as sink:
        receiver.clear()
        assert sink.send(make_events(60, blob="y" * (31_999 - base))).all_delivered
        assert max(len(decoded(r)) for r in receiver.requests) <= 500_000


# -- 9: every request has an overall deadline -------------------------------------------


@pytest.mark.parametrize("body_only", [False, True], ids=["status-line", "body"])
def test_a_trickling_answer_is_cut_off_at_the_deadline(kind, receiver, body_only):
    # One byte every 0.4 s: the 5 s per-read timeout never fires.
    receiver.script(
        Scripted(200, {"success": True, "pad": "x" * 50}, trickle=0.4, trickle_body_only=body_only)
    )
    with make_sink(kind, receiver.url, timeout=5, deadline=1.0) as sink:
        started = time.monotonic()
        result = sink.send(make_events(3))
        elapsed = time.monotonic() - started
        assert elapsed < 1.0 + 0.75
        assert [o.status for o in result.outcomes] == [Status.RETRY] * 3
        assert not any(o.config_error for o in result.outcomes)
        reason = result.outcomes[0].reason
        assert "deadline" in reason
        assert "did not finish within" in reason
        # The connection the watchdog shut is not handed to the next request.
        again = sink.send(make_events(3))
    assert again.all_delivered
    assert again.requests == 1


def test_an_answer_cut_off_in_its_headers_is_a_deadline_not_an_empty_answer(kind, receiver):
    # The status line arrives in 0.51 s, then the deadline cuts the Date header: http.client
    # reads the end of the stream as the end of the headers, a "complete" 200 with no body.
    receiver.script(Scripted(200, {"success": True}, trickle=0.03))
    with make_sink(kind, receiver.url, timeout=5, deadline=0.7) as sink:
        result = sink.send(make_events(2))
    assert [o.status for o in result.outcomes] == [Status.RETRY] * 2
    assert not any(o.config_error for o in result.outcomes)
    assert "deadline" in result.outcomes[0].reason


def test_a_trickled_tls_handshake_is_cut_off_at_the_deadline(kind):
    def slow_tls(conn: socket.socket) -> None:
        conn.recv(65536)  # the ClientHello
        conn.sendall(b"\x16\x03\x03\x40\x00")  # a handshake record of 16 KB is coming...
        for _ in range(40):
            conn.sendall(b"\x02")  # ...one byte at a time
            time.sleep(0.2)

    with raw_server(slow_tls) as server:
        url = server.url.replace("http://", "https://")
        with make_sink(kind, url, timeout=5, deadline=0.6) as sink:
            started = time.monotonic()
            result = sink.send(make_events(2))
            elapsed = time.monotonic() - started
    assert elapsed < 0.6 + 0.75
    assert [o.status for o in result.outcomes] == [Status.RETRY] * 2
    assert "deadline" in result.outcomes[0].reason


def test_a_finished_request_is_not_cut_off_later(kind, receiver):
    with make_sink(kind, receiver.url, deadline=0.2) as sink:
        assert sink.send(make_events(2)).all_delivered
        time.sleep(0.3)  # past the first request's deadline
        assert sink.send(make_events(2)).all_delivered
    # One keep-alive connection served both: the first request's watchdog never shut it.
    assert len(receiver.connections) == 2
    assert len(set(receiver.connections)) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_the_deadline_holds_in_a_forked_child(receiver):
    # Celery's prefork pool forks a parent whose watchdog thread does not survive the fork.
    with make_sink("thrivestack", receiver.url, deadline=0.5) as sink:
        assert sink.send(make_events(1)).all_delivered  # the parent's watchdog is running
        receiver.script(Scripted(200, {"success": True}, trickle=0.3))
        pid = os.fork()
        if pid == 0:  # the child: report through the exit code only
            code = 1
            try:
                started = time.monotonic()
                result = sink.send(make_events(1))
                in_time = time.monotonic() - started < 0.5 + 0.75
                code = 0 if in_time and "deadline" in result.outcomes[0].reason else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child's request was never cut off")
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("deadline", [0, -1, math.nan, math.inf, "30", True, None])
def test_deadline_must_be_positive_seconds(kind, deadline):
    with pytest.raises(ConfigurationError, match="deadline"):
        make_sink(kind, "https://collector.example", deadline=deadline)


def test_default_deadline_is_30_seconds(kind):
    assert make_sink(kind, "https://collector.example").deadline == 30.0


# -- 11: redact, then cut ---------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 500])
def test_a_key_across_the_300_character_cut_leaves_no_prefix(kind, receiver, sink, status):
    for secret in secrets_of(kind):
        for position in (285, 290, 295, 299):
            receiver.script(Scripted(status, {"message": "e" * position + secret + " tail " * 20}))
            result = sink.send(make_events(1))
            for outcome in result.outcomes:
                for length in range(8, len(secret) + 1):
                    assert secret[:length] not in outcome.reason, (secret, position, length)
                if position <= 290:  # otherwise the cut falls inside the mark itself
                    assert "[redacted]" in outcome.reason


# -- 12: a key that cannot go in a header ------------------------------------------------


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("abcdef0123456789\n", "whitespace"),
        ("abcdef0123456789\r\n", "whitespace"),
        ("  abcdef0123456789", "whitespace"),
        ("abcdef0123456789 ", "whitespace"),
        ("abcdef01\x0023456789", "control"),
        ("abcdef01\t23456789", "control"),
        ("abcdef01\x7f23456789", "control"),
        ("abcdéf0123456789", "non-ASCII"),
        ("ключ0123456789", "non-ASCII"),
        ("abcdef\u20130123456789", "non-ASCII"),
    ],
)
def test_a_key_that_cannot_go_in_a_header_is_refused_at_construction(kind, key, problem):
    option = "api_key" if kind == "thrivestack" else "write_key"
    with pytest.raises(ConfigurationError) as refused:
        make_sink(kind, "https://collector.example", key=key)
    message = str(refused.value)
    assert option in message
    assert problem in message
    assert key.strip() not in message
    assert "0123456789" not in message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("fine-key_0123", None),
        ("inner space ok", None),
        ("", "empty"),
        (None, "string"),
        (b"bytes", "string"),
        ("k\n", "whitespace"),
        ("k\x01k", "control"),
        ("kü", "non-ASCII"),
    ],
)
def test_header_value_problem(value, problem):
    found = header_value_problem(value)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_a_header_refused_at_send_time_is_a_config_error(kind, receiver, sink):
    # As if the key passed the constructor and went bad later: requests refuses to send it.
    header = "x-api-key" if kind == "thrivestack" else "Authorization"
    sink._session.headers[header] = sink._session.headers[header] + "\n"
    result = sink.send(make_events(3))
    assert receiver.request_count == 0
    option = "api_key" if kind == "thrivestack" else "write_key"
    assert_config_error_for_all(result, option, "header")


def test_a_ca_bundle_that_does_not_exist_is_a_config_error(kind, tmp_path):
    missing = str(tmp_path / "no-such-ca.pem")
    with make_sink(kind, "https://127.0.0.1:9", verify=missing) as sink:
        result = sink.send(make_events(2))
    assert_config_error_for_all(result, "verify option")


def test_an_unusable_url_is_a_config_error(kind):
    with make_sink(kind, "http://127.0.0.1:99999") as sink:
        result = sink.send(make_events(2))
    assert_config_error_for_all(result, setting_of(kind))


# -- 14: server headers are input ---------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "delay"),
    [
        ("9" * 400, 86_400.0),
        ("-5", 0.0),
        ("-" + "9" * 400, 0.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 86_400.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Sat, 01 Jan 10000 00:00:00 GMT", None),
        ("1_000", None),
        ("\u0661\u0662", None),  # digits of another script, as int() would take them
        ("soon, honestly", None),
        ("1e400", None),
    ],
)
def test_an_absurd_retry_after_is_capped_or_ignored(kind, receiver, sink, header, delay):
    receiver.script(Scripted(429, {"message": "slow down"}, {"Retry-After": header}))
    result = sink.send(make_events(2))
    assert [o.status for o in result.outcomes] == [Status.RETRY] * 2
    assert {o.delay for o in result.outcomes} == {delay}


# -- the keep-alive callback ------------------------------------------------------------------


def test_keeping_alive_false_halts_the_send(kind, receiver):
    calls = []

    def still_mine() -> bool:
        calls.append(receiver.request_count)
        return len(calls) < 3  # yes, yes, then no: the lease was lost

    with make_sink(kind, receiver.url, max_events=10) as sink, keeping_alive(still_mine):
        result = sink.send(make_events(50))
    assert calls == [1, 2, 3]  # asked before each request after the first
    assert receiver.request_count == 3
    assert result.requests == 3
    assert [o.status for o in result.outcomes] == [Status.DELIVERED] * 30 + [Status.RETRY] * 20
    assert all("sender stopped" in o.reason for o in result.outcomes[30:])
    assert not any(o.config_error for o in result.outcomes)
    # Outside the block the callback is gone.
    with make_sink(kind, receiver.url, max_events=10) as sink:
        assert sink.send(make_events(50)).all_delivered
    assert len(calls) == 3


# -- no sink raises for anything a server does --------------------------------------------------

ODD_ANSWERS = {
    "closes-at-once": b"",
    "not-http": b"garbage\r\n\r\n",
    "bad-status": b"HTTP/1.1 abc OK\r\n\r\n",
    "status-999": b"HTTP/1.1 999 Weird\r\nContent-Length: 0\r\n\r\n",
    "short-body": b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"success": true}',
    "negative-length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n<html>",
    "two-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok",
    "bad-chunks": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "not-gzip": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope",
    "huge-header": b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n",
    "many-headers": b"HTTP/1.1 200 OK\r\n" + b"X-H: 1\r\n" * 150 + b"\r\n",
    "huge-retry-after": b"HTTP/1.1 503 Busy\r\nRetry-After: " + b"9" * 5000 + b"\r\n\r\n",
    "binary-location": b"HTTP/1.1 302 Found\r\nLocation: \xff\xfe\x00\r\nContent-Length: 0\r\n\r\n",
    "binary-400": b"HTTP/1.1 400 Bad\r\nContent-Length: 4\r\n\r\n\xff\xfe\x00\x01",
    "json-bomb-ish": b"HTTP/1.1 400 Bad\r\nContent-Length: 20000\r\n\r\n" + b"[" * 20_000,
    "http-0.9": b'{"success": true}',
    "close-delimited-html": b"HTTP/1.0 200 OK\r\n\r\n<html>hi</html>",
    "informational-only": b"HTTP/1.1 100 Continue\r\n\r\n",
    "cut-in-the-headers": b"HTTP/1.1 200 OK\r\nContent-Ty",
    "cut-in-the-body": b'HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{"succ',
    "close-delimited-nothing": b"HTTP/1.0 200 OK\r\n\r\n",
}


@pytest.mark.parametrize("raw", list(ODD_ANSWERS.values()), ids=list(ODD_ANSWERS))
def test_no_odd_answer_makes_a_sink_raise_or_count_as_delivered(kind, raw):
    with (
        raw_server(answer_with(raw)) as server,
        make_sink(kind, server.url, timeout=2, deadline=3) as sink,
    ):
        result = sink.send(make_events(3))
    assert len(result) == 3
    assert result.delivered == 0
    assert all(o.reason for o in result.outcomes)


def test_a_close_delimited_success_is_delivery(kind):
    body = b'{"success": true}'
    with (
        raw_server(answer_with(b"HTTP/1.0 200 OK\r\n\r\n" + body)) as server,
        make_sink(kind, server.url) as sink,
    ):
        assert sink.send(make_events(2)).all_delivered


def test_a_slow_trickle_within_the_deadline_is_delivered(kind):
    raw = b'HTTP/1.1 200 OK\r\nContent-Length: 17\r\nConnection: close\r\n\r\n{"success": true}'
    with raw_server(trickle(raw, 0.002)) as server, make_sink(kind, server.url, deadline=5) as sink:
        assert sink.send(make_events(2)).all_delivered


# -- the environment: read once, when the sink is made, as requests would read it --

PROXY_VARIABLES = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"]
ACCEPTED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n"
    b'Connection: close\r\n\r\n{"success": true}'
)


@pytest.fixture
def environment(monkeypatch):
    """No proxy, CA bundle or netrc from the machine running the tests."""
    for name in [*PROXY_VARIABLES, "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC"]:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def forward_proxy(heads: list[str]) -> Callable[[socket.socket], None]:
    """Stands in for a forward proxy: notes each request's head and answers it itself."""

    def behave(conn: socket.socket) -> None:
        heads.append(read_request(conn).partition(b"\r\n\r\n")[0].decode("latin-1"))
        conn.sendall(ACCEPTED)

    return behave


def test_the_proxy_the_environment_names_carries_the_requests(kind, environment):
    heads: list[str] = []
    with raw_server(forward_proxy(heads)) as proxy:
        environment.setenv("HTTP_PROXY", proxy.url)
        with make_sink(kind, "http://collector.invalid", allow_http=True) as sink:
            result = sink.send(make_events(3))
    assert [o.status for o in result.outcomes] == [Status.DELIVERED] * 3
    path = "/api/track" if kind == "thrivestack" else "/v1/batch"
    assert heads[0].startswith(f"POST http://collector.invalid{path} HTTP/1.1\r\n")


def test_no_proxy_sends_straight_to_the_collector(kind, receiver, environment):
    environment.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    environment.setenv("NO_PROXY", "127.0.0.1")
    with make_sink(kind, receiver.url) as sink:
        result = sink.send(make_events(2))
    assert [o.status for o in result.outcomes] == [Status.DELIVERED] * 2


def test_the_environment_is_read_once_when_the_sink_is_made(kind, receiver, environment):
    with make_sink(kind, receiver.url) as sink:
        # Read per request, as requests does by default, this would send to a dead proxy.
        environment.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        result = sink.send(make_events(2))
    assert [o.status for o in result.outcomes] == [Status.DELIVERED] * 2


def test_netrc_never_replaces_the_sinks_credentials(kind, receiver, environment, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password not-the-key\n")
    netrc.chmod(0o600)
    environment.setenv("NETRC", str(netrc))
    with make_sink(kind, receiver.url) as sink:
        result = sink.send(make_events(2))
    assert [o.status for o in result.outcomes] == [Status.DELIVERED] * 2
    sent = receiver.requests[-1].headers.get("authorization")
    assert sent == (None if kind == "thrivestack" else f"Basic {BASIC}")


def test_the_environments_ca_bundle_applies_when_verify_is_true(kind, environment, tmp_path):
    missing = str(tmp_path / "no-such-ca.pem")
    environment.setenv("REQUESTS_CA_BUNDLE", missing)
    with make_sink(kind, "https://127.0.0.1:9") as sink:
        assert sink._session.verify == missing
        result = sink.send(make_events(2))
    assert_config_error_for_all(result, "verify option", "REQUESTS_CA_BUNDLE")
    with make_sink(kind, "https://127.0.0.1:9", verify=False) as unverified:
        assert unverified._session.verify is False  # configured here: the environment loses
