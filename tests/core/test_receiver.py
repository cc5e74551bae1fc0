"""The loopback receiver the sink tests rely on: it must check what the real APIs check."""

from __future__ import annotations

import base64
import functools
import gzip
import json
import socket
import threading
import time

import pytest
import requests

from tracking_adapter.receiver import LoopbackReceiver, Scripted, _Handler

KEY = "receiver-test-key"


def item(user_id: str = "u1") -> dict:
    return {
        "event_name": "user_enriched",
        "user_id": user_id,
        "properties": {},
        "context": {"group_id": "g1"},
        "timestamp": "2023-11-02T00:30:08.276Z",
    }


def segment_item(user_id: str = "u1", message_id: str = "m1") -> dict:
    return {
        "type": "track",
        "userId": user_id,
        "event": "user_enriched",
        "properties": {},
        "context": {"groupId": "g1"},
        "messageId": message_id,
    }


def basic(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


@pytest.fixture(scope="module")
def _running():
    # One server for the module: stopping one waits out serve_forever's 0.5 s poll.
    with LoopbackReceiver(api_key=KEY, write_key="wk-receiver") as running:
        yield running


@pytest.fixture
def receiver(_running):
    _running.api_key, _running.write_key = KEY, "wk-receiver"
    _running.reject, _running.keep = None, True
    _running.clear()
    yield _running
    _running.api_key, _running.write_key = KEY, "wk-receiver"
    _running.reject, _running.keep = None, True
    _running.clear()


@pytest.fixture
def session():
    with requests.Session() as client:
        yield client


def post_track(session, receiver, body: bytes, key: str | None = KEY) -> requests.Response:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["x-api-key"] = key
    return session.post(
        f"{receiver.thrivestack_endpoint}/track", data=body, headers=headers, timeout=5
    )


def test_urls(receiver):
    assert receiver.url.startswith("http://127.0.0.1:")
    assert receiver.thrivestack_endpoint == receiver.url + "/api"


def test_accepts_an_array_and_records_the_body_byte_for_byte(receiver, session):
    body = json.dumps([item("a"), item("b")]).encode()
    response = post_track(session, receiver, body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["success"] is True
    assert answer["eventId"]
    assert len(receiver.requests) == 1
    recorded = receiver.requests[0]
    assert recorded.body == body
    assert recorded.path == "/api/track"
    assert recorded.status == 200
    assert recorded.headers["x-api-key"] == KEY  # header names lower-cased
    assert [i["user_id"] for i in receiver.items] == ["a", "b"]
    assert receiver.item_count == 2
    assert receiver.request_count == 1


@pytest.mark.parametrize("key", ["wrong", None, KEY.upper()])
def test_401_for_a_wrong_or_missing_api_key(receiver, session, key):
    response = post_track(session, receiver, json.dumps([item()]).encode(), key=key)
    assert response.status_code == 401
    assert "x-api-key" in response.json()["message"]
    assert receiver.item_count == 0
    assert receiver.requests[0].status == 401


def test_no_key_check_when_api_key_is_none(receiver, session):
    receiver.api_key = None
    response = post_track(session, receiver, json.dumps([item()]).encode(), key=None)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (json.dumps(item()).encode(), "array"),
        (b"{not json", "invalid JSON"),
        (json.dumps([item("x") for _ in range(1001)]).encode(), "1000"),
        (json.dumps([{"user_id": "u"}]).encode(), "event_name"),
        (json.dumps([item(""), item()]).encode(), "user_id"),
        (json.dumps(["not an object"]).encode(), "object"),
    ],
    ids=[
        "object-not-array",
        "invalid-json",
        "over-1000",
        "no-event-name",
        "empty-user",
        "non-object",
    ],
)
def test_400_for_bad_track_bodies(receiver, session, body, message):
    response = post_track(session, receiver, body)
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert receiver.item_count == 0
    assert receiver.requests[0].body == body  # recorded even when refused


def test_exactly_1000_events_are_accepted(receiver, session):
    response = post_track(
        session, receiver, json.dumps([item(f"u{i}") for i in range(1000)]).encode()
    )
    assert response.status_code == 200
    assert receiver.item_count == 1000


def padded_track_body(size: int) -> bytes:
    big = item()
    big["properties"]["blob"] = ""
    base = len(json.dumps([big]).encode())
    big["properties"]["blob"] = "x" * (size - base)
    body = json.dumps([big]).encode()
    assert len(body) == size
    return body


def test_2_mb_is_read_in_decimal_units(receiver, session):
    assert post_track(session, receiver, padded_track_body(2_000_000)).status_code == 200
    response = post_track(session, receiver, padded_track_body(2_000_001))
    assert response.status_code == 400
    assert "2,000,000 bytes" in response.json()["message"]


def test_reject_callback_refuses_the_whole_request(receiver, session):
    receiver.reject = lambda i: "poisoned" if i.get("user_id") == "bad" else None
    response = post_track(session, receiver, json.dumps([item("ok"), item("bad")]).encode())
    assert response.status_code == 400
    assert response.json()["message"] == "event 1: poisoned"
    assert receiver.item_count == 0
    response = post_track(session, receiver, json.dumps([item("ok")]).encode())
    assert response.status_code == 200
    assert receiver.item_count == 1


def test_segment_batch_with_gzip_and_basic_auth(receiver, session):
    payload = {
        "batch": [segment_item("a", "m-a"), segment_item("b", "m-b")],
        "writeKey": "wk-receiver",
    }
    raw = gzip.compress(json.dumps(payload).encode())
    response = session.post(
        f"{receiver.url}/v1/batch",
        data=raw,
        headers={"Content-Encoding": "gzip", "Authorization": basic("wk-receiver")},
        timeout=5,
    )
    assert response.status_code == 200
    assert receiver.requests[0].body == raw  # as received, before decoding
    assert [i["messageId"] for i in receiver.items] == ["m-a", "m-b"]


def test_segment_401_for_a_wrong_write_key(receiver, session):
    response = session.post(
        f"{receiver.url}/v1/batch",
        json={"batch": [segment_item()]},
        headers={"Authorization": basic("nope")},
        timeout=5,
    )
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"batch": [segment_item(f"u{i}", f"m{i}") for i in range(2501)]}, "2500"),
        ({"batch": [{**segment_item(), "properties": {"blob": "x" * 32_000}}]}, "32,000"),
        ({"batch": [{**segment_item(), "userId": None}]}, "userId"),
        ({"batch": [{**segment_item(), "event": ""}]}, "without event"),
        ({"nobatch": []}, "batch array"),
    ],
    ids=["over-2500", "event-over-32KB", "no-user", "no-event", "no-batch"],
)
def test_segment_400s(receiver, session, payload, message):
    response = session.post(
        f"{receiver.url}/v1/batch",
        data=json.dumps(payload).encode(),
        headers={"Authorization": basic("wk-receiver")},
        timeout=5,
    )
    assert response.status_code == 400
    assert message in response.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"not gzip at all",
        gzip.compress(json.dumps({"batch": []}).encode())[:-5],  # cut short
        gzip.compress(json.dumps({"batch": []}).encode())[:12] + b"\xff" * 20,  # corrupt
    ],
    ids=["not-gzip", "cut-short", "corrupt"],
)
def test_segment_bad_gzip_is_400(receiver, session, body):
    response = session.post(
        f"{receiver.url}/v1/batch",
        data=body,
        headers={"Content-Encoding": "gzip", "Authorization": basic("wk-receiver")},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["message"] == "bad gzip body"


def test_segment_limits_are_decimal(receiver, session):
    message = {**segment_item(), "properties": {"blob": ""}}
    message["properties"]["blob"] = "x" * (32_000 - len(json.dumps(message).encode()))
    assert len(json.dumps(message).encode()) == 32_000
    post = functools.partial(
        session.post,
        f"{receiver.url}/v1/batch",
        headers={"Authorization": basic("wk-receiver")},
        timeout=5,
    )
    assert post(data=json.dumps({"batch": [message]}).encode()).status_code == 200
    message["properties"]["blob"] += "x"
    assert post(data=json.dumps({"batch": [message]}).encode()).status_code == 400

    body = {"batch": [segment_item()], "pad": ""}
    body["pad"] = "p" * (500_000 - len(json.dumps(body).encode()))
    assert post(data=json.dumps(body).encode()).status_code == 200
    body["pad"] += "p"
    response = post(data=json.dumps(body).encode())
    assert response.status_code == 400
    assert "500,000 bytes" in response.json()["message"]


def test_refuse_gzip_answers_every_gzipped_body_with_a_400(receiver, session):
    receiver.refuse_gzip = "invalid character '\\x1f' looking for beginning of value"
    try:
        gzipped = session.post(
            f"{receiver.url}/v1/batch",
            data=gzip.compress(json.dumps({"batch": [segment_item()]}).encode()),
            headers={"Content-Encoding": "gzip", "Authorization": basic("wk-receiver")},
            timeout=5,
        )
        plain = session.post(
            f"{receiver.url}/v1/batch",
            json={"batch": [segment_item()]},
            headers={"Authorization": basic("wk-receiver")},
            timeout=5,
        )
    finally:
        receiver.refuse_gzip = None
    assert gzipped.status_code == 400
    assert "looking for beginning of value" in gzipped.json()["message"]
    assert plain.status_code == 200
    assert receiver.item_count == 1


def test_always_answers_every_unscripted_request(receiver, session):
    receiver.always = Scripted(400, {"message": "Bad Request"})
    try:
        receiver.script(Scripted(accept=True))
        first = post_track(session, receiver, json.dumps([item()]).encode())
        rest = [post_track(session, receiver, json.dumps([item()]).encode()) for _ in range(3)]
    finally:
        receiver.always = None
    assert first.status_code == 200
    assert [r.status_code for r in rest] == [400] * 3
    assert post_track(session, receiver, json.dumps([item()]).encode()).status_code == 200


def test_a_scripted_content_type_replaces_the_default(receiver, session):
    receiver.script(Scripted(200, b"<html>portal</html>", {"Content-Type": "text/html"}))
    response = post_track(session, receiver, json.dumps([item()]).encode())
    assert response.headers["Content-Type"] == "text/html"
    assert response.text == "<html>portal</html>"


def test_trickle_sends_the_answer_byte_by_byte(receiver):
    receiver.script(Scripted(200, b"{}", trickle=0.002))
    with socket.create_connection(receiver._server.server_address[:2], timeout=5) as client:
        client.sendall(b"POST /api/track HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        chunks = []
        while chunk := client.recv(4096):
            chunks.append(chunk)
    answer = b"".join(chunks)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"\r\n\r\n{}")
    assert len(chunks) > 10  # it arrived in pieces, not in one write


def test_unknown_path_is_404(receiver, session):
    response = session.post(f"{receiver.url}/nope", json=[item()], headers={"x-api-key": KEY})
    assert response.status_code == 404


@pytest.mark.parametrize(
    "path", ["/api/track/track", "/track", "/api/v2/track", "/x/v1/batch", "/v1/batch/"]
)
def test_only_the_real_routes_answer(receiver, session, path):
    """An endpoint misconfigured to end in /track must not pass here and fail in production."""
    response = session.post(f"{receiver.url}{path}", json=[item()], headers={"x-api-key": KEY})
    assert response.status_code == 404
    assert receiver.items == []


def test_a_thrivestack_sink_given_the_track_url_as_endpoint_sends_nothing(receiver):
    from tracking_adapter import UserEnrichedEvent
    from tracking_adapter.sinks import ThriveStackSink

    sink = ThriveStackSink(api_key=KEY, endpoint=f"{receiver.thrivestack_endpoint}/track")
    result = sink.send([UserEnrichedEvent(user_id="u", group_id="g")])
    assert result.delivered == 0
    assert receiver.items == []
    assert receiver.requests[-1].path == "/api/track/track"


def test_duplicates_are_counted_by_message_id(receiver, session):
    for _ in range(2):
        session.post(
            f"{receiver.url}/v1/batch",
            json={"batch": [segment_item("a", "same")]},
            headers={"Authorization": basic("wk-receiver")},
            timeout=5,
        )
    assert receiver.item_count == 2
    assert receiver.duplicate_count == 1


def test_scripted_answers_are_used_once_in_order(receiver, session):
    receiver.script(
        Scripted(429, {"message": "slow down"}, {"Retry-After": "7"}),
        Scripted(500, b"plain text"),
    )
    body = json.dumps([item()]).encode()
    first = post_track(session, receiver, body)
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "7"
    assert first.json() == {"message": "slow down"}
    second = post_track(session, receiver, body)
    assert second.status_code == 500
    assert second.content == b"plain text"
    third = post_track(session, receiver, body)
    assert third.status_code == 200
    assert [r.status for r in receiver.requests] == [429, 500, 200]
    assert receiver.item_count == 1  # scripted answers accept nothing


def test_scripted_slow_success(receiver, session):
    receiver.script(Scripted(delay=0.2, accept=True))
    started = time.monotonic()
    response = post_track(session, receiver, json.dumps([item()]).encode())
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.2
    assert receiver.item_count == 1


def test_scripted_reset(receiver, session):
    receiver.script(Scripted(reset=True))
    with pytest.raises(requests.ConnectionError):
        post_track(session, receiver, json.dumps([item()]).encode())
    assert receiver.requests[0].status == 0
    # The receiver keeps serving afterwards.
    assert post_track(session, receiver, json.dumps([item()]).encode()).status_code == 200


def test_wait_for_items_and_clear(receiver, session):
    assert receiver.wait_for_items(1, timeout=0.05) is False
    threading.Timer(0.05, post_track, (session, receiver, json.dumps([item()]).encode())).start()
    assert receiver.wait_for_items(1, timeout=5) is True
    receiver.script(Scripted(500))
    receiver.clear()
    assert receiver.requests == []
    assert receiver.items == []
    assert receiver.item_count == receiver.request_count == receiver.duplicate_count == 0
    assert post_track(session, receiver, json.dumps([item()]).encode()).status_code == 200


def test_keep_false_stores_counts_only(receiver, session):
    receiver.keep = False
    post_track(session, receiver, json.dumps([item("a"), item("b")]).encode())
    assert receiver.item_count == 2
    assert receiver.request_count == 1
    assert receiver.items == []
    assert receiver.requests == []


def test_keep_alive_serves_many_requests_on_one_connection(receiver):
    body = json.dumps([item()]).encode()
    with socket.create_connection(receiver._server.server_address[:2], timeout=5) as raw:
        reader = raw.makefile("rb")
        for _ in range(3):
            raw.sendall(
                b"POST /api/track HTTP/1.1\r\nHost: x\r\nx-api-key: "
                + KEY.encode()
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            status = reader.readline()
            assert status.startswith(b"HTTP/1.1 200")
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            assert json.loads(reader.read(length))["success"] is True
    assert receiver.item_count == 3


def test_tcp_nodelay_is_set_on_accepted_connections(receiver):
    seen: list[int] = []

    class Probe(_Handler):
        def setup(self) -> None:
            super().setup()
            seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    receiver._server.RequestHandlerClass = Probe
    try:
        with requests.Session() as client:  # a new connection, so Probe handles it
            response = post_track(client, receiver, json.dumps([item()]).encode())
    finally:
        receiver._server.RequestHandlerClass = _Handler
    assert response.status_code == 200
    assert seen
    assert all(value != 0 for value in seen)
