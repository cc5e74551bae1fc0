"""SegmentSink against a real local collector: the official client's body, our own session."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tracking_adapter import ConfigurationError, UserEnrichedEvent
from tracking_adapter.receiver import LoopbackReceiver, Scripted
from tracking_adapter.sinks import SegmentSink, Status
from tracking_adapter.sinks.segment import batch_body

DATA = Path(__file__).resolve().parent / "data"
SAMPLE = json.loads((DATA / "spec_sample_1.json").read_text(encoding="utf-8"))
WRITE_KEY = "seg-wk-0123456789abcdef"


def make_events(count: int, *, start: int = 0, **extra_properties) -> list[UserEnrichedEvent]:
    events = []
    for number in range(start, start + count):
        data = copy.deepcopy(SAMPLE)
        data["user_id"] = f"user_{number}"
        data["context"]["locale"] = "en-IN"
        data["properties"].update(extra_properties)
        events.append(UserEnrichedEvent.model_validate(data))
    return events


def decoded(request) -> bytes:
    if request.headers.get("content-encoding") == "gzip":
        return gzip.decompress(request.body)
    return request.body


def batches(receiver) -> list[list[dict]]:
    return [json.loads(decoded(r))["batch"] for r in receiver.requests]


def message_size(event: UserEnrichedEvent) -> int:
    return len(json.dumps(event.to_segment()).encode())


@pytest.fixture(scope="module")
def _running():
    # One server for the module: stopping one waits out serve_forever's 0.5 s poll.
    with LoopbackReceiver(write_key=WRITE_KEY) as running:
        yield running


@pytest.fixture
def receiver(_running):
    _running.write_key, _running.reject = WRITE_KEY, None
    _running.clear()
    yield _running
    _running.write_key, _running.reject = WRITE_KEY, None
    _running.clear()


@pytest.fixture
def sink(receiver):
    with SegmentSink(WRITE_KEY, receiver.url, timeout=5) as made:
        yield made


def poison(*user_ids: str):
    def reject(item):
        return f"{item['userId']} is poisoned" if item.get("userId") in user_ids else None

    return reject


# -- the wire ------------------------------------------------------------------------


def test_posts_a_gzipped_batch_with_basic_auth(receiver, sink):
    events = make_events(5)
    result = sink.send(events)

    assert result.all_delivered
    assert result.requests == 1
    (request,) = receiver.requests
    assert request.path == "/v1/batch"
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("tracking-adapter/")
    expected_auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    assert request.headers["authorization"] == expected_auth
    user, _, password = base64.b64decode(expected_auth.split()[1]).decode().partition(":")
    assert (user, password) == (WRITE_KEY, "")
    assert request.body[:2] == b"\x1f\x8b"  # gzip magic: compressed on the wire

    raw = gzip.decompress(request.body)
    payload = json.loads(raw)
    # The bytes segment-analytics-python's request.post writes for the same batch (its
    # json.dumps of {"batch", "sentAt", "writeKey"}, in that order), sentAt aside.
    assert raw == json.dumps(
        {
            "batch": [e.to_segment() for e in events],
            "sentAt": payload["sentAt"],
            "writeKey": WRITE_KEY,
        }
    ).encode("ascii")
    batch = payload["batch"]
    assert [m["messageId"] for m in batch] == [e.message_id for e in events]
    for message, event in zip(batch, events, strict=True):
        assert message["type"] == "track"
        assert message["event"] == "user_enriched"
        assert message["userId"] == event.user_id
        assert message["context"]["groupId"] == event.group_id
        assert message["context"]["locale"] == "en-IN"
        assert message["properties"] == event.properties.to_wire()
        assert message["timestamp"] == "2023-11-02T00:30:08.276Z"
        assert message == event.to_segment()
    sent_at = datetime.fromisoformat(payload["sentAt"])
    assert sent_at.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - sent_at).total_seconds()) < 60


def test_works_without_gzip(receiver):
    events = make_events(3)
    with SegmentSink(WRITE_KEY, receiver.url, gzip=False, timeout=5) as sink:
        assert sink.send(events).all_delivered
    (request,) = receiver.requests
    assert "content-encoding" not in request.headers
    batch = json.loads(request.body)["batch"]
    assert [m["messageId"] for m in batch] == [e.message_id for e in events]


def test_message_ids_are_stable_so_a_resend_is_deduplicated(receiver, sink):
    events = make_events(4)
    sink.send(events)
    sink.send(make_events(4))  # the same enrichment built again
    assert receiver.item_count == 8
    assert receiver.duplicate_count == 4


def test_the_callers_events_are_not_mutated(receiver, sink):
    events = make_events(2)
    before = [e.model_dump() for e in events]
    sink.send(events)
    assert [e.model_dump() for e in events] == before


@pytest.mark.parametrize(
    "extra",
    [
        {"enrichment_city": "São Paulo", "enrichment_state": "Auvergne-Rhône-Alpes"},
        {"enrichment_full_name": "日本 😀", "custom_url": "https://x.test/a,b:c"},
        {"enrichment_city": 'say "hi"\n', "custom_ratio": 1.5e-7},  # the plain path
        {"custom_nested": {"a": [1, None, True], "b": {}}, "custom_big": 2**70},
    ],
)
def test_the_body_is_the_official_clients_bytes_whatever_the_properties(receiver, sink, extra):
    events = make_events(3, **extra)
    assert sink.send(events).all_delivered
    (request,) = receiver.requests
    raw = gzip.decompress(request.body)
    sent_at = json.loads(raw)["sentAt"]
    batch = [e.to_segment() for e in events]
    expected = {"batch": batch, "sentAt": sent_at, "writeKey": WRITE_KEY}
    assert raw == json.dumps(expected).encode("ascii")


def test_the_body_is_what_the_official_clients_request_post_sends(receiver, monkeypatch):
    request_module = pytest.importorskip("segment.analytics.request")
    events = make_events(4, enrichment_city="São Paulo", custom_url="https://x.test/a:b")
    with SegmentSink(WRITE_KEY, receiver.url, gzip=False, timeout=5) as sink:
        assert sink.send(events).all_delivered
    (request,) = receiver.requests
    sent_at = json.loads(request.body)["sentAt"]

    posted = []

    class Answered:
        status_code = 200

    def capture(url, **kwargs):
        posted.append(kwargs["data"])
        return Answered()

    monkeypatch.setattr(request_module._session, "post", capture)
    request_module.post(
        WRITE_KEY, host=receiver.url, batch=[e.to_segment() for e in events], sentAt=sent_at
    )
    assert posted == [request.body.decode("ascii")]


@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_the_batch_body_is_joined_once_into_the_same_bytes(count):
    messages = [f'{{"n": {n}}}'.encode() for n in range(count)]
    tail = b'], "sentAt": "x", "writeKey": "k"}'
    assert batch_body(messages, tail) == b'{"batch": [' + b", ".join(messages) + tail


def test_empty_send_makes_no_request(receiver, sink):
    assert sink.send([]).requests == 0
    assert receiver.request_count == 0


# -- splitting -----------------------------------------------------------------------


def test_default_limits_are_segments():
    sink = SegmentSink(WRITE_KEY)
    assert sink.max_events == 2500
    assert sink.max_request_bytes == 475_000  # the official client's target, under 500,000
    assert sink.max_event_bytes == 32_000
    assert sink.host == "https://api.segment.io"


def test_splits_by_event_count(receiver):
    events = make_events(25)
    with SegmentSink(WRITE_KEY, receiver.url, timeout=5, max_events=10) as sink:
        result = sink.send(events)
    assert result.all_delivered
    assert [len(b) for b in batches(receiver)] == [10, 10, 5]


def expected_requests(sizes: list[int], max_bytes: int, envelope: int) -> int:
    count, used, items = 0, 0, 0
    for size in sizes:
        if items and used + 2 + size > max_bytes:
            items = 0
        if items == 0:
            count, used, items = count + 1, envelope + size, 1
        else:
            used, items = used + 2 + size, items + 1
    return count


def envelope(write_key: str) -> int:
    # {"batch": [ ... ], "sentAt": "2024-01-01T00:00:00.000000+00:00", "writeKey": "<key>"}
    return len('{"batch": [], "sentAt": "", "writeKey": }') + 32 + len(json.dumps(write_key))


def test_splits_by_475_000_bytes_per_batch(receiver, sink):
    events = make_events(1200)
    result = sink.send(events)
    assert result.all_delivered
    bodies = [decoded(r) for r in receiver.requests]
    assert all(len(body) <= 475_000 for body in bodies)
    # The fewest requests the exact envelope allows, and each body's size is the count.
    sizes = [message_size(e) for e in events]
    assert len(bodies) == expected_requests(sizes, 475_000, envelope(WRITE_KEY))
    assert len(bodies) >= 3
    for body, batch in zip(bodies, batches(receiver), strict=True):
        counted = sum(len(json.dumps(m).encode()) for m in batch) + 2 * (len(batch) - 1)
        assert len(body) == envelope(WRITE_KEY) + counted
    assert [m["userId"] for b in batches(receiver) for m in b] == [e.user_id for e in events]


@pytest.mark.parametrize("max_request_bytes", [4_000, 9_000])
def test_configurable_batch_bytes(receiver, max_request_bytes):
    events = make_events(20)
    with SegmentSink(
        WRITE_KEY, receiver.url, gzip=False, timeout=5, max_request_bytes=max_request_bytes
    ) as sink:
        result = sink.send(events)
    assert result.all_delivered
    assert all(len(r.body) <= max_request_bytes for r in receiver.requests)
    sizes = [message_size(e) for e in events]
    assert len(receiver.requests) == expected_requests(
        sizes, max_request_bytes, envelope(WRITE_KEY)
    )


def test_an_event_over_32_000_bytes_is_rejected_and_the_others_go(receiver, sink):
    base = make_events(1, blob="")[0]
    events = make_events(5)
    events[3] = make_events(1, start=3, blob="z" * (32_001 - message_size(base)))[0]
    assert message_size(events[3]) == 32_001
    result = sink.send(events)
    assert [o.status for o in result.outcomes] == [Status.DELIVERED] * 3 + [
        Status.REJECTED,
        Status.DELIVERED,
    ]
    reason = result.outcomes[3].reason
    assert "32,000" in reason
    assert "bytes" in reason
    assert [m["userId"] for b in batches(receiver) for m in b] == [
        "user_0",
        "user_1",
        "user_2",
        "user_4",
    ]


def test_an_event_of_exactly_32_000_bytes_is_sent(receiver, sink):
    base = make_events(1, blob="")[0]
    padding = 32_000 - message_size(base)
    event = make_events(1, blob="p" * padding)[0]
    assert message_size(event) == 32_000
    assert sink.send([event]).all_delivered
    assert receiver.item_count == 1


def test_batches_stay_within_the_byte_limit_whatever_the_write_key(receiver):
    key = 'wk"\\' * 20  # 80 characters, 120 once json.dumps escapes the quotes and backslashes
    receiver.write_key = key
    base = message_size(make_events(1, blob="")[0])
    padding = (4000 - envelope(key) - 2) // 2 - base
    events = make_events(2, blob="p" * padding)  # two events that just fit, counted exactly
    with SegmentSink(key, receiver.url, gzip=False, timeout=5, max_request_bytes=4000) as sink:
        result = sink.send(events)
    assert result.all_delivered
    assert result.requests == 1
    assert 3998 <= len(receiver.requests[0].body) <= 4000


# -- 400: bisect to the bad event ------------------------------------------------------


def test_one_poisoned_event(receiver, sink):
    receiver.reject = poison("user_21")
    events = make_events(30)
    result = sink.send(events)
    assert result.outcomes[21].status is Status.REJECTED
    assert "user_21 is poisoned" in result.outcomes[21].reason
    assert result.delivered == 29
    # Refused requests carry no accepted items; count what the collector accepted.
    accepted = Counter(item["messageId"] for item in receiver.items)
    assert accepted == Counter(e.message_id for e in events if e.user_id != "user_21")
    assert max(accepted.values()) == 1
    assert receiver.duplicate_count == 0


def test_two_poisoned_events(receiver, sink):
    receiver.reject = poison("user_2", "user_9")
    events = make_events(12)
    result = sink.send(events)
    assert [i for i, o in enumerate(result.outcomes) if o.status is Status.REJECTED] == [2, 9]
    assert result.delivered == 10
    assert Counter(item["userId"] for item in receiver.items) == Counter(
        e.user_id for e in events if e.user_id not in ("user_2", "user_9")
    )


# -- answers that keep the events ------------------------------------------------------


def test_401_is_a_config_error_naming_the_write_key(receiver):
    with SegmentSink(
        "wrong-write-key-9876", receiver.url, timeout=5, max_events=5, config_retry_delay=77.0
    ) as sink:
        result = sink.send(make_events(12))
    for outcome in result.outcomes:
        assert outcome.status is Status.RETRY
        assert outcome.config_error is True
        assert outcome.delay == 77.0
        assert "write_key" in outcome.reason
    assert result.rejected == 0
    assert receiver.request_count == 1  # the rest of the batches were not sent
    assert receiver.item_count == 0


def test_429_retry_after_is_honoured(receiver, sink):
    receiver.script(
        Scripted(429, {"code": "rate_limited", "message": "slow down"}, {"Retry-After": "42"})
    )
    result = sink.send(make_events(3))
    assert [o.status for o in result.outcomes] == [Status.RETRY] * 3
    assert {o.delay for o in result.outcomes} == {42.0}
    assert not any(o.config_error for o in result.outcomes)
    assert "slow down" in result.outcomes[0].reason


def test_500_with_a_non_json_body(receiver, sink):
    receiver.script(Scripted(500, b"upstream exploded"))
    result = sink.send(make_events(2))
    assert all(o.status is Status.RETRY and o.delay is None for o in result.outcomes)
    assert "upstream exploded" in result.outcomes[0].reason


def test_a_hang_past_the_timeout_is_a_quick_retry():
    with LoopbackReceiver(write_key=WRITE_KEY) as hanging:
        hanging.script(Scripted(delay=3.0))
        with SegmentSink(WRITE_KEY, hanging.url, timeout=0.3) as sink:
            started = time.monotonic()
            result = sink.send(make_events(2))
            elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert [o.status for o in result.outcomes] == [Status.RETRY] * 2
    assert "timeout" in result.outcomes[0].reason


def test_a_connection_reset_is_a_retry(receiver, sink):
    receiver.script(Scripted(reset=True))
    result = sink.send(make_events(2))
    assert [o.status for o in result.outcomes] == [Status.RETRY] * 2
    assert sink.send(make_events(2)).all_delivered


# -- construction ----------------------------------------------------------------------


def test_plain_http_off_loopback_is_refused_naming_host():
    with pytest.raises(ConfigurationError, match="host"):
        SegmentSink(WRITE_KEY, "http://collector.example.com")
    assert SegmentSink(WRITE_KEY, "http://collector.example.com", allow_http=True)


@pytest.mark.parametrize("write_key", ["", "  ", None])
def test_missing_write_key(write_key):
    with pytest.raises(ConfigurationError, match="write_key"):
        SegmentSink(write_key)


def test_repr_and_describe_never_show_the_key():
    sink = SegmentSink(WRITE_KEY, "https://events.eu1.segmentapis.com/")
    assert sink.host == "https://events.eu1.segmentapis.com"
    assert WRITE_KEY not in repr(sink)
    assert "redacted" in repr(sink)
    assert WRITE_KEY not in sink.describe()
    assert sink.describe() == "segment https://events.eu1.segmentapis.com/v1/batch"
