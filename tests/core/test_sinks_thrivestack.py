"""ThriveStackSink against a real HTTP server on loopback (never a patched client)."""

from __future__ import annotations

import copy
import itertools
import json
import socket
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

import tracking_adapter
from tracking_adapter import ConfigurationError, UserEnrichedEvent
from tracking_adapter.receiver import LoopbackReceiver, Scripted
from tracking_adapter.sinks import Status, ThriveStackSink

DATA = Path(__file__).resolve().parent / "data"
SAMPLE = json.loads((DATA / "spec_sample_1.json").read_text(encoding="utf-8"))
KEY = "ts-live-0123456789abcdef"


def make_events(count: int, *, start: int = 0, **extra_properties) -> list[UserEnrichedEvent]:
    events = []
    for number in range(start, start + count):
        data = copy.deepcopy(SAMPLE)
        data["user_id"] = f"user_{number}"
        data["properties"].update(extra_properties)
        events.append(UserEnrichedEvent.model_validate(data))
    return events


def compact(event: UserEnrichedEvent) -> bytes:
    return json.dumps(event.to_thrivestack(), ensure_ascii=False, separators=(",", ":")).encode()


def received_user_ids(receiver: LoopbackReceiver) -> list[str]:
    return [item["user_id"] for item in receiver.items]


class ObservedReceiver(LoopbackReceiver):
    """Notes which server thread (one per TCP connection) handled each request."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.connections: list[str] = []

    def handle(self, path, headers, raw):
        self.connections.append(threading.current_thread().name)
        return super().handle(path, headers, raw)


@pytest.fixture(scope="module")
def _running():
    # One server for the module: stopping one waits out serve_forever's 0.5 s poll.
    with ObservedReceiver(api_key=KEY) as running:
        yield running


@pytest.fixture
def receiver(_running):
    _running.api_key, _running.reject = KEY, None
    _running.clear()
    _running.connections.clear()
    yield _running
    _running.api_key, _running.reject = KEY, None
    _running.clear()


@pytest.fixture
def sink(receiver):
    with ThriveStackSink(KEY, receiver.thrivestack_endpoint, timeout=5) as made:
        yield made


def poison(*user_ids: str):
    def reject(item):
        return f"{item['user_id']} is poisoned" if item.get("user_id") in user_ids else None

    return reject


# -- the wire ------------------------------------------------------------------------


def test_posts_exact_bytes_with_the_documented_headers(receiver, sink):
    events = make_events(3)
    events[1].properties.enrichment_full_name = "José Müller 山田"  # non-ASCII, sent as UTF-8
    result = sink.send(events)

    assert result.all_delivered
    assert result.requests == 1
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.path == "/api/track"
    assert request.body == b"[" + b",".join(compact(e) for e in events) + b"]"
    assert "José Müller 山田".encode() in request.body
    assert request.headers["x-api-key"] == KEY
    assert request.headers["content-type"] == "application/json"
    assert f"tracking-adapter/{tracking_adapter.__version__}" in request.headers["user-agent"]
    assert json.loads(request.body) == [e.to_thrivestack() for e in events]


def test_items_sent_validate_against_thrivestacks_schema(receiver, sink):
    schema = json.loads((DATA / "thrivestack-track-item.schema.json").read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema)
    sink.send(make_events(5))
    assert len(receiver.items) == 5
    for item in receiver.items:
        assert list(validator.iter_errors(item)) == []


def test_endpoint_trailing_slash_is_stripped(receiver):
    with ThriveStackSink(KEY, receiver.thrivestack_endpoint + "/", timeout=5) as sink:
        assert sink.url == receiver.thrivestack_endpoint + "/track"
        assert sink.send(make_events(1)).all_delivered
    assert receiver.requests[0].path == "/api/track"


def test_empty_send_makes_no_request(receiver, sink):
    result = sink.send([])
    assert len(result) == 0
    assert result.requests == 0
    assert receiver.request_count == 0


# -- splitting -----------------------------------------------------------------------


def test_splits_by_1000_events(receiver, sink):
    events = make_events(2500)
    result = sink.send(events)
    assert result.all_delivered
    assert result.requests == 3
    assert [len(json.loads(r.body)) for r in receiver.requests] == [1000, 1000, 500]
    assert received_user_ids(receiver) == [e.user_id for e in events]  # order kept, no loss
    assert all(len(r.body) <= 2_000_000 for r in receiver.requests)


def test_default_limits_are_thrivestacks():
    sink = ThriveStackSink(KEY, "https://api.example.com/api")
    assert sink.max_events == 1000
    assert sink.max_request_bytes == 2_000_000  # "2 MB" read in decimal units


def test_splits_by_the_2_mb_limit(receiver, sink):
    # ~100 KB events: 2 MB holds about 20 of them, well under 1,000.
    events = make_events(45, blob="x" * 100_000)
    result = sink.send(events)
    assert result.all_delivered
    bodies = [r.body for r in receiver.requests]
    assert all(len(body) <= 2_000_000 for body in bodies)
    assert len(bodies) == expected_requests([len(compact(e)) for e in events], 2_000_000)
    assert len(bodies) == 3
    assert received_user_ids(receiver) == [e.user_id for e in events]


def expected_requests(sizes: list[int], max_bytes: int, max_events: int = 10**9) -> int:
    """The fewest ordered requests: fill each one greedily (optimal for ordered items)."""
    count, used, items = 0, 0, 0
    for size in sizes:
        if items and (items >= max_events or used + 1 + size + 1 > max_bytes):
            items = 0
        if items == 0:
            count, used, items = count + 1, 1 + size, 1  # "[" + item (+ "]" counted above)
        else:
            used, items = used + 1 + size, items + 1
    return count


@pytest.mark.parametrize("max_request_bytes", [3_000, 5_000, 12_345])
def test_configurable_byte_limit_gives_the_minimal_number_of_requests(receiver, max_request_bytes):
    events = make_events(30)
    for number, event in enumerate(events):  # vary the sizes
        event.properties.enrichment_employment_title = "t" * (number * 37 % 400)
    sizes = [len(compact(e)) for e in events]
    with ThriveStackSink(
        KEY, receiver.thrivestack_endpoint, timeout=5, max_request_bytes=max_request_bytes
    ) as sink:
        result = sink.send(events)
    assert result.all_delivered
    bodies = [r.body for r in receiver.requests]
    assert len(bodies) == expected_requests(sizes, max_request_bytes)
    assert result.requests == len(bodies)
    assert all(len(body) <= max_request_bytes for body in bodies)
    # Greedy: the first item of each next request would not have fit in the previous one.
    for previous, following in itertools.pairwise(bodies):
        first_next = json.dumps(
            json.loads(following)[0], ensure_ascii=False, separators=(",", ":")
        ).encode()
        assert len(previous) + 1 + len(first_next) > max_request_bytes
    assert b"".join(bodies).count(b'"user_id"') == 30
    assert received_user_ids(receiver) == [e.user_id for e in events]


def test_configurable_event_limit(receiver):
    with ThriveStackSink(KEY, receiver.thrivestack_endpoint, timeout=5, max_events=7) as sink:
        result = sink.send(make_events(22))
    assert result.requests == 4
    assert [len(json.loads(r.body)) for r in receiver.requests] == [7, 7, 7, 1]


def test_an_event_exactly_at_the_byte_limit_is_sent(receiver):
    event = make_events(1)[0]
    limit = len(compact(event)) + 2
    with ThriveStackSink(
        KEY, receiver.thrivestack_endpoint, timeout=5, max_request_bytes=limit
    ) as sink:
        assert sink.send([event]).all_delivered
    assert len(receiver.requests[0].body) == limit


def test_an_event_too_big_to_ever_fit_is_rejected_and_the_others_go(receiver):
    events = make_events(6)
    events[2] = make_events(1, start=2, blob="y" * 20_000)[0]
    with ThriveStackSink(
        KEY, receiver.thrivestack_endpoint, timeout=5, max_request_bytes=10_000
    ) as sink:
        result = sink.send(events)
    assert [o.status for o in result.outcomes] == [
        Status.DELIVERED,
        Status.DELIVERED,
        Status.REJECTED,
        Status.DELIVERED,
        Status.DELIVERED,
        Status.DELIVERED,
    ]
    reason = result.outcomes[2].reason
    assert "bytes" in reason
    assert "10,000" in reason or "9,998" in reason
    assert sorted(received_user_ids(receiver)) == sorted(
        e.user_id for i, e in enumerate(events) if i != 2
    )
    assert all(b"yyyy" not in r.body for r in receiver.requests)


def test_connections_are_reused(receiver, sink):
    for number in range(8):
        assert sink.send(make_events(3, start=number * 3)).all_delivered
    assert len(receiver.connections) == 8
    # One keep-alive connection, so one server thread handled every request.
    assert len(set(receiver.connections)) == 1


# -- a 400 for one event never blocks its batch ----------------------------------------


def test_one_poisoned_event_is_rejected_and_every_other_delivered_once(receiver, sink):
    receiver.reject = poison("user_13")
    events = make_events(40)
    result = sink.send(events)

    for index, outcome in enumerate(result.outcomes):
        if index == 13:
            assert outcome.status is Status.REJECTED
            assert "user_13 is poisoned" in outcome.reason  # the server's own message
            assert "400" in outcome.reason
        else:
            assert outcome.status is Status.DELIVERED, index
    delivered = Counter(received_user_ids(receiver))
    assert delivered == Counter(e.user_id for e in events if e.user_id != "user_13")
    assert max(delivered.values()) == 1
    assert result.rejected == 1
    assert result.delivered == 39
    assert result.requests == receiver.request_count
    assert result.requests <= 2 * 6 + 1  # bisection: log2(n) levels, not one request per event


def test_two_poisoned_events_are_both_rejected(receiver, sink):
    receiver.reject = poison("user_0", "user_33")
    events = make_events(50)
    result = sink.send(events)
    rejected = [i for i, o in enumerate(result.outcomes) if o.status is Status.REJECTED]
    assert rejected == [0, 33]
    assert "user_0 is poisoned" in result.outcomes[0].reason
    assert "user_33 is poisoned" in result.outcomes[33].reason
    assert result.delivered == 48
    delivered = Counter(received_user_ids(receiver))
    assert delivered == Counter(e.user_id for e in events if e.user_id not in ("user_0", "user_33"))


def test_poison_in_the_middle_request_does_not_hold_up_the_others(receiver):
    receiver.reject = poison("user_15")
    events = make_events(30)
    with ThriveStackSink(KEY, receiver.thrivestack_endpoint, timeout=5, max_events=10) as sink:
        result = sink.send(events)
    assert result.rejected == 1
    assert result.outcomes[15].status is Status.REJECTED
    assert result.delivered == 29
    assert Counter(received_user_ids(receiver)) == Counter(
        e.user_id for e in events if e.user_id != "user_15"
    )


def test_a_batch_with_only_bad_events_rejects_each(receiver, sink):
    receiver.reject = poison("user_0", "user_1", "user_2")
    result = sink.send(make_events(3))
    assert result.rejected == 3
    assert receiver.item_count == 0


# -- configuration errors: keep the events, stop sending ------------------------------


@pytest.mark.parametrize("answer", ["wrong-key", 401, 403])
def test_credentials_refused_is_a_config_error_that_keeps_every_event(receiver, answer):
    key = "wrong-key-456789" if answer == "wrong-key" else KEY
    if answer != "wrong-key":
        receiver.script(Scripted(answer, {"message": "forbidden"}))
    with ThriveStackSink(
        key, receiver.thrivestack_endpoint, timeout=5, max_events=10, config_retry_delay=123.0
    ) as sink:
        result = sink.send(make_events(35))
    assert len(result) == 35
    for outcome in result.outcomes:
        assert outcome.status is Status.RETRY
        assert outcome.config_error is True
        assert outcome.delay == 123.0
        assert "api_key" in outcome.reason
    assert result.rejected == 0
    assert result.requests == 1
    assert receiver.request_count == 1  # the other three requests were never sent
    assert receiver.item_count == 0


def test_default_config_retry_delay_is_long(receiver):
    with ThriveStackSink("wrong-key-456789", receiver.thrivestack_endpoint, timeout=5) as sink:
        result = sink.send(make_events(2))
    assert {o.delay for o in result.outcomes} == {300.0}


def test_404_is_a_config_error_naming_the_endpoint(receiver, sink):
    receiver.script(Scripted(404, {"message": "no such route"}))
    result = sink.send(make_events(4))
    assert result.retried == 4
    assert all(o.config_error for o in result.outcomes)
    assert "endpoint" in result.outcomes[0].reason
    assert "404" in result.outcomes[0].reason


def test_a_redirect_is_not_followed_and_is_a_config_error(receiver, sink):
    receiver.script(Scripted(301, b"", {"Location": "https://elsewhere.example/api/track"}))
    result = sink.send(make_events(2))
    assert receiver.request_count == 1
    assert all(o.status is Status.RETRY and o.config_error for o in result.outcomes)
    assert "elsewhere.example" in result.outcomes[0].reason


# -- transient trouble: retry, honour Retry-After, stop the rest -----------------------


def test_429_with_retry_after_seconds(receiver):
    receiver.script(Scripted(429, {"message": "rate limited"}, {"Retry-After": "17"}))
    with ThriveStackSink(KEY, receiver.thrivestack_endpoint, timeout=5, max_events=5) as sink:
        result = sink.send(make_events(12))
    assert [o.status for o in result.outcomes] == [Status.RETRY] * 12
    assert {o.delay for o in result.outcomes} == {17.0}
    assert not any(o.config_error for o in result.outcomes)
    assert "429" in result.outcomes[0].reason
    assert receiver.request_count == 1  # stopped at the first sign of a pause


def test_429_with_retry_after_http_date(receiver, sink):
    when = datetime.now(UTC) + timedelta(seconds=120)
    receiver.script(
        Scripted(429, {"message": "later"}, {"Retry-After": format_datetime(when, usegmt=True)})
    )
    result = sink.send(make_events(2))
    delays = {o.delay for o in result.outcomes}
    assert len(delays) == 1
    (delay,) = delays
    assert 110 <= delay <= 120


def test_503_with_retry_after(receiver, sink):
    receiver.script(Scripted(503, {"message": "maintenance"}, {"Retry-After": "5"}))
    result = sink.send(make_events(3))
    assert [o.status for o in result.outcomes] == [Status.RETRY] * 3
    assert {o.delay for o in result.outcomes} == {5.0}
    assert "maintenance" in result.outcomes[0].reason


def test_500_retries_with_no_delay(receiver, sink):
    receiver.script(Scripted(500, {"message": "boom"}))
    result = sink.send(make_events(3))
    assert all(o.status is Status.RETRY and o.delay is None for o in result.outcomes)
    assert not any(o.config_error for o in result.outcomes)
    assert "500" in result.outcomes[0].reason
    # The next send works again.
    assert sink.send(make_events(3)).all_delivered


def test_partial_progress_before_a_500_is_kept(receiver):
    receiver.script(Scripted(accept=True), Scripted(500, {"message": "boom"}))
    with ThriveStackSink(KEY, receiver.thrivestack_endpoint, timeout=5, max_events=4) as sink:
        result = sink.send(make_events(12))
    assert [o.status for o in result.outcomes] == [Status.DELIVERED] * 4 + [Status.RETRY] * 8
    assert receiver.request_count == 2


def test_a_hang_past_the_timeout_is_a_quick_retry():
    with LoopbackReceiver(api_key=KEY) as hanging:  # its own server: the handler sleeps on
        hanging.script(Scripted(delay=3.0))
        with ThriveStackSink(KEY, hanging.thrivestack_endpoint, timeout=0.3) as sink:
            started = time.monotonic()
            result = sink.send(make_events(3))
            elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert [o.status for o in result.outcomes] == [Status.RETRY] * 3
    assert "timeout" in result.outcomes[0].reason
    assert result.outcomes[0].delay is None


def test_a_slow_answer_within_the_timeout_is_delivered(receiver):
    receiver.script(Scripted(delay=0.1, accept=True))
    with ThriveStackSink(KEY, receiver.thrivestack_endpoint, timeout=2) as sink:
        assert sink.send(make_events(2)).all_delivered


def test_a_connection_reset_is_a_retry_and_the_next_send_recovers(receiver, sink):
    receiver.script(Scripted(reset=True))
    result = sink.send(make_events(3))
    assert [o.status for o in result.outcomes] == [Status.RETRY] * 3
    assert not any(o.config_error for o in result.outcomes)
    assert sink.send(make_events(3)).all_delivered


def test_nothing_listening_is_a_retry():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with ThriveStackSink(KEY, f"http://127.0.0.1:{port}/api", timeout=1) as sink:
        result = sink.send(make_events(2))
    assert [o.status for o in result.outcomes] == [Status.RETRY] * 2
    assert "could not reach" in result.outcomes[0].reason


# -- construction ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    ["http://api.app.thrivestack.ai/api", "http://10.0.0.5:8080/api", "http://localhost.evil.com/"],
)
def test_plain_http_off_loopback_is_refused(endpoint):
    with pytest.raises(ConfigurationError, match="endpoint"):
        ThriveStackSink(KEY, endpoint)


def test_plain_http_off_loopback_is_allowed_when_asked():
    sink = ThriveStackSink(KEY, "http://collector.internal/api", allow_http=True)
    assert sink.url == "http://collector.internal/api/track"


@pytest.mark.parametrize(
    "endpoint", ["http://localhost:9/api", "http://[::1]:9/api", "https://x.io"]
)
def test_loopback_http_and_https_are_accepted(endpoint):
    assert ThriveStackSink(KEY, endpoint).url == endpoint + "/track"


def test_default_endpoint():
    assert ThriveStackSink(KEY).url == "https://api.app.thrivestack.ai/api/track"


@pytest.mark.parametrize("api_key", ["", "   ", None])
def test_missing_api_key(api_key):
    with pytest.raises(ConfigurationError, match="api_key"):
        ThriveStackSink(api_key, "https://api.example.com/api")


def test_non_positive_limits_are_refused():
    with pytest.raises(ConfigurationError):
        ThriveStackSink(KEY, "https://api.example.com/api", max_events=0)


def test_repr_and_describe_never_show_the_key():
    sink = ThriveStackSink(KEY, "https://api.example.com/api")
    assert KEY not in repr(sink)
    assert "redacted" in repr(sink)
    assert "https://api.example.com/api" in repr(sink)
    assert KEY not in sink.describe()
    assert KEY not in str(sink)
